"""Numbers computed from a run's records: per-epoch layer means, ratios, decay fit, verdicts.

Definitions (stated in the report too):
- A layer's norm at an epoch is the mean of its per-step gradient L2 norms over that epoch's
  recorded steps (non-finite values near a divergence are left out and counted).
- The first-to-last ratio is the norm of the conv layer nearest the input over that of the conv
  layer nearest the output, at one epoch. Below 1 the gradient shrinks on its way back to the
  input; the chain rule makes it a product of per-layer factors (Glorot & Bengio 2010).
- The decay fit is least squares of log10(norm) on depth over the conv layers. Its slope s gives
  the factor per layer *going backward* (from output towards input), 10**(-s): norms that halve
  at each layer on the way back give 0.5 per layer. dB per layer is 10*log10(factor), so
  halving is -3.01 dB per layer.
Shortcut (1x1 projection) convs and linear layers are drawn but left out of the ratio and the
fit: shortcuts sit beside the main path, linear heads after it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.load import RunData, finite_or_none
from gradprobe.errors import InputError
from gradprobe.metrics import gradient_size_metrics, list_metrics, metric_info
from gradprobe.record import Col, GradCol, RunState, best_validation

DEFAULT_TARGET_ACC = 0.8  # validation accuracy whose first epoch `epochs_to_target` reports


@dataclass(frozen=True)
class VerdictThresholds:
    """First-to-last ratios that separate the verdicts (a decade either way of 1)."""

    vanishing_below: float = 0.1  # the input-side layer gets < 1/10 of the output side's norm
    exploding_above: float = 10.0  # the input-side layer gets > 10x the output side's norm


VERDICT_THRESHOLDS = VerdictThresholds()
NO_VERDICT = "no verdict"  # no ratio: the records cannot say (RunAnalysis.reason says why)
MIN_FITTED_LAYERS = 2  # a ratio of one layer to itself is 1 by definition and says nothing


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fit of log10(norm) against depth."""

    factor_per_layer: float  # multiplicative change per layer going backward (0.5: halves)
    db_per_layer: float  # 10 * log10(factor_per_layer)
    slope: float  # d log10(norm) / d depth, in forward order
    r2: float  # coefficient of determination of the fit in log10 space
    layers: int  # how many layers the fit used


_NO_FIT = DecayFit(math.nan, math.nan, math.nan, math.nan, 0)


def check_metric(metric: str) -> None:
    """Raise `InputError` unless `metric` is one the analysis can fit and draw (the catalog's
    gradient-size metrics: strictly positive, drawn and fitted on a log scale)."""
    fittable = gradient_size_metrics()
    if metric not in fittable:
        raise InputError(
            f"Unknown gradient metric {metric!r}. Use one of {', '.join(fittable)} "
            "(the probe's names)."
        )


def layer_epoch_means(gradients: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per layer and epoch: the mean and RMS of `metric` over the epoch's recorded steps.

    Columns: layer, depth, kind, epoch, mean, rms (sqrt of the mean square over steps), steps
    (finite values used) and nonfinite (NaN/inf values left out). Sorted by epoch, then depth.
    Any metric drawn on a log scale (gradient sizes, weight_distance) is accepted.
    """
    if not (metric in list_metrics() and metric_info(metric).log_scale):
        check_metric(metric)  # raises, naming the metrics that can be fitted
    columns = [GradCol.layer, GradCol.depth, GradCol.kind, GradCol.epoch, "mean", "rms", "steps",
               "nonfinite"]
    rows = gradients.loc[gradients[GradCol.metric] == metric,
                         [GradCol.layer, GradCol.depth, GradCol.kind, GradCol.epoch, GradCol.value]]
    if rows.empty:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in columns})
    values = rows[GradCol.value].to_numpy(dtype="float64")
    finite = np.isfinite(values)
    rows = rows.assign(
        finite_value=np.where(finite, values, np.nan),
        square=np.where(finite, values * values, np.nan),
        nonfinite=~finite,
    )
    grouped = rows.groupby([GradCol.layer, GradCol.depth, GradCol.kind, GradCol.epoch], sort=False)
    means = grouped.agg(
        mean=("finite_value", "mean"),
        mean_square=("square", "mean"),
        steps=("finite_value", "count"),
        nonfinite=("nonfinite", "sum"),
    ).reset_index()
    means["rms"] = np.sqrt(means.pop("mean_square"))
    means["nonfinite"] = means["nonfinite"].astype("int64")
    means = means.sort_values([GradCol.epoch, GradCol.depth, GradCol.layer], kind="stable")
    means = means.reset_index(drop=True)
    return means[columns]


def run_epoch_means(run: RunData, metric: str) -> pd.DataFrame:
    """`layer_epoch_means` of a run's gradients, computed once per metric (figures and
    sentences all ask for it)."""
    key = ("layer_epoch_means", metric)
    if key not in run.cache:
        run.cache[key] = layer_epoch_means(metric_rows(run, metric), metric)
    return run.cache[key]


def fit_kind(gradients: pd.DataFrame) -> str:
    """The layer kind the ratio and fit use: "conv", or "linear" for a net without convs (MLP)."""
    kinds = set(gradients[GradCol.kind].unique())
    return "conv" if "conv" in kinds or "linear" not in kinds else "linear"


def fitted_layers(gradients: pd.DataFrame, kind: str | None = None) -> list[tuple[str, int]]:
    """(name, depth) of the layers the ratio and the fit use (`kind`, else `fit_kind`), input
    first. `gradients` holds one metric's records."""
    if gradients.empty:
        return []
    kind = kind or fit_kind(gradients)
    layers = gradients.loc[gradients[GradCol.kind] == kind, [GradCol.layer, GradCol.depth]]
    layers = layers.drop_duplicates(GradCol.layer)
    layers = layers.sort_values([GradCol.depth, GradCol.layer], kind="stable")
    return [(str(name), int(depth)) for name, depth in layers.itertuples(index=False)]


def layer_ratio(
    gradients: pd.DataFrame, layer_a: str, layer_b: str, epoch: int, metric: str
) -> float:
    """Epoch-mean `metric` of `layer_a` over that of `layer_b` at `epoch`: any pair of layers.

    NaN when either mean is not finite at that epoch (a divergence); `InputError` for a layer or
    an epoch the records do not hold.
    """
    means = layer_epoch_means(gradients, metric)
    known = set(means[GradCol.layer])
    for layer in (layer_a, layer_b):
        if layer not in known:
            shown = ", ".join(sorted(known)[:12]) or "none"
            raise InputError(
                f"Layer {layer!r} has no {metric} records. Pick one of the recorded layers: "
                f"{shown}{' ...' if len(known) > 12 else ''}."
            )
    at_epoch = means.loc[means[GradCol.epoch] == epoch].set_index(GradCol.layer)["mean"]
    if at_epoch.empty:
        epochs = sorted(int(e) for e in means[GradCol.epoch].unique())
        raise InputError(f"No {metric} records at epoch {epoch}. Recorded epochs: {epochs}.")
    numerator = float(at_epoch.get(layer_a, math.nan))
    denominator = float(at_epoch.get(layer_b, math.nan))
    return _divide(numerator, denominator)


def _divide(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return math.nan
    if denominator == 0.0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def depth_profile(
    means: pd.DataFrame, epoch: int, kinds: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Columns layer, depth, kind, value: each layer's epoch mean at `epoch`, by depth."""
    rows = means.loc[means[GradCol.epoch] == epoch]
    if kinds is not None:
        rows = rows.loc[rows[GradCol.kind].isin(kinds)]
    rows = rows.sort_values([GradCol.depth, GradCol.layer], kind="stable")
    profile = rows[[GradCol.layer, GradCol.depth, GradCol.kind, "mean"]]
    return profile.rename(columns={"mean": GradCol.value})


def decay_fit(profile: pd.DataFrame) -> DecayFit:
    """Fit log10(value) = a + slope * depth by least squares over finite, positive values.

    factor_per_layer = 10**(-slope) is the change per layer going backward through the net
    (norms halving at every layer on the way back give 0.5), db_per_layer = 10*log10(factor).
    Fewer than two usable depths give NaNs. A perfect fit (no residual) has R^2 = 1, also when
    every value is equal.
    """
    depth = profile[GradCol.depth].to_numpy(dtype="float64")
    value = profile[GradCol.value].to_numpy(dtype="float64")
    usable = np.isfinite(value) & (value > 0) & np.isfinite(depth)
    depth, log_value = depth[usable], np.log10(value[usable])
    if np.unique(depth).size < 2:
        return _NO_FIT
    slope, intercept = np.polyfit(depth, log_value, 1)
    residual = float(np.sum((log_value - (intercept + slope * depth)) ** 2))
    total = float(np.sum((log_value - log_value.mean()) ** 2))
    perfect = total == 0.0 or residual <= 1e-24 * max(total, 1.0)
    r2 = 1.0 if perfect else 1.0 - residual / total
    slope = float(slope)
    return DecayFit(
        factor_per_layer=10.0 ** (-slope),
        db_per_layer=-10.0 * slope,  # 10*log10(10**(-slope))
        slope=slope,
        r2=r2,
        layers=int(depth.size),
    )


def verdict(
    first_to_last_ratio: float | None, thresholds: VerdictThresholds = VERDICT_THRESHOLDS
) -> str:
    """"vanishing", "exploding" or "healthy"; NO_VERDICT when the ratio is missing or NaN."""
    if first_to_last_ratio is None or math.isnan(first_to_last_ratio):
        return NO_VERDICT
    if first_to_last_ratio < thresholds.vanishing_below:
        return "vanishing"
    if first_to_last_ratio > thresholds.exploding_above:
        return "exploding"
    return "healthy"


def epochs_to_target(metrics: pd.DataFrame, target_acc: float) -> int | None:
    """The first epoch whose validation accuracy reaches `target_acc` (a fraction), or None."""
    reached = metrics.loc[metrics[Col.val_acc] >= target_acc, Col.epoch]
    return None if reached.empty else int(reached.min())


@dataclass(frozen=True)
class FlowAtEpoch:
    """Gradient flow at one epoch: first-to-last ratio, decay fit and verdict (None: no data)."""

    epoch: int | None
    ratio: float | None  # fitted layer nearest the input over the one nearest the output
    decay_per_layer: float | None  # DecayFit.factor_per_layer
    db_per_layer: float | None
    r2: float | None
    layers: int  # how many layers the fit used
    verdict: str  # vanishing | exploding | healthy | no verdict


NO_FLOW = FlowAtEpoch(None, None, None, None, None, 0, NO_VERDICT)


def epoch_gradient_stats(
    means: pd.DataFrame, epoch: int, first: str, last: str, kind: str
) -> FlowAtEpoch:
    """Ratio, decay fit and verdict of one epoch's profile."""
    at_epoch = means.loc[means[GradCol.epoch] == epoch].set_index(GradCol.layer)["mean"]
    ratio = _divide(float(at_epoch.get(first, math.nan)), float(at_epoch.get(last, math.nan)))
    fit = decay_fit(depth_profile(means, epoch, (kind,)))
    return FlowAtEpoch(
        epoch=epoch, ratio=finite_or_none(ratio),
        decay_per_layer=finite_or_none(fit.factor_per_layer),
        db_per_layer=finite_or_none(fit.db_per_layer), r2=finite_or_none(fit.r2),
        layers=fit.layers, verdict=verdict(ratio),
    )


def gradient_epochs(means: pd.DataFrame, first: str, last: str) -> tuple[int, int] | None:
    """The first and last epochs at which both end layers have a finite mean."""
    def finite_epochs(layer: str) -> set[int]:
        rows = means.loc[means[GradCol.layer] == layer]
        values = rows["mean"].to_numpy(dtype="float64")
        return {int(e) for e in rows[GradCol.epoch].to_numpy()[np.isfinite(values)]}

    both = finite_epochs(first) & finite_epochs(last)
    return (min(both), max(both)) if both else None


def _first_step_ratio(grads: pd.DataFrame, first: str, last: str) -> tuple[int | None, float]:
    """The end layers' ratio at the first step recorded for both (initialisation, if step 0)."""
    def by_step(layer: str) -> dict[int, float]:
        rows = grads.loc[grads[GradCol.layer] == layer]
        steps = rows[GradCol.step].to_numpy()
        values = rows[GradCol.value].to_numpy(dtype="float64")
        found: dict[int, float] = {}
        for step, value in zip(steps, values, strict=True):
            if not math.isnan(value):
                found.setdefault(int(step), float(value))  # the first record of a step
        return found

    a, b = by_step(first), by_step(last)
    both = sorted(set(a) & set(b))
    if not both:
        return None, math.nan
    step = both[0]
    return step, _divide(a[step], b[step])


def metric_rows(run: RunData, metric: str) -> pd.DataFrame:
    """The run's gradient records of one metric, selected once per metric."""
    key = ("metric_rows", metric)
    if key not in run.cache:
        run.cache[key] = run.gradients.loc[run.gradients[GradCol.metric] == metric]
    return run.cache[key]


@dataclass(frozen=True)
class RunAnalysis:
    """One run's numbers, as `summarize_run` computes them; None where the records lack them.

    Gradient numbers are given at the first recorded epoch (`first`, the one nearest
    initialisation) and at the last epoch with finite values (`last`). `ratio_first_step` is
    the first-to-last ratio at the first recorded step (step 0 is the gradient at
    initialisation). Accuracies are fractions; `best_val_acc` and `final_val_acc` come from the
    metrics, `test_acc` from the run's summary (None when the run never tested).
    """

    name: str
    state: RunState
    message: str
    metric: str
    target_acc: float
    best_val_acc: float | None
    best_epoch: int | None
    final_val_acc: float | None
    final_train_loss: float | None
    test_acc: float | None
    test_loss: float | None
    epochs_completed: int | None
    steps: int | None
    epochs_to_target: int | None  # first epoch whose validation accuracy reached target_acc
    diverged_step: int | None
    diverged_epoch: int | None
    fit_kind: str | None = None  # the layer kind of the ratio and fit: conv, or linear (MLP)
    first_layer: str | None = None  # the fitted layer nearest the input
    first_depth: int | None = None
    last_layer: str | None = None  # the fitted layer nearest the output
    last_depth: int | None = None
    first: FlowAtEpoch = NO_FLOW
    last: FlowAtEpoch = NO_FLOW
    first_step: int | None = None
    ratio_first_step: float | None = None
    reason: str = ""  # why there is no verdict, when there is none

    @property
    def verdict(self) -> str:
        """The first epoch's verdict (NO_VERDICT with `reason` when the records cannot say)."""
        return self.first.verdict

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (NaN/inf became None when the numbers were computed)."""
        data = asdict(self)
        data["state"] = self.state.value
        return data


def summarize_frame(
    gradients: pd.DataFrame, metric: str = "weight_grad_norm", *, name: str = "probe",
    metrics: pd.DataFrame | None = None, target_acc: float = DEFAULT_TARGET_ACC,
) -> RunAnalysis:
    """`summarize_run` of a probe's tidy frame (`GradientProbe.to_frame()`) held in memory, with
    optional per-epoch `metrics` rows for the accuracy numbers: the report's own computation."""
    run = RunData.from_frame(gradients, name=name, metrics=metrics)
    return summarize_run(run, metric, target_acc=target_acc)


def summarize_run(
    run: RunData, metric: str = "weight_grad_norm", *, target_acc: float = DEFAULT_TARGET_ACC
) -> RunAnalysis:
    """One run's numbers (see `RunAnalysis`)."""
    check_metric(metric)
    metrics = run.metrics
    recorded = run.summary  # the trainer's summary; None before the run ended
    best = best_validation(zip(metrics[Col.epoch], metrics[Col.val_acc], strict=True))
    if best is None and recorded is not None and recorded.best_val_acc is not None:
        best = (recorded.best_val_acc, recorded.best_epoch)  # metrics unreadable: trust it
    val_acc = metrics[Col.val_acc].to_numpy(dtype="float64")
    finite_val = val_acc[np.isfinite(val_acc)]
    analysis = RunAnalysis(
        name=run.name, state=run.state, message=run.message, metric=metric,
        target_acc=target_acc,
        best_val_acc=best[0] if best else None,
        best_epoch=best[1] if best else None,
        final_val_acc=float(finite_val[-1]) if finite_val.size else None,
        final_train_loss=finite_or_none(metrics[Col.train_loss].iloc[-1])
        if not metrics.empty else None,
        test_acc=recorded.test_acc if recorded else None,
        test_loss=recorded.test_loss if recorded else None,
        epochs_completed=recorded.epochs_completed if recorded else len(metrics),
        steps=recorded.steps if recorded else None,
        epochs_to_target=epochs_to_target(metrics, target_acc) if not metrics.empty else None,
        diverged_step=run.diverged_step, diverged_epoch=run.diverged_epoch,
    )
    grads = metric_rows(run, metric)
    if grads.empty:
        return replace(analysis, reason=f"no {metric} records")
    kind = fit_kind(grads)
    layers = fitted_layers(grads, kind)
    analysis = replace(analysis, fit_kind=kind)
    if len(layers) < MIN_FITTED_LAYERS:
        return replace(analysis, reason=(
            f"{len(layers)} fitted {kind} layer{'' if len(layers) == 1 else 's'}: the ratio needs "
            f"at least {MIN_FITTED_LAYERS} (probe more layers, e.g. every Linear or Conv)"))
    (first, first_depth), (last, last_depth) = layers[0], layers[-1]
    step, ratio = _first_step_ratio(grads, first, last)
    analysis = replace(analysis, first_layer=first, first_depth=first_depth, last_layer=last,
                       last_depth=last_depth, first_step=step,
                       ratio_first_step=finite_or_none(ratio))
    means = run_epoch_means(run, metric)
    epochs = gradient_epochs(means, first, last)
    if epochs is None:
        return replace(analysis, reason=f"no epoch with finite {metric} at both end layers")
    return replace(analysis, first=epoch_gradient_stats(means, epochs[0], first, last, kind),
                   last=epoch_gradient_stats(means, epochs[1], first, last, kind))
