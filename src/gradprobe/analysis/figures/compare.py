"""Figures that compare runs: depth profiles, training curves, and an experiment's variants.

Each line is a run, or a configuration's replicates: then the line is the mean over its seeds
(geometric for norms, arithmetic for losses and accuracies) and a shaded band spans the seeds'
minimum to maximum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradprobe.analysis.chance import Chance
from gradprobe.analysis.figures.bands import curve_band, profile_band
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

Group = Sequence[RunData]  # the replicates of one configuration (one run: no band)
BAND_ALPHA = 0.18  # the replicate band's opacity (first-epoch bands are drawn fainter)
SPLIT_FACTOR = 10.0  # seeds more than a decade apart at a layer: thin per-seed lines, no band
SPLIT_POINTS = 25.0  # seeds' accuracies more than this many points apart: per-seed lines
CHANCE_COLOUR = "0.35"  # grey: no run colour (tab10) is grey-black


def as_groups(runs: Mapping[str, RunData | Sequence[RunData]]) -> dict[str, list[RunData]]:
    """Label -> the runs drawn as one line: a lone run, or a configuration's replicates."""
    return {label: [value] if isinstance(value, RunData) else list(value)
            for label, value in runs.items()}


def _has_band(counts: Sequence[float]) -> bool:
    return bool(len(counts)) and max(counts) > 1


def _draw_depth_profile(ax: Axes, groups: Mapping[str, Group], metric: str,
                        colours: Sequence[Colour]) -> bool:
    """First-epoch (dashed, hollow) and last-epoch (solid) profiles: each configuration's
    geometric mean over its seeds, shaded from the seeds' minimum to maximum; True if drawn."""
    drawn: list[np.ndarray] = []
    for colour, runs in zip(colours, groups.values(), strict=True):
        with_data = [run for run in runs if not run_epoch_means(run, metric).empty]
        if not with_data:
            continue
        kind = fit_kind(with_data[0].gradients)
        epochs = [run_epoch_means(run, metric) for run in with_data]
        finite = [m.loc[np.isfinite(m["mean"]), GradCol.epoch] for m in epochs]
        single_epoch = all(f.empty or f.min() == f.max() for f in finite)
        for which, style, face, alpha in (("first", "--", "white", BAND_ALPHA / 2),
                                          ("last", "-", colour, BAND_ALPHA)):
            band = profile_band(with_data, metric, which)
            if band.empty:
                break
            main = band.loc[band[GradCol.kind] == kind]
            ax.plot(main[GradCol.depth], main["centre"], linestyle=style, color=colour,
                    linewidth=1.6, marker=KIND_MARKERS.get(kind, "o"), markersize=3.5,
                    markerfacecolor=face)
            spread = (main["high"] / main["low"]).to_numpy(dtype="float64")
            if _has_band(main["n"].tolist()) and np.nanmax(spread, initial=1.0) > SPLIT_FACTOR:
                for run in with_data:  # the seeds split: a band would hide how
                    own = profile_band([run], metric, which)
                    own = own.loc[own[GradCol.kind] == kind]
                    ax.plot(own[GradCol.depth], own["centre"], linestyle=style, color=colour,
                            linewidth=0.7, alpha=0.6)
            elif _has_band(main["n"].tolist()):
                ax.fill_between(main[GradCol.depth].to_numpy(dtype="float64"),
                                main["low"].to_numpy(dtype="float64"),
                                main["high"].to_numpy(dtype="float64"), color=colour,
                                alpha=alpha, linewidth=0)
            for other_kind, other in band.loc[band[GradCol.kind] != kind].groupby(GradCol.kind):
                ax.plot(other[GradCol.depth], other["centre"], linestyle="none", color=colour,
                        marker=KIND_MARKERS.get(other_kind, "D"), markersize=5,
                        markerfacecolor=face)
            drawn.append(band[["low", "high"]].to_numpy(dtype="float64").ravel())
            if single_epoch:
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
                    kinds: set[str], with_band: bool = False) -> None:
    handles = [Line2D([], [], color=c, linewidth=2, label=plain(label))
               for c, label in zip(colours, labels, strict=True)]
    handles += [Line2D([], [], color="0.3", linestyle="--", marker="o", markerfacecolor="white",
                       label="first epoch"),
                Line2D([], [], color="0.3", linestyle="-", marker="o", label="last epoch")]
    if with_band:
        handles.append(Patch(color="0.3", alpha=BAND_ALPHA, label="seeds' min-max"))
    handles += [Line2D([], [], color="0.3", linestyle="none", marker=KIND_MARKERS[kind],
                       label=f"{kind} (not in fit)")
                for kind in ("shortcut", "linear") if kind in kinds]
    _legend_below(ax, handles)


def _legend_below(ax: Axes, handles: list[Line2D | Patch]) -> None:
    """The legend under the axes, where it cannot cover data."""
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=min(4, len(handles)), frameon=False)


def plot_depth_profiles(
    runs: Mapping[str, RunData | Sequence[RunData]], metrics: Sequence[str], path: Path | None,
    title: str,
) -> Path | Figure:
    """One panel per metric: each run's (or configuration's, over its seeds) epoch-mean value
    against depth at the first and last epoch (the figure itself when `path` is None)."""
    groups = as_groups(runs)
    fig = new_figure(plain(title), 6.2 * len(metrics) + 0.4, 5.7, left=0.85, right=0.2,
                     top=0.65, bottom=1.3, wspace=0.25)
    colours = run_colours(len(groups))
    kinds = _kinds(groups)
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), index + 1)
        if _draw_depth_profile(ax, groups, metric, colours):
            ax.set_title(metric_info(metric).label, fontsize=10)
            if index == 0:
                _profile_legend(ax, list(groups), colours, kinds, _replicated(groups))
        else:
            no_data(ax, f"no {metric} records")
    return fig if path is None else save_figure(fig, path)


def _kinds(groups: Mapping[str, Group]) -> set[str]:
    return {kind for runs in groups.values() for run in runs
            for kind in run.gradients[GradCol.kind].unique()}


def _replicated(groups: Mapping[str, Group]) -> bool:
    return any(len(runs) > 1 for runs in groups.values())


def _draw_curves(ax_loss: Axes, ax_acc: Axes, groups: Mapping[str, Group],
                 colours: Sequence[Colour], chance: Chance | None = None) -> None:
    """Per configuration: the mean over seeds per epoch, shaded from the seeds' min to max (thin
    per-seed lines instead where the seeds split); chance drawn as an orange line."""
    losses, accuracies = [], []
    if chance is not None:
        ax_acc.axhspan(100 * chance.low, 100 * chance.high, color=CHANCE_COLOUR, alpha=0.12,
                       linewidth=0)
        ax_acc.axhline(100 * chance.accuracy, color=CHANCE_COLOUR, linewidth=1, linestyle=":")
        ax_loss.axhline(chance.loss, color=CHANCE_COLOUR, linewidth=1, linestyle=":")
        losses.append(np.array([chance.loss]))
        accuracies.append(np.array([100 * chance.low, 100 * chance.high]))
    for colour, runs in zip(colours, groups.values(), strict=True):
        for ax, columns, scale, store in ((ax_loss, (Col.train_loss, Col.val_loss), 1.0, losses),
                                          (ax_acc, (Col.train_acc, Col.val_acc), 100.0,
                                           accuracies)):
            for column, style in zip(columns, ("-", "--"), strict=True):
                band = curve_band(runs, column)
                if band.empty:
                    continue
                epochs = band["epoch"].to_numpy(dtype="float64")
                ax.plot(epochs, scale * band["centre"], linestyle=style, color=colour,
                        linewidth=1.6, marker="o", markersize=3)
                split = scale * float((band["high"] - band["low"]).max()) > (
                    SPLIT_POINTS if scale == 100.0 else 1e9)
                if _has_band(band["n"].tolist()) and split:
                    for run in runs:
                        own = curve_band([run], column)
                        ax.plot(own["epoch"], scale * own["centre"], linestyle=style,
                                color=colour, linewidth=0.7, alpha=0.6)
                elif _has_band(band["n"].tolist()):
                    ax.fill_between(epochs, scale * band["low"].to_numpy(dtype="float64"),
                                    scale * band["high"].to_numpy(dtype="float64"),
                                    color=colour, alpha=BAND_ALPHA / (1 if style == "-" else 2),
                                    linewidth=0)
                store.append(scale * band[["low", "high"]].to_numpy(dtype="float64").ravel())
        for run in runs:
            if run.state is RunState.DIVERGED and not run.metrics.empty:
                finite = run.metrics.loc[np.isfinite(run.metrics[Col.train_loss])]
                if not finite.empty:
                    where = finite.iloc[-1]
                    ax_loss.plot([where[Col.epoch]], [where[Col.train_loss]], marker="X",
                                 markersize=11, color=DIVERGED_COLOUR, linestyle="none")
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
                  groups: Mapping[str, Group], *, with_runs: bool = True,
                  chance: bool = False) -> None:
    """Line styles (train, validation, divergence), and the run colours unless another panel
    of the figure already names them."""
    handles = [Line2D([], [], color=c, linewidth=2, label=plain(label))
               for c, label in zip(colours, labels, strict=True)] if with_runs else []
    handles += [Line2D([], [], color="0.3", linestyle="-", label="train"),
                Line2D([], [], color="0.3", linestyle="--", label="validation")]
    if _replicated(groups):
        handles.append(Patch(color="0.3", alpha=BAND_ALPHA, label="mean; band: seeds' min-max"))
    if any(run.state is RunState.DIVERGED for runs in groups.values() for run in runs):
        handles.append(Line2D([], [], color=DIVERGED_COLOUR, marker="X", linestyle="none",
                              label="diverged after this point"))
    if chance:
        handles.append(Line2D([], [], color=CHANCE_COLOUR, linestyle=":",
                              label="chance (95% band)"))
    # under the whole row of panels, centred on the figure: under one panel it ran off the edge
    box = ax.get_position()
    ax.figure.legend(handles=handles, fontsize=8, loc="upper center",
                     bbox_to_anchor=(0.5, box.y0 - 0.13 * box.height),
                     ncol=min(5, len(handles)), frameon=False)


def plot_training_curves(runs: Mapping[str, RunData | Sequence[RunData]], path: Path,
                         title: str, chance: Chance | None = None) -> Path:
    """Loss and accuracy against epoch, train (solid) and validation (dashed): each run, or
    each configuration's mean over its seeds with the seeds' min-max band."""
    groups = as_groups(runs)
    fig = new_figure(plain(title), 12, 5.3, left=0.75, right=0.2, top=0.65, bottom=1.2,
                     wspace=0.2)
    ax_loss, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = run_colours(len(groups))
    _draw_curves(ax_loss, ax_acc, groups, colours, chance)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(groups), colours, groups, chance=chance is not None)
    return save_figure(fig, path)


def plot_experiment(runs: Mapping[str, RunData | Sequence[RunData]], metric: str, path: Path,
                    title: str, chance: Chance | None = None) -> Path:
    """An experiment's variants side by side: depth profile on top, loss and accuracy below.

    Two rows rather than three panels in a row, so the figure stays legible at page width.
    A variant with several seeds is drawn as its mean with the seeds' min-max band.
    """
    groups = as_groups(runs)
    fig = new_figure(plain(title), 11.5, 10.0, left=0.85, right=0.2, top=0.65, bottom=0.9,
                     wspace=0.22)
    fig.subplots_adjust(hspace=0.55)
    grid = fig.add_gridspec(2, 2)
    ax_profile = fig.add_subplot(grid[0, :])
    ax_loss, ax_acc = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    colours = run_colours(len(groups))
    profile_drawn = _draw_depth_profile(ax_profile, groups, metric, colours)
    if profile_drawn:
        _profile_legend(ax_profile, list(groups), colours, _kinds(groups), _replicated(groups))
        ax_profile.set_title("depth profile", fontsize=10)
    else:
        no_data(ax_profile, f"no {metric} records")
    _draw_curves(ax_loss, ax_acc, groups, colours, chance)
    ax_loss.set_title("loss", fontsize=10)
    ax_acc.set_title("accuracy", fontsize=10)
    _curve_legend(ax_acc, list(groups), colours, groups, with_runs=not profile_drawn,
                  chance=chance is not None)
    return save_figure(fig, path)


SMALL_MULTIPLES_ABOVE = 2  # more variants than this: one small panel each (<= 4 lines a panel)


def plot_experiment_grid(runs: Mapping[str, RunData | Sequence[RunData]], metric: str,
                         path: Path, title: str, chance: Chance | None = None) -> Path:
    """An experiment with many variants as small multiples: per variant, its depth profile at
    the first (dashed) and last (solid) epoch above its train (solid) and validation (dashed)
    accuracy, chance shaded; axes shared along each row, so panels compare at a glance."""
    groups = as_groups(runs)
    columns = min(3, len(groups))
    blocks = math.ceil(len(groups) / columns)
    fig = new_figure(plain(title), 3.9 * columns + 0.5, 5.0 * blocks + 0.6, left=0.8,
                     right=0.2, top=0.7, bottom=0.9, wspace=0.25)
    fig.subplots_adjust(hspace=0.55)
    grid = fig.add_gridspec(2 * blocks, columns)
    colour = run_colours(1)[0]
    profiles: list[Axes] = []
    for index, (label, group) in enumerate(groups.items()):
        block, column = divmod(index, columns)
        ax_profile = fig.add_subplot(grid[2 * block, column])
        ax_acc = fig.add_subplot(grid[2 * block + 1, column])
        if _draw_depth_profile(ax_profile, {label: group}, metric, [colour]):
            profiles.append(ax_profile)
        else:
            no_data(ax_profile, f"no {metric} records")
        ax_profile.set_title(plain(label), fontsize=9.5)
        ax_profile.set_xlabel("layer depth" if block == blocks - 1 else "", fontsize=8.5)
        ax_profile.set_ylabel(f"{metric_info(metric).label}" if column == 0 else "", fontsize=8)
        _draw_accuracy(ax_acc, group, colour, chance)
        ax_acc.set_ylabel("accuracy (%)" if column == 0 else "", fontsize=8.5)
    if profiles:
        low = min(ax.get_ylim()[0] for ax in profiles)
        high = max(ax.get_ylim()[1] for ax in profiles)
        for ax in profiles:
            ax.set_ylim(low, high)
    handles = [Line2D([], [], color="0.3", linestyle="--", marker="o", markerfacecolor="white",
                      label="first epoch / validation"),
               Line2D([], [], color="0.3", linestyle="-", marker="o",
                      label="last epoch / train")]
    if chance is not None:
        handles.append(Patch(color=CHANCE_COLOUR, alpha=0.2, label="chance"))
    fig.legend(handles=handles, fontsize=8.5, loc="lower center", ncol=len(handles),
               frameon=False)
    return save_figure(fig, path)


def _draw_accuracy(ax: Axes, runs: Group, colour: Colour, chance: Chance | None) -> None:
    if chance is not None:
        ax.axhspan(100 * chance.low, 100 * chance.high, color=CHANCE_COLOUR, alpha=0.2,
                   linewidth=0)
    for column, style in ((Col.train_acc, "-"), (Col.val_acc, "--")):
        band = curve_band(runs, column)
        if band.empty:
            continue
        epochs = band["epoch"].to_numpy(dtype="float64")
        ax.plot(epochs, 100 * band["centre"], linestyle=style, color=colour, linewidth=1.4,
                marker="o", markersize=2.5)
        if _has_band(band["n"].tolist()):
            ax.fill_between(epochs, 100 * band["low"].to_numpy(dtype="float64"),
                            100 * band["high"].to_numpy(dtype="float64"), color=colour,
                            alpha=BAND_ALPHA / 2, linewidth=0)
    ax.set_ylim(0, 100)
    ax.set_xlabel("epoch", fontsize=8.5)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
