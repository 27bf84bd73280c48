"""Step 6's answers: does the study show vanishing gradients, why, and what residual
connections and batch normalisation change, each computed from the study's numbers."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from gradprobe.analysis import group_findings
from gradprobe.analysis.findings import (
    distance_from_one,
    fit_sentence,
    layer_2_vs_10_sentence,
    ratio_sentence,
)
from gradprobe.analysis.format import fmt_r2, fmt_ratio, join_words, plural
from gradprobe.analysis.groups import max_seeds, strip_seed, summarize_configurations
from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.replicates import (
    ACCURACY_BOUNDS,
    Estimate,
    Verdict,
    compare,
    estimate,
    format_estimate,
    ratio_estimate,
)
from gradprobe.analysis.summary import VERDICT_THRESHOLDS, RunAnalysis


def _listed(names: Sequence[str], summaries: Mapping[str, RunAnalysis]) -> str:
    return join_words([f"{n} ({fmt_ratio(summaries[n].first.ratio)})" for n in names])


def answer_sentences(
    study: StudyData, summaries: Mapping[str, RunAnalysis], featured: Sequence[str]
) -> list[str]:
    """Step 6(a): do the compared models (then the whole study) show vanishing gradients?"""
    with_data = [n for n in study.runs if summaries[n].first.ratio is not None]
    if not with_data:
        return ["No run recorded usable gradient data, so this study cannot say whether gradients "
                "vanish."]
    sentences = []
    for name in featured:
        summary, run = summaries[name], study.runs[name]
        for sentence in (ratio_sentence(name, run, summary),
                         layer_2_vs_10_sentence(name, run, summary), fit_sentence(summary)):
            if sentence:
                sentences.append(sentence)
    groups = [group for group in summarize_configurations(study, summaries)
              if set(group.runs) & set(featured)]
    if max_seeds(groups) > 1:  # the sentences above are one seed's; this is over all seeds
        sentences += [f"Over every seed of the compared configurations: {sentence}"
                      for sentence in group_findings.flow_sentences(groups)]
    low, high = VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above
    compared = [n for n in featured if n in with_data]
    vanishing = [n for n in compared if summaries[n].first.verdict == "vanishing"]
    others = [n for n in compared if n not in vanishing]
    if vanishing:
        text = (f"Yes for {_listed(vanishing, summaries)}: at the first epoch the conv layer "
                f"nearest the input receives less than {low:g}× the gradient norm of the one "
                "nearest the output")
        sentences.append(text + (f"; not for {_listed(others, summaries)}." if others else "."))
    elif compared:
        smallest = min(compared, key=lambda n: summaries[n].first.ratio)
        sentences.append(
            f"No: the data do not show vanishing gradients in the compared "
            f"{'model' if len(compared) == 1 else 'models'}. Every first-to-last ratio at the "
            f"first epoch is at or above {low:g}: {_listed(compared, summaries)}; the smallest "
            f"is {smallest}'s.")
        he_relu = [n for n in compared
                   if study.runs[n].model_info.get("init") == "kaiming"
                   and study.runs[n].model_info.get("activation") == "relu"]
        if he_relu:
            sentences.append(
                f"This is what theory predicts for ReLU nets with He initialisation "
                f"({join_words(he_relu)}): that init keeps each layer's gain near 1 "
                "(He et al. 2015).")
    rest = [n for n in with_data if n not in compared]
    if rest:
        rest_vanishing = [n for n in rest if summaries[n].first.verdict == "vanishing"]
        if rest_vanishing:
            sentences.append(f"Among the study's other {plural(len(rest), 'run')}, "
                             f"{len(rest_vanishing)} "
                             f"{'shows' if len(rest_vanishing) == 1 else 'show'} vanishing "
                             "gradients: "
                             f"{_listed(rest_vanishing, summaries)}.")
        else:
            sentences.append(f"None of the study's other {plural(len(rest), 'run')} shows "
                             f"vanishing gradients (every ratio is at or above {low:g}).")
    exploding = [n for n in with_data if summaries[n].first.verdict == "exploding"]
    if exploding:
        sentences.append(f"Gradients grow towards the input (ratio above {high:g}) in "
                         f"{_listed(exploding, summaries)}.")
    return sentences


def chain_rule_sentences(study: StudyData, summaries: Mapping[str, RunAnalysis]) -> list[str]:
    """Step 6(b): the steepest fitted decay, compounded, against the measured ratio."""
    fitted = [n for n in study.runs if summaries[n].first.decay_per_layer is not None
              and summaries[n].first.ratio is not None]
    if not fitted:
        return []
    steepest = min(fitted, key=lambda n: summaries[n].first.decay_per_layer)
    summary = summaries[steepest]
    steps = summary.last_depth - summary.first_depth
    predicted = summary.first.decay_per_layer ** steps
    sentence = (f"In this study the steepest fitted decay is "
                f"{fmt_ratio(summary.first.decay_per_layer)} per layer ({steepest}, "
                f"R² = {fmt_r2(summary.first.r2)}); compounded over the "
                f"{steps} layers between its first and last conv layer it predicts a "
                f"first-to-last ratio of {fmt_ratio(predicted)}, and the measured one is "
                f"{fmt_ratio(summary.first.ratio)}.")
    if summary.first.decay_per_layer >= 1.0:
        sentence += (" Since that factor is not below 1, no run's gradients shrink layer by layer "
                     "on average here.")
    return [sentence]


def _group_text(names: Sequence[str], summaries: Mapping[str, RunAnalysis]) -> str:
    """First-epoch ratios of `names`: listed for a few runs, else their median and range."""
    values = [summaries[n].first.ratio for n in names]
    if len(names) <= 4:
        return join_words([f"{n} {fmt_ratio(v)}" for n, v in zip(names, values, strict=True)])
    return (f"median {fmt_ratio(statistics.median(values))} over {len(names)} runs "
            f"(from {fmt_ratio(min(values))} to {fmt_ratio(max(values))})")


def _config_key(run: RunData, ignore: str) -> str:
    """The run's config as canonical JSON without the one field `ignore` ("model.name"), plus
    its conv layer count, so that only twins of one depth match (not VGG-Deep and ResNet-18)."""
    config = json.loads(json.dumps(run.run_config, default=str))
    section, _, field_name = ignore.partition(".")
    (config.get(section) or {}).pop(field_name, None)
    shape = {key: run.model_info.get(key) for key in ("conv_layers", "linear_layers")}
    return json.dumps({"config": config, "shape": shape}, sort_keys=True)


def matched_pairs(
    study: StudyData, names: Sequence[str], ignore: str, feature: Callable[[RunData], bool]
) -> list[tuple[str, str]]:
    """(without, with) pairs of runs whose configs agree except in `ignore`, where `feature`
    is false for the first and true for the second: a controlled comparison. Identical runs
    (one config trained under two names) count once."""
    groups: dict[str, dict[bool, str]] = {}
    for name in names:
        run = study.runs[name]
        groups.setdefault(_config_key(run, ignore), {}).setdefault(feature(run), name)
    return [(group[False], group[True]) for group in groups.values()
            if False in group and True in group]


def match_residual_twins(study: StudyData, names: Sequence[str]) -> list[tuple[str, str]]:
    """(plain, residual) twins among `names`: runs whose configs agree except in the model name.

    Twins are matched by ignoring model names (with the conv layer count, see `_config_key`);
    kept in this one function so that it can later ask the model registry instead."""
    return matched_pairs(study, names, "model.name",
                         lambda run: bool(run.model_info.get("residual")))


def _pair_sentences(pairs: Sequence[tuple[str, str]], summaries: Mapping[str, RunAnalysis],
                    without: str, with_: str, differ: str, *, predicted: bool) -> list[str]:
    """"Twins that differ only in X: a r against b r; ... closer to even in k of n pairs", then
    each twin's accuracy difference as `replicates.compare` calls it over the seeds.

    Pairs of one seed each are merged per twin configuration (names without their seed)."""
    twins: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in pairs:
        twins.setdefault((strip_seed(a), strip_seed(b)), []).append((a, b))

    def ratios(names: Sequence[str]) -> Estimate:
        return ratio_estimate([summaries[n].first.ratio for n in names])

    def accuracy(names: Sequence[str]) -> Estimate:
        return estimate([summaries[n].best_val_acc for n in names], bounds=ACCURACY_BOUNDS)

    def unevenness(names: Sequence[str]) -> Estimate:  # |log10 ratio|: 0 is perfectly even
        return estimate([abs(math.log10(summaries[n].first.ratio)) for n in names
                         if (summaries[n].first.ratio or 0) > 0])

    listed, closer, beyond_noise, accuracy_texts = [], 0, 0, []
    for (a, b), members in twins.items():
        plain_runs, with_runs = [m[0] for m in members], [m[1] for m in members]
        a_ratio, b_ratio = ratios(plain_runs), ratios(with_runs)
        listed.append(f"{a} {format_estimate(a_ratio)} against {b} "
                      f"{format_estimate(b_ratio)}")
        closer += distance_from_one(b_ratio.centre) < distance_from_one(a_ratio.centre)
        evenness = compare(unevenness(with_runs), unevenness(plain_runs))
        beyond_noise += evenness.verdict is Verdict.LOWER
        a_acc, b_acc = accuracy(plain_runs), accuracy(with_runs)
        if a_acc.n and b_acc.n:
            accuracy_texts.append(group_findings.difference(
                b, b_acc, a, a_acc, what="Best validation accuracy", percent=True))
    sentences = [f"Runs that differ only in {differ}, first-epoch first-to-last ratio "
                 f"{without} against {with_}: {'; '.join(listed)}."]
    text = (f"The {with_} run's ratio is closer to 1 (more even gradient flow) in {closer} of "
            f"{plural(len(twins), 'pair')}, beyond seed-to-seed variation in {beyond_noise} "
            "(Welch's test on the absolute log10 ratio)")
    if predicted:  # only where theory predicts more even flow (the identity path)
        text += (", as predicted" if 2 * beyond_noise > len(twins)
                 else ", the predicted direction, but not beyond seed-to-seed variation"
                 if 2 * closer > len(twins)
                 else ", so these data do not show the predicted benefit" if closer == 0
                 else ", so the data are mixed")
    return [*sentences, text + ".", *accuracy_texts]


def residual_sentences(study: StudyData, summaries: Mapping[str, RunAnalysis]) -> list[str]:
    """Step 6(c): residual against plain twins (else groups), first-epoch ratios."""
    with_data = [n for n in study.runs if summaries[n].first.ratio is not None]
    residual = [n for n in with_data if study.runs[n].model_info.get("residual")]
    plain = [n for n in with_data if not study.runs[n].model_info.get("residual")]
    if not residual:
        return ["This study has no residual run with gradient data, so it cannot test this here."]
    if not plain:
        listed = _group_text(residual, summaries)
        return [f"This study has only residual runs ({listed}), so it has no plain net to "
                "compare them with."]
    pairs = match_residual_twins(study, with_data)
    if pairs:
        return _pair_sentences(pairs, summaries, "plain", "residual",
                               "the identity shortcut (a plain net and its residual twin)",
                               predicted=True)
    res_distance = statistics.median(distance_from_one(summaries[n].first.ratio)
                                     for n in residual)
    plain_distance = statistics.median(distance_from_one(summaries[n].first.ratio)
                                       for n in plain)
    sentences = [
        f"First-epoch first-to-last ratios in this study: residual "
        f"{_group_text(residual, summaries)}; plain "
        f"{_group_text(plain, summaries)}."
    ]
    if res_distance < plain_distance:
        sentences.append(
            f"The residual runs sit closer to even flow (median {res_distance:.2f} decades from a "
            f"ratio of 1, against {plain_distance:.2f} for the plain runs), as the identity path "
            "predicts; no plain run here is the exact twin of a residual one, so other "
            "differences may contribute.")
    else:
        sentences.append(
            f"The data do not show the residual runs' gradients flowing more evenly (median "
            f"{res_distance:.2f} decades from a ratio of 1, against {plain_distance:.2f} for the "
            "plain runs); no plain run here is the exact twin of a residual one.")
    return sentences


def batch_norm_sentences(study: StudyData, summaries: Mapping[str, RunAnalysis]) -> list[str]:
    """Step 6(d): with against without batch norm, and Yang et al.'s growth at initialisation."""
    with_data = [n for n in study.runs if summaries[n].first.ratio is not None]
    bn = [n for n in with_data if study.runs[n].model_info.get("norm") == "batch"]
    plain_bn = [n for n in bn if not study.runs[n].model_info.get("residual")]
    no_norm = [n for n in with_data if study.runs[n].model_info.get("norm") in ("none", None)]
    if not bn:
        return ["This study has no batch-normalised run with gradient data, so it cannot test "
                "this here."]
    pairs = matched_pairs(study, with_data, "model.norm",
                          lambda run: run.model_info.get("norm") == "batch")
    if pairs:
        sentences = _pair_sentences(pairs, summaries, "without", "batch-normalised",
                                    "batch normalisation", predicted=False)
    else:
        sentences = [f"First-epoch first-to-last ratios: with batch norm "
                     f"{_group_text(bn, summaries)}"
                     + (f"; without {_group_text(no_norm, summaries)}."
                        if no_norm else "; the study has no run without normalisation.")]
    at_init = [n for n in plain_bn
               if summaries[n].ratio_first_step is not None]
    if not at_init:
        return [*sentences, "The study has no plain (non-residual) batch-normalised run, so Yang "
                            "et al.'s growth towards the input cannot be checked here."]

    def at_step(names: Sequence[str]) -> str:
        return join_words([f"{n} ({fmt_ratio(summaries[n].ratio_first_step)})"
                           for n in names])

    growing = [n for n in at_init if summaries[n].ratio_first_step > 1.0]
    others = [n for n in at_init if n not in growing]
    if growing:
        text = ("At the first recorded step (initialisation), gradients are larger at the input "
                f"than at the output (ratio above 1) in plain batch-normalised {at_step(growing)}")
        if others:
            text += f"; not in {at_step(others)}"
        sentences.append(text + ". That growth towards the input is what Yang et al. (2019) "
                         "predict for plain nets with batch norm.")
    else:
        sentences.append(
            f"At the first recorded step (initialisation), the plain batch-normalised runs do not "
            f"show gradients growing towards the input ({at_step(others)}, none above 1); Yang et "
            "al.'s growth builds up with depth and may be too small to see here.")
    return sentences
