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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.load import RunData, finite_or_none
from gradprobe.errors import InputError

# Gradient-size metrics the analysis can fit and draw on a log scale (all are >= 0).
NORM_METRICS = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm", "update_ratio")

METRIC_LABELS = {
    "weight_grad_norm": "weight-gradient L2 norm",
    "weight_grad_rms": "weight-gradient RMS (norm / sqrt(numel))",
    "output_grad_norm": "output-gradient L2 norm",
    "update_ratio": "update / weight norm ratio",
}

DEFAULT_TARGET_ACC = 0.8  # validation accuracy whose first epoch `epochs_to_target` reports


@dataclass(frozen=True)
class VerdictThresholds:
    """First-to-last ratios that separate the verdicts (a decade either way of 1)."""

    vanishing_below: float = 0.1  # the input-side layer gets < 1/10 of the output side's norm
    exploding_above: float = 10.0  # the input-side layer gets > 10x the output side's norm


VERDICT_THRESHOLDS = VerdictThresholds()


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
    """Raise `InputError` unless `metric` is one the analysis can fit and draw."""
    if metric not in NORM_METRICS:
        raise InputError(
            f"Unknown gradient metric {metric!r}. Use one of {', '.join(NORM_METRICS)} "
            "(the probe's names)."
        )


def layer_epoch_means(gradients: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per layer and epoch: the mean and RMS of `metric` over the epoch's recorded steps.

    Columns: layer, depth, kind, epoch, mean, rms (sqrt of the mean square over steps), steps
    (finite values used) and nonfinite (NaN/inf values left out). Sorted by epoch, then depth.
    """
    check_metric(metric)
    columns = ["layer", "depth", "kind", "epoch", "mean", "rms", "steps", "nonfinite"]
    rows = gradients.loc[gradients["metric"] == metric,
                         ["layer", "depth", "kind", "epoch", "value"]]
    if rows.empty:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in columns})
    values = rows["value"].to_numpy(dtype="float64")
    finite = np.isfinite(values)
    rows = rows.assign(
        finite_value=np.where(finite, values, np.nan),
        square=np.where(finite, values * values, np.nan),
        nonfinite=~finite,
    )
    grouped = rows.groupby(["layer", "depth", "kind", "epoch"], sort=False)
    means = grouped.agg(
        mean=("finite_value", "mean"),
        mean_square=("square", "mean"),
        steps=("finite_value", "count"),
        nonfinite=("nonfinite", "sum"),
    ).reset_index()
    means["rms"] = np.sqrt(means.pop("mean_square"))
    means["nonfinite"] = means["nonfinite"].astype("int64")
    means = means.sort_values(["epoch", "depth", "layer"], kind="stable").reset_index(drop=True)
    return means[columns]


def run_epoch_means(run: RunData, metric: str) -> pd.DataFrame:
    """`layer_epoch_means` of a run's gradients, computed once per metric (figures and
    sentences all ask for it)."""
    key = ("layer_epoch_means", metric)
    if key not in run.cache:
        run.cache[key] = layer_epoch_means(run.gradients, metric)
    return run.cache[key]


def fit_kind(gradients: pd.DataFrame) -> str:
    """The layer kind the ratio and fit use: "conv", or "linear" for a net without convs (MLP)."""
    kinds = set(gradients["kind"].unique())
    return "conv" if "conv" in kinds or "linear" not in kinds else "linear"


def end_layers(gradients: pd.DataFrame, kind: str | None = None) -> tuple[str, str] | None:
    """Names of the layer of `kind` nearest the input and the one nearest the output."""
    kind = kind or fit_kind(gradients)
    layers = gradients.loc[gradients["kind"] == kind, ["layer", "depth"]].drop_duplicates("layer")
    if layers.empty:
        return None
    layers = layers.sort_values(["depth", "layer"], kind="stable")
    return str(layers["layer"].iloc[0]), str(layers["layer"].iloc[-1])


def layer_ratio(
    gradients: pd.DataFrame, layer_a: str, layer_b: str, epoch: int, metric: str
) -> float:
    """Epoch-mean `metric` of `layer_a` over that of `layer_b` at `epoch`: any pair of layers.

    NaN when either mean is not finite at that epoch (a divergence); `InputError` for a layer or
    an epoch the records do not hold.
    """
    means = layer_epoch_means(gradients, metric)
    known = set(means["layer"])
    for layer in (layer_a, layer_b):
        if layer not in known:
            shown = ", ".join(sorted(known)[:12]) or "none"
            raise InputError(
                f"Layer {layer!r} has no {metric} records. Pick one of the recorded layers: "
                f"{shown}{' ...' if len(known) > 12 else ''}."
            )
    at_epoch = means.loc[means["epoch"] == epoch].set_index("layer")["mean"]
    if at_epoch.empty:
        epochs = sorted(int(e) for e in means["epoch"].unique())
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
    rows = means.loc[means["epoch"] == epoch]
    if kinds is not None:
        rows = rows.loc[rows["kind"].isin(kinds)]
    rows = rows.sort_values(["depth", "layer"], kind="stable")
    return rows[["layer", "depth", "kind", "mean"]].rename(columns={"mean": "value"})


def decay_fit(profile: pd.DataFrame) -> DecayFit:
    """Fit log10(value) = a + slope * depth by least squares over finite, positive values.

    factor_per_layer = 10**(-slope) is the change per layer going backward through the net
    (norms halving at every layer on the way back give 0.5), db_per_layer = 10*log10(factor).
    Fewer than two usable depths give NaNs. A perfect fit (no residual) has R^2 = 1, also when
    every value is equal.
    """
    depth = profile["depth"].to_numpy(dtype="float64")
    value = profile["value"].to_numpy(dtype="float64")
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
    """"vanishing", "exploding" or "healthy"; "undetermined" when the ratio is missing or NaN."""
    if first_to_last_ratio is None or math.isnan(first_to_last_ratio):
        return "undetermined"
    if first_to_last_ratio < thresholds.vanishing_below:
        return "vanishing"
    if first_to_last_ratio > thresholds.exploding_above:
        return "exploding"
    return "healthy"


def epochs_to_target(metrics: pd.DataFrame, target_acc: float) -> int | None:
    """The first epoch whose validation accuracy reaches `target_acc` (a fraction), or None."""
    reached = metrics.loc[metrics["val_acc"] >= target_acc, "epoch"]
    return None if reached.empty else int(reached.min())


def epoch_gradient_stats(
    means: pd.DataFrame, epoch: int, first: str, last: str, kind: str
) -> dict[str, Any]:
    """Ratio, decay fit and verdict of one epoch's profile."""
    at_epoch = means.loc[means["epoch"] == epoch].set_index("layer")["mean"]
    ratio = _divide(float(at_epoch.get(first, math.nan)), float(at_epoch.get(last, math.nan)))
    fit = decay_fit(depth_profile(means, epoch, (kind,)))
    return {
        "epoch": epoch,
        "first_norm": float(at_epoch.get(first, math.nan)),
        "last_norm": float(at_epoch.get(last, math.nan)),
        "ratio": ratio,
        "fit": fit,
        "verdict": verdict(ratio),
    }


def gradient_epochs(means: pd.DataFrame, first: str, last: str) -> tuple[int, int] | None:
    """The first and last epochs at which both end layers have a finite mean."""
    pivot = means.loc[means["layer"].isin([first, last])].pivot_table(
        index="epoch", columns="layer", values="mean", aggfunc="first"
    )
    if first not in pivot.columns or last not in pivot.columns:
        return None
    both = pivot.loc[np.isfinite(pivot[first]) & np.isfinite(pivot[last])]
    if both.empty:
        return None
    return int(both.index.min()), int(both.index.max())


def _first_step_ratio(grads: pd.DataFrame, first: str, last: str) -> tuple[int | None, float]:
    """The end layers' ratio at the first step recorded for both (initialisation, if step 0)."""
    rows = grads.loc[grads["layer"].isin([first, last])]
    pivot = rows.pivot_table(index="step", columns="layer", values="value", aggfunc="first")
    if first not in pivot.columns or last not in pivot.columns:
        return None, math.nan
    both = pivot.dropna(subset=[first, last])
    if both.empty:
        return None, math.nan
    step = int(both.index.min())
    return step, _divide(float(both.at[step, first]), float(both.at[step, last]))


def _finite_max(series: pd.Series) -> tuple[float, int | None]:
    values = series.loc[np.isfinite(series)]
    if values.empty:
        return math.nan, None
    return float(values.max()), int(values.idxmax())


def summarize_run(
    run: RunData, metric: str = "weight_grad_norm", *, target_acc: float = DEFAULT_TARGET_ACC
) -> dict[str, Any]:
    """One run's numbers, JSON-friendly (NaN/inf become None).

    Gradient numbers are given at the first recorded epoch (the one nearest initialisation,
    under the plain keys) and at the last epoch with finite values (keys ending `_last_epoch`).
    `first_to_last_ratio_first_step` is the ratio at the first recorded step (step 0 is the
    gradient at initialisation). Accuracies are fractions; `best_val_acc` and `final_val_acc`
    come from metrics.csv, `test_acc` from summary.json (None when the run never tested).
    """
    check_metric(metric)
    metrics = run.metrics
    val_acc = metrics.set_index("epoch")["val_acc"] if not metrics.empty else pd.Series(dtype=float)
    best_val_acc, best_epoch = _finite_max(val_acc)
    finite_val = val_acc.loc[np.isfinite(val_acc)]
    final_train = metrics["train_loss"] if not metrics.empty else pd.Series(dtype=float)
    summary = run.summary
    result: dict[str, Any] = {
        "name": run.name,
        "state": run.state,
        "message": run.message,
        "metric": metric,
        "target_acc": target_acc,
        "best_val_acc": best_val_acc if best_epoch is not None else summary.get("best_val_acc"),
        "best_epoch": best_epoch if best_epoch is not None else summary.get("best_epoch"),
        "final_val_acc": float(finite_val.iloc[-1]) if not finite_val.empty else None,
        "final_train_loss": float(final_train.iloc[-1]) if not final_train.empty else None,
        "test_acc": summary.get("test_acc"),
        "test_loss": summary.get("test_loss"),
        "epochs_completed": summary.get("epochs_completed", len(metrics)),
        "steps": summary.get("steps"),
        "epochs_to_target": epochs_to_target(metrics, target_acc) if not metrics.empty else None,
        "diverged_step": run.diverged_step,
        "diverged_epoch": run.diverged_epoch,
    }
    gradient_keys = ("first_to_last_ratio", "decay_per_layer", "db_per_layer", "r2", "verdict")
    result.update({
        "fit_kind": None, "first_layer": None, "first_depth": None, "last_layer": None,
        "last_depth": None, "layers_in_fit": 0, "first_epoch": None, "last_epoch": None,
        "first_step": None, "first_to_last_ratio_first_step": None,
    })
    for key in gradient_keys:
        result[key] = result[f"{key}_last_epoch"] = None
    result["verdict"] = result["verdict_last_epoch"] = "undetermined"

    grads = run.gradients.loc[run.gradients["metric"] == metric]
    if grads.empty:
        return {key: finite_or_none(value) for key, value in result.items()}
    kind = fit_kind(grads)
    ends = end_layers(grads, kind)
    means = run_epoch_means(run, metric)
    epochs = gradient_epochs(means, *ends) if ends else None
    depths = grads.drop_duplicates("layer").set_index("layer")["depth"]
    result.update({"fit_kind": kind})
    if ends:
        result.update({
            "first_layer": ends[0], "first_depth": int(depths[ends[0]]),
            "last_layer": ends[1], "last_depth": int(depths[ends[1]]),
        })
    if epochs is not None:
        for suffix, epoch in (("", epochs[0]), ("_last_epoch", epochs[1])):
            stats = epoch_gradient_stats(means, epoch, ends[0], ends[1], kind)
            result[f"first_to_last_ratio{suffix}"] = stats["ratio"]
            result[f"decay_per_layer{suffix}"] = stats["fit"].factor_per_layer
            result[f"db_per_layer{suffix}"] = stats["fit"].db_per_layer
            result[f"r2{suffix}"] = stats["fit"].r2
            result[f"verdict{suffix}"] = stats["verdict"]
            if not suffix:
                result["layers_in_fit"] = stats["fit"].layers
        result["first_epoch"], result["last_epoch"] = epochs
    if ends:
        result["first_step"], result["first_to_last_ratio_first_step"] = _first_step_ratio(
            grads, *ends)
    return {key: finite_or_none(value) for key, value in result.items()}
