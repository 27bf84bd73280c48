"""Sentences computed from one run's records (configurations: `group_findings`).

Findings are phrased conditionally on what the data say: a run whose first-to-last ratio stays
within the verdict thresholds is called healthy, whatever the textbook expects of it.
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.analysis.format import fmt_db, fmt_r2, fmt_ratio
from gradprobe.analysis.load import RunData
from gradprobe.analysis.summary import (
    RunAnalysis,
    fitted_layers,
    run_epoch_means,
)
from gradprobe.metrics import metric_info
from gradprobe.record import GradCol


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
