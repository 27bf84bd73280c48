"""Sentences computed from the records: per-run facts, comparisons and experiment findings.

Findings are phrased conditionally on what the data say: a run whose first-to-last ratio stays
within the verdict thresholds is called healthy, whatever the textbook expects of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from gradprobe.analysis.format import fmt_db, fmt_pct, fmt_r2, fmt_ratio, join_words
from gradprobe.analysis.load import RunData
from gradprobe.analysis.states import state_text
from gradprobe.analysis.summary import (
    VERDICT_THRESHOLDS,
    RunAnalysis,
    fitted_layers,
    run_epoch_means,
)
from gradprobe.metrics import metric_info
from gradprobe.record import GradCol, RunState


def _mean_at(run: RunData, metric: str, layer: str, epoch: int) -> float:
    means = run_epoch_means(run, metric)
    rows = means.loc[(means[GradCol.layer] == layer) & (means[GradCol.epoch] == epoch), "mean"]
    return float(rows.iloc[0]) if not rows.empty else math.nan


def ratio_sentence(name: str, run: RunData, summary: RunAnalysis) -> str | None:
    """"In vgg_deep at epoch 1, features.0 (depth 0)'s norm is 0.0012x that of features.56 ...\""""
    if summary.first.ratio is None:
        return None
    label = metric_info(summary.metric).label
    first, last = summary.first_layer, summary.last_layer
    text = (f"In {name} at epoch {summary.first.epoch}, {first} (depth "
            f"{summary.first_depth})'s {label} is {fmt_ratio(summary.first.ratio)}× "
            f"that of {last} (depth {summary.last_depth})")
    if summary.last.epoch != summary.first.epoch:
        text += (f"; at epoch {summary.last.epoch} it is "
                 f"{fmt_ratio(summary.last.ratio)}×")
    return text + "."


def fit_sentence(summary: RunAnalysis) -> str | None:
    if summary.first.decay_per_layer is None:
        return None
    kind = summary.fit_kind or "conv"
    first, last = summary.first.verdict, summary.last.verdict
    verdicts = first if first == last else (f"{first} at epoch {summary.first.epoch}, {last} "
                                            f"at epoch {summary.last.epoch}")
    return (f"Fitted over its {summary.first.layers} {kind} layers at epoch "
            f"{summary.first.epoch}, the norm changes by a factor of "
            f"{fmt_ratio(summary.first.decay_per_layer)} per layer going back towards the input "
            f"({fmt_db(summary.first.db_per_layer)} per layer, R² = {fmt_r2(summary.first.r2)}); "
            f"verdict from the first-to-last ratio: {verdicts}.")


def layer_2_vs_10_sentence(name: str, run: RunData, summary: RunAnalysis) -> str | None:
    """The assignment's form: "layer 2's norm is X times layer 10's" (conv layers, 1-based)."""
    layers = fitted_layers(run.gradients.loc[run.gradients[GradCol.metric] == summary.metric])
    epoch = summary.first.epoch
    if len(layers) < 3 or epoch is None:
        return None
    low_index, high_index = 1, min(9, len(layers) - 1)
    (low, _), (high, _) = layers[low_index], layers[high_index]
    low_mean = _mean_at(run, summary.metric, low, epoch)
    high_mean = _mean_at(run, summary.metric, high, epoch)
    if not (math.isfinite(low_mean) and math.isfinite(high_mean)) or high_mean == 0:
        return None
    kind = summary.fit_kind or "conv"
    return (f"Counting {kind} layers from the input in {name}, layer {low_index + 1} ({low}) "
            f"has {fmt_ratio(low_mean / high_mean)}× the norm of layer {high_index + 1} ({high}) "
            f"at epoch {epoch}.")


def span_sentence(name: str, run: RunData, summary: RunAnalysis) -> str | None:
    """Step 3: the range of the conv layers' norms at the first epoch."""
    epoch = summary.first.epoch
    if epoch is None:
        return None
    means = run_epoch_means(run, summary.metric)
    rows = means.loc[(means[GradCol.epoch] == epoch) & (means[GradCol.kind] == summary.fit_kind)]
    rows = rows.loc[np.isfinite(rows["mean"])]
    if rows.empty:
        return None
    low, high = rows.loc[rows["mean"].idxmin()], rows.loc[rows["mean"].idxmax()]
    spread = high["mean"] / low["mean"] if low["mean"] > 0 else math.inf
    return (f"At epoch {epoch} the {summary.fit_kind} layers' epoch-mean norms in {name} run "
            f"from {fmt_ratio(low['mean'])} ({low['layer']}, depth {int(low['depth'])}) to "
            f"{fmt_ratio(high['mean'])} ({high['layer']}, depth {int(high['depth'])}), a spread "
            f"of {fmt_ratio(spread)}×.")


def distance_from_one(ratio: float | None) -> float:
    """Decades between a ratio and 1: how far gradient flow is from even."""
    if ratio is None or ratio <= 0 or not math.isfinite(ratio):
        return math.inf
    return abs(math.log10(ratio))


def accuracy_sentences(names: Sequence[str], summaries: Mapping[str, RunAnalysis]) -> list[str]:
    """Test-accuracy ranking and when each run first reached the target validation accuracy."""
    sentences = []
    scored = [(n, summaries[n].test_acc) for n in names
              if summaries[n].test_acc is not None]
    if len({fmt_pct(acc) for _, acc in scored}) == 1 and len(scored) > 1:
        sentences.append(f"Every run reaches the same test accuracy, {fmt_pct(scored[0][1])}.")
    elif scored:
        scored.sort(key=lambda item: -item[1])
        ranking = join_words([f"{n} ({fmt_pct(acc)})" for n, acc in scored])
        sentences.append(f"Test accuracy, best first: {ranking}.")
    target = next(iter(summaries.values())).target_acc if summaries else None
    reached = [(n, summaries[n].epochs_to_target) for n in names
               if summaries[n].epochs_to_target is not None]
    missed = [n for n in names if summaries[n].epochs_to_target is None
              and summaries[n].best_val_acc is not None]
    if target is None or not (reached or missed):
        return sentences
    if reached:
        parts = join_words([f"{n} at epoch {e}" for n, e in reached])
        text = f"Validation accuracy first reached {fmt_pct(target)}: {parts}"
        sentences.append(text + (f"; {join_words(missed)} never did." if missed else "."))
    else:
        best = max(missed, key=lambda n: summaries[n].best_val_acc)
        sentences.append(f"No run here reached {fmt_pct(target)} validation accuracy (the best "
                         f"is {fmt_pct(summaries[best].best_val_acc)}, {best}).")
    return sentences


def flow_sentences(names: Sequence[str], summaries: Mapping[str, RunAnalysis]) -> list[str]:
    """Which of `names` vanish, explode or stay healthy at their first epoch."""
    groups: dict[str, list[str]] = {}
    for name in names:
        summary = summaries[name]
        if summary.first.ratio is None:
            continue
        groups.setdefault(summary.first.verdict, []).append(
            f"{name} ({fmt_ratio(summary.first.ratio)})")
    if not groups:
        return ["No run here recorded usable gradient data, so gradient flow cannot be compared."]
    parts = [f"{verdict}: {join_words(items)}" for verdict, items in sorted(groups.items())]
    return [f"First-to-last ratio at the first epoch, by verdict: {'; '.join(parts)}."]


def experiment_findings(
    labels: Mapping[str, str], runs: Mapping[str, RunData], summaries: Mapping[str, RunAnalysis]
) -> list[str]:
    """Step 5's finding for one experiment, from its variants' numbers."""
    sentences: list[str] = []
    usable = [n for n in labels if summaries[n].first.ratio is not None]
    for name in labels:
        if runs[name].state in (RunState.FAILED, RunState.MISSING):
            sentences.append(f"{labels[name]} has no result: {state_text(runs[name])}.")
    if usable:
        parts = []
        for name in usable:
            summary = summaries[name]
            part = (f"{fmt_ratio(summary.first.ratio)} ({summary.first.verdict}) with "
                    f"{labels[name]}")
            if runs[name].state is RunState.DIVERGED:
                part += f", which {state_text(runs[name])}"
            parts.append(part)
        epochs = {summaries[n].first.epoch for n in usable}
        at = f"epoch {epochs.pop()}" if len(epochs) == 1 else "each run's first epoch"
        if len(parts) == 2:
            sentences.append(f"At {at} the first-to-last ratio is {parts[0]}, against {parts[1]}.")
        else:
            sentences.append(f"At {at} the first-to-last ratio is {join_words(parts)}.")
        verdicts = {summaries[n].first.verdict for n in usable}
        if len(usable) > 1 and len(verdicts) == 1:
            every = "both" if len(usable) == 2 else f"all {len(usable)}"
            sentences.append(f"By the {VERDICT_THRESHOLDS.vanishing_below:g}-"
                             f"{VERDICT_THRESHOLDS.exploding_above:g} rule {every} variants are "
                             f"{verdicts.pop()}, so on this measure the axis does not change the "
                             "verdict.")
        if len(usable) > 1:
            best = min(usable,
                       key=lambda n: distance_from_one(summaries[n].first.ratio))
            sentences.append(f"The most even gradient flow (ratio nearest 1) is with "
                             f"{labels[best]}.")
    else:
        sentences.append("No variant recorded usable gradient data.")
    accurate = [n for n in labels if summaries[n].best_val_acc is not None]
    if len(accurate) > 1:
        accurate.sort(key=lambda n: -summaries[n].best_val_acc)
        ranking = join_words([f"{labels[n]} {fmt_pct(summaries[n].best_val_acc)}"
                              for n in accurate])
        sentences.append(f"Best validation accuracy, highest first: {ranking}.")
    return sentences
