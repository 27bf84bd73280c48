"""The report's opening "Key findings" (5-8 computed bullets, each with its number and its
uncertainty) and Step 6 (a)'s answer to "do the layers nearest the input learn slowest?", from the
per-layer relative distance of the weights from their initial values (`weight_distance`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gradprobe.analysis import group_findings
from gradprobe.analysis.format import join_words
from gradprobe.analysis.groups import (
    ConfigurationSummary,
    end_layer_values,
    group_configurations,
    max_seeds,
    summarize_configurations,
)
from gradprobe.analysis.load import StudyData
from gradprobe.analysis.replicates import Verdict, compare, format_estimate, ratio_estimate
from gradprobe.analysis.summary import RunAnalysis
from gradprobe.analysis.text import Block, bullets, p

WEIGHT_DISTANCE = "weight_distance"
MAX_KEY_FINDINGS = 8


def _compared(study: StudyData) -> list[str]:
    listed = [str(n) for n in (study.spec.get("comparison") or {}).get("runs") or []]
    return [n for n in listed if n in study.runs] or list(study.runs)


def learning_sentences(study: StudyData, summaries: Mapping[str, RunAnalysis],
                       metric: str = "weight_grad_norm") -> list[str]:
    """Per compared configuration: how far the conv layer nearest the input moved from its
    initial weights by the last epoch, against the one nearest the output (over seeds)."""
    groups = group_configurations(study, _compared(study))
    sentences, slowest, judged = [], [], 0
    moved_less: list[str] = []  # configurations whose input side moved less (point estimates)
    replicated = False
    for group in groups:
        firsts, lasts, layers = [], [], None
        for name in group.runs:
            summary = summaries[name]
            if summary.first_layer is None or summary.last_layer is None:
                continue
            values = end_layer_values(study.runs[name], WEIGHT_DISTANCE, summary.first_layer,
                                      summary.last_layer)
            if values is not None:
                firsts.append(values[0])
                lasts.append(values[1])
                layers = (summary.first_layer, summary.last_layer)
        if layers is None:
            continue
        first, last = ratio_estimate(firsts), ratio_estimate(lasts)
        if first.n == 0 or last.n == 0:
            continue
        judged += 1
        result = compare(first, last)
        replicated = replicated or result.verdict is not Verdict.TOO_FEW_SEEDS
        if first.centre < last.centre:
            moved_less.append(f"{group.name} {result.factor:.3g}×")
        text = (f"In {group.name}, by the last epoch the conv layer nearest the input "
                f"({layers[0]}) has moved {format_estimate(first)} of its initial weight norm, "
                f"the one nearest the output ({layers[1]}) {format_estimate(last)} "
                f"(geometric means over seeds)")
        if result.verdict is Verdict.LOWER:
            slowest.append(group.name)
            text += (f": the input side learned slowest, {result.factor:.3g}× as far, beyond "
                     f"seed-to-seed variation (Welch p = {result.p_value:.2g}).")
        elif result.verdict is Verdict.HIGHER:
            text += (f": the input side moved further ({result.factor:.3g}×, Welch p = "
                     f"{result.p_value:.2g}), so it did not learn slowest here.")
        elif result.verdict is Verdict.WITHIN_NOISE:
            text += (f"; the difference ({result.factor:.3g}×) is within seed-to-seed "
                     f"variation (Welch p = {result.p_value:.2g}).")
        else:
            text += (f"; with one seed the difference ({result.factor:.3g}×) cannot be "
                     "separated from noise.")
        sentences.append(text)
    if not judged:
        return ["The runs recorded no weight distances (the `weight_distance` metric), so "
                "whether the layers nearest the input learn slowest cannot be answered here."]
    summary = (f"Do the layers nearest the input learn slowest? By the last epoch the conv layer "
               f"nearest the input moved less from its initial weights than the one nearest the "
               f"output in {len(moved_less)} of the {judged} compared configurations"
               + (f" ({join_words(moved_less)} as far)" if moved_less else ""))
    if replicated:
        summary += (f"; beyond seed-to-seed variation in {len(slowest)}"
                    + (f" ({join_words(slowest)})." if slowest else "."))
    else:
        summary += "; with one seed each, none of these differences can be separated from noise."
    sentences.append(summary)
    return sentences


def _experiment_bullet(title: str, groups: Sequence[ConfigurationSummary]) -> str | None:
    scored = sorted((g for g in groups if g.best_val_acc.n), key=lambda g: -g.best_val_acc.centre)
    if len(scored) < 2:
        return None
    best, worst = scored[0], scored[-1]
    text = group_findings.difference(best.name, best.best_val_acc, worst.name,
                                     worst.best_val_acc, what=f"{title}, best validation "
                                     "accuracy, best against worst variant", percent=True)
    flow = [g for g in groups if g.ratio_first.n]
    if len(flow) > 1:
        low = min(flow, key=lambda g: g.ratio_first.centre)
        text += (f" Smallest first-epoch first-to-last ratio: {low.name} "
                 f"{format_estimate(low.ratio_first)}.")
    return text


def key_finding_sentences(study: StudyData, summaries: Mapping[str, RunAnalysis],
                          experiments: Sequence[tuple[str, Mapping[str, str]]] = (),
                          metric: str = "weight_grad_norm") -> list[str]:
    """At most `MAX_KEY_FINDINGS` sentences, each with its number and its uncertainty.

    `experiments`: (title, run name -> variant label) of each experiment, in report order."""
    compared = summarize_configurations(study, summaries, _compared(study))
    items: list[str] = []
    everything = group_configurations(study)
    seeds = max_seeds(everything)
    if seeds > 1:
        items.append(f"{len(everything)} configurations, each trained with up to {seeds} seeds "
                     "(initialisation and batch order vary, the data split does not); numbers "
                     "are means with 95% t-intervals and n, ratios geometric means.")
    else:
        items.append(group_findings.SINGLE_SEED_NOTE)
    items += group_findings.flow_sentences(compared)
    items += group_findings.accuracy_sentences(compared)
    for title, labels in experiments:
        groups = summarize_configurations(study, summaries, list(labels), labels)
        bullet = _experiment_bullet(title, groups)
        if bullet:
            items.append(bullet)
    learning = learning_sentences(study, summaries, metric)
    items.append(learning[-1] if len(learning) > 1 else learning[0])
    return items[:MAX_KEY_FINDINGS]


def key_finding_blocks(study: StudyData, summaries: Mapping[str, RunAnalysis],
                       experiments: Sequence[tuple[str, Mapping[str, str]]] = (),
                       metric: str = "weight_grad_norm") -> list[Block]:
    items = key_finding_sentences(study, summaries, experiments, metric)
    if not items:
        return [p("No run finished, so there is nothing to summarise yet.")]
    return [bullets(items)]
