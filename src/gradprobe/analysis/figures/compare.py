"""Figures that compare runs: depth profiles, training curves, and an experiment's variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradprobe.analysis.figures.base import (
    DIVERGED_COLOUR,
    KIND_MARKERS,
    Colour,
    axis_label,
    finite_positive,
    linear_limits,
    log_axis,
    log_limits,
    new_figure,
    no_data,
    plain,
    run_colours,
    save_figure,
)
from gradprobe.analysis.load import RunData
from gradprobe.analysis.summary import fit_kind, run_epoch_means
from gradprobe.metrics import metric_info
from gradprobe.record import Col, GradCol, RunState


def _draw_depth_profile(ax: Axes, runs: Mapping[str, RunData], metric: str,
                        colours: Sequence[Colour]) -> bool:
    """First-epoch (dashed, hollow) and last-epoch (solid) profiles; True if anything drawn."""
    drawn: list[np.ndarray] = []
    for colour, run in zip(colours, runs.values(), strict=True):
        means = run_epoch_means(run, metric)
        if means.empty:
            continue
        finite_epochs = means.loc[np.isfinite(means["mean"]), GradCol.epoch]
        if finite_epochs.empty:
            continue
        kind = fit_kind(run.gradients)
        first, last = int(finite_epochs.min()), int(finite_epochs.max())
        for epoch, style, face in ((first, "--", "white"), (last, "-", colour)):
            rows = means.loc[means[GradCol.epoch] == epoch]
            rows = rows.sort_values([GradCol.depth, GradCol.layer])
            main = rows.loc[rows[GradCol.kind] == kind]
            ax.plot(main[GradCol.depth], main["mean"], linestyle=style, color=colour, linewidth=1.6,
                    marker=KIND_MARKERS.get(kind, "o"), markersize=3.5, markerfacecolor=face)
            for other_kind, other in rows.loc[rows[GradCol.kind] != kind].groupby(GradCol.kind):
                ax.plot(other[GradCol.depth], other["mean"], linestyle="none", color=colour,
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
    ax.set_ylabel(f"epoch-mean {axis_label(metric)}")
    ax.grid(True, which="major", alpha=0.3)
    return True


def _profile_legend(ax: Axes, labels: Sequence[str], colours: Sequence[Colour],
                    kinds: set[str]) -> None:
    handles = [Line2D([], [], color=c, linewidth=2, label=plain(label))
               for c, label in zip(colours, labels, strict=True)]
    handles += [Line2D([], [], color="0.3", linestyle="--", marker="o", markerfacecolor="white",
                       label="first epoch"),
                Line2D([], [], color="0.3", linestyle="-", marker="o", label="last epoch")]
    handles += [Line2D([], [], color="0.3", linestyle="none", marker=KIND_MARKERS[kind],
                       label=f"{kind} (not in fit)")
                for kind in ("shortcut", "linear") if kind in kinds]
    ax.legend(handles=handles, fontsize=8.5, loc="best", ncol=1 if len(handles) <= 8 else 2)


def plot_depth_profiles(
    runs: Mapping[str, RunData], metrics: Sequence[str], path: Path | None, title: str
) -> Path | Figure:
    """One panel per metric: each run's epoch-mean norm against depth at first and last epoch
    (the figure itself when `path` is None)."""
    fig = new_figure(plain(title), 6.2 * len(metrics) + 0.4, 5.0, left=0.85, right=0.2,
                     top=0.65, bottom=0.55, wspace=0.25)
    colours = run_colours(len(runs))
    kinds = set().union(*(set(run.gradients[GradCol.kind].unique()) for run in runs.values()))
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), index + 1)
        if _draw_depth_profile(ax, runs, metric, colours):
            ax.set_title(metric_info(metric).label, fontsize=10)
            if index == 0:
                _profile_legend(ax, list(runs), colours, kinds)
        else:
            no_data(ax, f"no {metric} records")
    return fig if path is None else save_figure(fig, path)


def _draw_curves(ax_loss: Axes, ax_acc: Axes, runs: Mapping[str, RunData],
                 colours: Sequence[Colour]) -> None:
    losses, accuracies = [], []
    for colour, run in zip(colours, runs.values(), strict=True):
        metrics = run.metrics
        if metrics.empty:
            continue
        epochs = metrics[Col.epoch].to_numpy()
        for column, style in ((Col.train_loss, "-"), (Col.val_loss, "--")):
            values = metrics[column].to_numpy(dtype="float64")
            values = np.where(np.isfinite(values), values, np.nan)
            ax_loss.plot(epochs, values, linestyle=style, color=colour, linewidth=1.6,
                         marker="o", markersize=3)
            losses.append(values)
        for column, style in ((Col.train_acc, "-"), (Col.val_acc, "--")):
            values = 100.0 * metrics[column].to_numpy(dtype="float64")
            values = np.where(np.isfinite(values), values, np.nan)
            ax_acc.plot(epochs, values, linestyle=style, color=colour, linewidth=1.6,
                        marker="o", markersize=3)
            accuracies.append(values)
        if run.state is RunState.DIVERGED:
            finite = metrics.loc[np.isfinite(metrics[Col.train_loss])]
            where = finite.iloc[-1] if not finite.empty else None
            if where is not None:
                ax_loss.plot([where[Col.epoch]], [where[Col.train_loss]], marker="X", markersize=11,
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
    handles = [Line2D([], [], color=c, linewidth=2, label=plain(label))
               for c, label in zip(colours, labels, strict=True)] if with_runs else []
    handles += [Line2D([], [], color="0.3", linestyle="-", label="train"),
                Line2D([], [], color="0.3", linestyle="--", label="validation")]
    if any(run.state is RunState.DIVERGED for run in runs.values()):
        handles.append(Line2D([], [], color=DIVERGED_COLOUR, marker="X", linestyle="none",
                              label="diverged after this point"))
    ax.legend(handles=handles, fontsize=8.5, loc="best", ncol=1 if len(handles) <= 8 else 2)


def plot_training_curves(runs: Mapping[str, RunData], path: Path, title: str) -> Path:
    """Loss and accuracy against epoch, train (solid) and validation (dashed), all runs."""
    fig = new_figure(plain(title), 12, 4.6, left=0.75, right=0.2, top=0.65, bottom=0.55,
                     wspace=0.2)
    ax_loss, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = run_colours(len(runs))
    _draw_curves(ax_loss, ax_acc, runs, colours)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(runs), colours, runs)
    return save_figure(fig, path)


def plot_experiment(runs: Mapping[str, RunData], metric: str, path: Path, title: str) -> Path:
    """An experiment's variants side by side: depth profile on top, loss and accuracy below.

    Two rows rather than three panels in a row, so the figure stays legible at page width.
    """
    fig = new_figure(plain(title), 11.5, 8.6, left=0.85, right=0.2, top=0.65, bottom=0.55,
                     wspace=0.22)
    fig.subplots_adjust(hspace=0.32)
    grid = fig.add_gridspec(2, 2)
    ax_profile = fig.add_subplot(grid[0, :])
    ax_loss, ax_acc = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    colours = run_colours(len(runs))
    kinds = set().union(*(set(run.gradients[GradCol.kind].unique()) for run in runs.values()))
    profile_drawn = _draw_depth_profile(ax_profile, runs, metric, colours)
    if profile_drawn:
        _profile_legend(ax_profile, list(runs), colours, kinds)
        ax_profile.set_title("depth profile", fontsize=10)
    else:
        no_data(ax_profile, f"no {metric} records")
    _draw_curves(ax_loss, ax_acc, runs, colours)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(runs), colours, runs, with_runs=not profile_drawn)
    return save_figure(fig, path)
