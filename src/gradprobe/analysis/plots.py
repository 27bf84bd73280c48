"""Figures drawn from run records: PNGs readable at a glance.

Every figure is a bare `matplotlib.figure.Figure` (no pyplot, so no global state and no GUI
backend; PNGs render through Agg) saved atomically. Norms use log axes whose limits come from the
finite values in view, so a diverged run's NaN/inf values neither break a plot nor flatten it;
the divergence point is marked instead.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from gradprobe.analysis.load import RunData
from gradprobe.analysis.summary import (
    METRIC_LABELS,
    VERDICT_THRESHOLDS,
    fit_kind,
    run_epoch_means,
)
from gradprobe.util.atomic import atomic_path

Colour = tuple[float, float, float, float]  # RGBA
DPI = 100
KIND_MARKERS = {"conv": "o", "shortcut": "^", "linear": "s"}
DIVERGED_COLOUR = "#d62728"


def _plain(text: object) -> str:
    """User text for matplotlib: a '$' would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def _axis_label(metric: str) -> str:
    return f"{METRIC_LABELS.get(metric, metric)} (log scale)"


def run_colours(count: int) -> list[Colour]:
    """Distinct colours for up to 10 runs (tab10), then tab20."""
    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(index % cmap.N) for index in range(count)]


TITLE_SIZE = 11  # points
CHAR_WIDTH = 0.6  # average glyph width of DejaVu Sans, in ems


def text_width(text: str, size: float) -> float:
    """Approximate width in inches of `text` set at `size` points."""
    return len(text) * size * CHAR_WIDTH / 72.0


def new_figure(title: str, width: float, height: float, *, left: float, right: float,
               top: float, bottom: float, wspace: float = 0.0) -> Figure:
    """A figure with fixed margins in inches and `title` wrapped to its width.

    Fixed margins instead of constrained layout: the layout engine measures every tick label
    before drawing, which doubled the time to render a figure (measured: 0.58 s against 0.36 s
    for one log-scale panel), and the report draws a dozen or more of them.
    """
    per_line = max(20, int((width - 0.4) * 72.0 / (TITLE_SIZE * CHAR_WIDTH)))
    lines = textwrap.wrap(title, per_line) or [""]
    extra = (len(lines) - 1) * TITLE_SIZE * 1.25 / 72.0
    fig = Figure(figsize=(width, height + extra))
    height += extra
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - (top + extra) / height,
                        bottom=bottom / height, wspace=wspace)
    fig.suptitle("\n".join(lines), fontsize=TITLE_SIZE, y=1 - 0.08 / height, va="top")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG through a temporary file and `os.replace`."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def finite_positive(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype="float64")
    return values[np.isfinite(values) & (values > 0)]


def log_limits(values: np.ndarray, margin_decades: float = 0.08) -> tuple[float, float] | None:
    """Log-axis limits spanning the finite positive values, with a small margin."""
    usable = finite_positive(values)
    if usable.size == 0:
        return None
    low, high = math.log10(usable.min()), math.log10(usable.max())
    pad = max((high - low) * margin_decades, 0.15)
    return 10 ** (low - pad), 10 ** (high + pad)


def log_axis(ax: Axes, limits: tuple[float, float] | None, axis: str = "y") -> None:
    """A log scale clipped to `limits`; over 2+ decades only 2x and 5x minor ticks, unlabelled.

    Fewer minor ticks keep wide ranges legible and cut drawing time (every tick is two artists);
    narrow ranges keep matplotlib's labelled minor ticks, since they may hold no power of ten.
    """
    scale = ax.set_yscale if axis == "y" else ax.set_xscale
    scale("log", nonpositive="mask")
    if limits is None:
        return
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)
    if math.log10(limits[1] / limits[0]) >= 2.0:
        target = ax.yaxis if axis == "y" else ax.xaxis
        target.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        target.set_minor_formatter(NullFormatter())


def linear_limits(values: np.ndarray, margin: float = 0.06) -> tuple[float, float] | None:
    usable = np.asarray(values, dtype="float64")
    usable = usable[np.isfinite(usable)]
    if usable.size == 0:
        return None
    low, high = float(usable.min()), float(usable.max())
    pad = (high - low) * margin if high > low else max(abs(high) * 0.1, 0.05)
    return low - pad, high + pad


def _no_data(ax: Axes, text: str = "no finite values to draw") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _epoch_spans(grads: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: first and last recorded step."""
    spans = grads.groupby("epoch")["step"].agg(first="min", last="max").reset_index()
    return spans.sort_values("epoch").reset_index(drop=True)


def _epoch_axis(ax: Axes, spans: pd.DataFrame) -> None:
    """A top axis naming the epoch at each epoch's first step."""
    if spans.empty:
        return
    top = ax.secondary_xaxis("top")
    every = max(1, math.ceil(len(spans) / 15))
    shown = spans.iloc[::every]
    top.set_xticks(shown["first"].to_numpy(), labels=[str(e) for e in shown["epoch"]])
    top.set_xlabel("epoch (tick at its first step)")
    top.tick_params(labelsize=8)


def _mark_divergence_step(ax: Axes, run: RunData) -> None:
    step = run.diverged_step
    if step is None:
        return
    ax.axvline(step, color=DIVERGED_COLOUR, linestyle="--", linewidth=1.2)
    ax.text(step, 0.98, f" diverged (step {step})", color=DIVERGED_COLOUR, fontsize=8,
            ha="right", va="top", rotation=90, transform=ax.get_xaxis_transform())


def _staircase(spans: pd.DataFrame, layer_means: pd.DataFrame) -> np.ndarray:
    """(2 * epochs, 2) points: each epoch's mean held from its first to its last step."""
    joined = spans.merge(layer_means[["epoch", "mean"]], on="epoch", how="inner")
    xs = np.column_stack([joined["first"], joined["last"]]).ravel()
    ys = np.repeat(joined["mean"].to_numpy(dtype="float64"), 2)
    return np.column_stack([xs, ys])


def plot_layer_norms(run: RunData, metric: str, path: Path) -> Path:
    """Every layer's `metric` against step, coloured by depth, with per-epoch means in bold."""
    grads = run.gradients.loc[run.gradients["metric"] == metric]
    title = (f"{_plain(run.name)}: {METRIC_LABELS.get(metric, metric)} of all "
             f"{grads['layer'].nunique()} layers")
    fig = new_figure(title, 9.5, 5.2, left=0.85, right=0.75, top=0.8, bottom=0.55)
    ax = fig.add_subplot()
    if grads.empty:
        _no_data(ax, f"no {metric} records")
        return _finish(fig, path)
    values = grads["value"].to_numpy(dtype="float64")
    grads = grads.assign(value=np.where(np.isfinite(values) & (values > 0), values, np.nan))
    spans = _epoch_spans(grads)
    means = run_epoch_means(run, metric)
    depths = grads["depth"]
    colour_norm = Normalize(vmin=float(depths.min()), vmax=max(float(depths.max()), 1e-9))
    cmap = colormaps["viridis"]
    raw_lines, bold_lines, colours = [], [], []
    for (layer, depth), rows in grads.groupby(["layer", "depth"], sort=False):
        rows = rows.sort_values("step")
        raw_lines.append(np.column_stack([rows["step"], rows["value"]]))
        bold_lines.append(_staircase(spans, means.loc[means["layer"] == layer]))
        colours.append(cmap(colour_norm(depth)))
    ax.add_collection(LineCollection(raw_lines, colors=colours, linewidths=0.6, alpha=0.35))
    ax.add_collection(LineCollection(bold_lines, colors=colours, linewidths=2.4))
    limits = log_limits(values)
    log_axis(ax, limits)
    if limits is None:
        _no_data(ax)
    else:
        ax.set_xlim(float(grads["step"].min()), max(float(grads["step"].max()), 1.0))
    colourbar = fig.colorbar(ScalarMappable(norm=colour_norm, cmap=cmap), ax=ax, pad=0.015,
                             fraction=0.04)
    colourbar.set_label("layer depth (0 = nearest the input)")
    colourbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(_axis_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    _epoch_axis(ax, spans)
    _mark_divergence_step(ax, run)
    ax.legend(handles=[Line2D([], [], color="0.3", linewidth=0.6, alpha=0.6, label="per step"),
                       Line2D([], [], color="0.3", linewidth=2.4, label="epoch mean")],
              loc="best", fontsize=8)
    return _finish(fig, path)


def default_subset(run: RunData, metric: str) -> list[str]:
    """The first, middle and last layers of the fitted kind (conv), in depth order."""
    grads = run.gradients.loc[run.gradients["metric"] == metric]
    if grads.empty:
        return []
    kind = fit_kind(grads)
    layers = (grads.loc[grads["kind"] == kind, ["layer", "depth"]].drop_duplicates("layer")
              .sort_values(["depth", "layer"], kind="stable")["layer"].tolist())
    if not layers:
        return []
    picked = [layers[0], layers[len(layers) // 2], layers[-1]]
    return list(dict.fromkeys(picked))


def plot_layer_subset(run: RunData, metric: str, layers: Sequence[str], path: Path) -> Path:
    """Chosen layers' `metric` against step: per step thin, per-epoch mean bold."""
    grads = run.gradients.loc[(run.gradients["metric"] == metric)
                              & run.gradients["layer"].isin(list(layers))]
    title = f"{_plain(run.name)}: {METRIC_LABELS.get(metric, metric)}, selected layers"
    fig = new_figure(title, 9.5, 4.6, left=0.85, right=0.25, top=0.8, bottom=0.55)
    ax = fig.add_subplot()
    if grads.empty:
        _no_data(ax, "none of the selected layers has records")
        return _finish(fig, path)
    values = grads["value"].to_numpy(dtype="float64")
    grads = grads.assign(value=np.where(np.isfinite(values) & (values > 0), values, np.nan))
    spans = _epoch_spans(run.gradients.loc[run.gradients["metric"] == metric])
    means = run_epoch_means(run, metric)
    present = [layer for layer in layers if layer in set(grads["layer"])]
    colours = run_colours(len(present))
    for colour, layer in zip(colours, present, strict=True):
        rows = grads.loc[grads["layer"] == layer].sort_values("step")
        depth, kind = int(rows["depth"].iloc[0]), str(rows["kind"].iloc[0])
        ax.plot(rows["step"], rows["value"], color=colour, linewidth=0.7, alpha=0.45)
        stair = _staircase(spans, means.loc[means["layer"] == layer])
        ax.plot(stair[:, 0], stair[:, 1], color=colour, linewidth=2.4,
                label=_plain(f"{layer} (depth {depth}, {kind})"))
    log_axis(ax, log_limits(values))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(_axis_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    _epoch_axis(ax, spans)
    _mark_divergence_step(ax, run)
    ax.legend(loc="best", fontsize=8, title="thin: per step, bold: epoch mean", title_fontsize=8)
    return _finish(fig, path)


def plot_heatmap(run: RunData, metric: str, path: Path) -> Path:
    """Layer x epoch image of log10 of each layer's epoch-mean `metric`."""
    means = run_epoch_means(run, metric)
    layers = means[["layer", "depth"]].drop_duplicates("layer").sort_values(
        ["depth", "layer"], kind="stable")
    height = min(max(3.2, 0.17 * len(layers) + 1.6), 14.0)
    labels = [_plain(f"{name} ({depth})") for name, depth in layers.itertuples(index=False)]
    label_size = 7 if len(labels) > 25 else 8
    left = 0.45 + max((text_width(label, label_size) for label in labels), default=0.3)
    title = f"{_plain(run.name)}: log10 epoch-mean {METRIC_LABELS.get(metric, metric)}"
    fig = new_figure(title, 6.8 + left, height, left=left, right=0.85, top=0.45, bottom=0.6)
    ax = fig.add_subplot()
    if means.empty:
        _no_data(ax, f"no {metric} records")
        return _finish(fig, path)
    epochs = sorted(int(e) for e in means["epoch"].unique())
    grid = means.pivot_table(index="layer", columns="epoch", values="mean", aggfunc="first")
    grid = grid.reindex(index=layers["layer"], columns=epochs)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(grid.to_numpy(dtype="float64"))
    logs[~np.isfinite(logs)] = np.nan
    cmap = colormaps["magma"].with_extremes(bad="0.85")
    finite = logs[np.isfinite(logs)]
    if finite.size == 0:
        _no_data(ax)
        return _finish(fig, path)
    image = ax.imshow(np.ma.masked_invalid(logs), aspect="auto", cmap=cmap,
                      interpolation="nearest", vmin=float(finite.min()), vmax=float(finite.max()))
    every_epoch = max(1, math.ceil(len(epochs) / 20))
    ax.set_xticks(range(0, len(epochs), every_epoch),
                  labels=[str(e) for e in epochs[::every_epoch]])
    every_layer = max(1, math.ceil(len(layers) / 60))
    ax.set_yticks(range(0, len(labels), every_layer), labels=labels[::every_layer],
                  fontsize=label_size)
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer (depth), input at the top")
    colourbar = fig.colorbar(image, ax=ax, pad=0.02, fraction=0.05)
    colourbar.set_label(f"log10 {METRIC_LABELS.get(metric, metric)}")
    if np.isnan(logs).any():
        ax.text(1.0, -0.02, "grey: no finite value", transform=ax.transAxes, ha="right",
                va="top", fontsize=7, color="0.3")
    return _finish(fig, path)


def _draw_depth_profile(ax: Axes, runs: Mapping[str, RunData], metric: str,
                        colours: Sequence[Colour]) -> bool:
    """First-epoch (dashed, hollow) and last-epoch (solid) profiles; True if anything drawn."""
    drawn: list[np.ndarray] = []
    for colour, run in zip(colours, runs.values(), strict=True):
        means = run_epoch_means(run, metric)
        if means.empty:
            continue
        finite_epochs = means.loc[np.isfinite(means["mean"]), "epoch"]
        if finite_epochs.empty:
            continue
        kind = fit_kind(run.gradients)
        first, last = int(finite_epochs.min()), int(finite_epochs.max())
        for epoch, style, face in ((first, "--", "white"), (last, "-", colour)):
            rows = means.loc[means["epoch"] == epoch].sort_values(["depth", "layer"])
            main = rows.loc[rows["kind"] == kind]
            ax.plot(main["depth"], main["mean"], linestyle=style, color=colour, linewidth=1.6,
                    marker=KIND_MARKERS.get(kind, "o"), markersize=3.5, markerfacecolor=face)
            for other_kind, other in rows.loc[rows["kind"] != kind].groupby("kind"):
                ax.plot(other["depth"], other["mean"], linestyle="none", color=colour,
                        marker=KIND_MARKERS.get(other_kind, "D"), markersize=5,
                        markerfacecolor=face)
            drawn.append(rows["mean"].to_numpy(dtype="float64"))
            if first == last:
                break
    if not drawn:
        return False
    limits = log_limits(np.concatenate(drawn))
    if limits is None:
        return False
    log_axis(ax, limits)
    ax.set_xlabel("layer depth (0 = nearest the input)")
    ax.set_ylabel(f"epoch-mean {_axis_label(metric)}")
    ax.grid(True, which="major", alpha=0.3)
    return True


def _profile_legend(ax: Axes, labels: Sequence[str], colours: Sequence[Colour],
                    kinds: set[str]) -> None:
    handles = [Line2D([], [], color=c, linewidth=2, label=_plain(label))
               for c, label in zip(colours, labels, strict=True)]
    handles += [Line2D([], [], color="0.3", linestyle="--", marker="o", markerfacecolor="white",
                       label="first epoch"),
                Line2D([], [], color="0.3", linestyle="-", marker="o", label="last epoch")]
    handles += [Line2D([], [], color="0.3", linestyle="none", marker=KIND_MARKERS[kind],
                       label=f"{kind} (not in fit)")
                for kind in ("shortcut", "linear") if kind in kinds]
    ax.legend(handles=handles, fontsize=8.5, loc="best", ncol=1 if len(handles) <= 8 else 2)


def plot_depth_profiles(
    runs: Mapping[str, RunData], metrics: Sequence[str], path: Path, title: str
) -> Path:
    """One panel per metric: each run's epoch-mean norm against depth at first and last epoch."""
    fig = new_figure(_plain(title), 6.2 * len(metrics) + 0.4, 5.0, left=0.85, right=0.2,
                     top=0.65, bottom=0.55, wspace=0.25)
    colours = run_colours(len(runs))
    kinds = set().union(*(set(run.gradients["kind"].unique()) for run in runs.values()))
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), index + 1)
        if _draw_depth_profile(ax, runs, metric, colours):
            ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
            if index == 0:
                _profile_legend(ax, list(runs), colours, kinds)
        else:
            _no_data(ax, f"no {metric} records")
    return _finish(fig, path)


def _draw_curves(ax_loss: Axes, ax_acc: Axes, runs: Mapping[str, RunData],
                 colours: Sequence[Colour]) -> None:
    losses, accuracies = [], []
    for colour, run in zip(colours, runs.values(), strict=True):
        metrics = run.metrics
        if metrics.empty:
            continue
        epochs = metrics["epoch"].to_numpy()
        for column, style in (("train_loss", "-"), ("val_loss", "--")):
            values = metrics[column].to_numpy(dtype="float64")
            values = np.where(np.isfinite(values), values, np.nan)
            ax_loss.plot(epochs, values, linestyle=style, color=colour, linewidth=1.6,
                         marker="o", markersize=3)
            losses.append(values)
        for column, style in (("train_acc", "-"), ("val_acc", "--")):
            values = 100.0 * metrics[column].to_numpy(dtype="float64")
            values = np.where(np.isfinite(values), values, np.nan)
            ax_acc.plot(epochs, values, linestyle=style, color=colour, linewidth=1.6,
                        marker="o", markersize=3)
            accuracies.append(values)
        if run.state == "diverged":
            finite = metrics.loc[np.isfinite(metrics["train_loss"])]
            where = finite.iloc[-1] if not finite.empty else None
            if where is not None:
                ax_loss.plot([where["epoch"]], [where["train_loss"]], marker="X", markersize=11,
                             color=DIVERGED_COLOUR, linestyle="none")
    loss_values = np.concatenate(losses) if losses else np.array([])
    positive = finite_positive(loss_values)
    if positive.size and positive.max() / positive.min() > 100:
        log_axis(ax_loss, log_limits(loss_values))
        ax_loss.set_ylabel("cross-entropy loss (log scale)")
    else:
        limits = linear_limits(loss_values)
        if limits is not None:
            ax_loss.set_ylim(*limits)
        ax_loss.set_ylabel("cross-entropy loss")
    acc_limits = linear_limits(np.concatenate(accuracies) if accuracies else np.array([]))
    if acc_limits is not None:
        ax_acc.set_ylim(max(acc_limits[0], -2.0), min(acc_limits[1], 102.0))
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)


def _curve_legend(ax: Axes, labels: Sequence[str], colours: Sequence[Colour],
                  runs: Mapping[str, RunData], *, with_runs: bool = True) -> None:
    """Line styles (train, validation, divergence), and the run colours unless another panel
    of the figure already names them."""
    handles = [Line2D([], [], color=c, linewidth=2, label=_plain(label))
               for c, label in zip(colours, labels, strict=True)] if with_runs else []
    handles += [Line2D([], [], color="0.3", linestyle="-", label="train"),
                Line2D([], [], color="0.3", linestyle="--", label="validation")]
    if any(run.state == "diverged" for run in runs.values()):
        handles.append(Line2D([], [], color=DIVERGED_COLOUR, marker="X", linestyle="none",
                              label="diverged after this point"))
    ax.legend(handles=handles, fontsize=8.5, loc="best", ncol=1 if len(handles) <= 8 else 2)


def plot_training_curves(runs: Mapping[str, RunData], path: Path, title: str) -> Path:
    """Loss and accuracy against epoch, train (solid) and validation (dashed), all runs."""
    fig = new_figure(_plain(title), 12, 4.6, left=0.75, right=0.2, top=0.65, bottom=0.55,
                     wspace=0.2)
    ax_loss, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = run_colours(len(runs))
    _draw_curves(ax_loss, ax_acc, runs, colours)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(runs), colours, runs)
    return _finish(fig, path)


def plot_experiment(runs: Mapping[str, RunData], metric: str, path: Path, title: str) -> Path:
    """An experiment's variants side by side: depth profile on top, loss and accuracy below.

    Two rows rather than three panels in a row, so the figure stays legible at page width.
    """
    fig = new_figure(_plain(title), 11.5, 8.6, left=0.85, right=0.2, top=0.65, bottom=0.55,
                     wspace=0.22)
    fig.subplots_adjust(hspace=0.32)
    grid = fig.add_gridspec(2, 2)
    ax_profile = fig.add_subplot(grid[0, :])
    ax_loss, ax_acc = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    colours = run_colours(len(runs))
    kinds = set().union(*(set(run.gradients["kind"].unique()) for run in runs.values()))
    profile_drawn = _draw_depth_profile(ax_profile, runs, metric, colours)
    if profile_drawn:
        _profile_legend(ax_profile, list(runs), colours, kinds)
        ax_profile.set_title("depth profile", fontsize=10)
    else:
        _no_data(ax_profile, f"no {metric} records")
    _draw_curves(ax_loss, ax_acc, runs, colours)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(runs), colours, runs, with_runs=not profile_drawn)
    return _finish(fig, path)


def plot_ratio_overview(summaries: Mapping[str, dict], path: Path, metric: str) -> Path:
    """Every run's first-to-last ratio at first (hollow) and last (filled) epoch, log x axis."""
    names = list(summaries)
    left = 0.3 + max((text_width(_plain(name), 8) for name in names), default=0.5)
    fig = new_figure(f"Gradient flow of every run ({METRIC_LABELS.get(metric, metric)})",
                     max(9.0, 7.0 + left), min(max(2.8, 0.3 * len(names) + 1.8), 20), left=left,
                     right=1.35, top=0.65, bottom=0.9)
    ax = fig.add_subplot()
    values = []
    for row, name in enumerate(names):
        summary = summaries[name]
        first = summary.get("first_to_last_ratio")
        last = summary.get("first_to_last_ratio_last_epoch")
        if first is None and last is None:
            ax.text(1.0, row, "  no gradient data", va="center", fontsize=8, color="0.4",
                    transform=ax.get_yaxis_transform())
            continue
        points = [v for v in (first, last) if v is not None and v > 0]
        if len(points) == 2:
            ax.plot(points, [row, row], color="0.6", linewidth=1)
        if first is not None and first > 0:
            ax.plot([first], [row], marker="o", markerfacecolor="white", color="#1f77b4",
                    markersize=7, linestyle="none")
        if last is not None and last > 0:
            ax.plot([last], [row], marker="o", color="#1f77b4", markersize=7, linestyle="none")
        if summary.get("state") == "diverged":
            ax.text(1.0, row, "  diverged", va="center", fontsize=8, color=DIVERGED_COLOUR,
                    transform=ax.get_yaxis_transform())
        values.extend(points)
    low = VERDICT_THRESHOLDS.vanishing_below
    high = VERDICT_THRESHOLDS.exploding_above
    limits = log_limits(np.array([*values, low / 2, high * 2]))
    log_axis(ax, limits, axis="x")
    if limits is not None:
        ax.axvspan(limits[0], low, color="#1f77b4", alpha=0.08)
        ax.axvspan(high, limits[1], color=DIVERGED_COLOUR, alpha=0.08)
    for threshold in (low, 1.0, high):
        ax.axvline(threshold, color="0.5", linestyle=":" if threshold != 1.0 else "-",
                   linewidth=1)
    ax.text(low, 1.0, "vanishing \u2190 ", ha="right", va="bottom", fontsize=8,
            transform=ax.get_xaxis_transform())
    ax.text(high, 1.0, " \u2192 exploding", ha="left", va="bottom", fontsize=8,
            transform=ax.get_xaxis_transform())
    ax.set_yticks(range(len(names)), labels=[_plain(name) for name in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("first-to-last ratio: input-side conv norm / output-side conv norm (log scale)")
    # below the axes, where it cannot hide a run's points
    fig.legend(handles=[
        Line2D([], [], marker="o", markerfacecolor="white", color="#1f77b4", linestyle="none",
               label="first epoch"),
        Line2D([], [], marker="o", color="#1f77b4", linestyle="none", label="last epoch")],
        fontsize=8, loc="lower center", ncol=2, frameon=False)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    return _finish(fig, path)


def _finish(fig: Figure, path: Path) -> Path:
    return save_figure(fig, path)

