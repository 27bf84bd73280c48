"""Per-run figures: every layer's metric against step, chosen layers, and the layer x epoch map.

Each takes a run directory's `RunData` or a probe's in-memory tidy frame (`probe.to_frame()`,
wrapped by `RunData.from_frame`, so both go through the same drawing code), and writes a PNG to
`path`, or returns the matplotlib `Figure` when no path is given (a notebook shows it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gradprobe.analysis.figures.base import (
    axis_label,
    epoch_axis,
    epoch_spans,
    log_axis,
    log_limits,
    mark_divergence_step,
    new_figure,
    no_data,
    plain,
    run_colours,
    save_figure,
    staircase,
    text_width,
)
from gradprobe.analysis.load import RunData, as_run
from gradprobe.analysis.summary import fitted_layers, run_epoch_means
from gradprobe.metrics import metric_info
from gradprobe.record import GradCol

RunOrFrame = RunData | pd.DataFrame  # a run directory's records or a probe's tidy frame
FigurePath = str | Path  # where to write the PNG
DEFAULT_METRIC = "weight_grad_norm"


def _finish(fig: Figure, path: FigurePath | None) -> Path | Figure:
    return fig if path is None else save_figure(fig, Path(path))


@overload
def plot_layer_norms(run: RunOrFrame, metric: str, path: FigurePath, *,
                     name: str = ...) -> Path: ...
@overload
def plot_layer_norms(run: RunOrFrame, metric: str = ..., path: None = None, *,
                     name: str = ...) -> Figure: ...
def plot_layer_norms(run: RunOrFrame, metric: str = DEFAULT_METRIC,
                     path: FigurePath | None = None, *, name: str = "probe") -> Path | Figure:
    """Every layer's `metric` against step, coloured by depth, with per-epoch means in bold.
    `name` titles an in-memory frame."""
    run = as_run(run, name)
    grads = run.gradients.loc[run.gradients[GradCol.metric] == metric]
    title = (f"{plain(run.name)}: {metric_info(metric).label} of all "
             f"{grads['layer'].nunique()} layers")
    fig = new_figure(title, 9.5, 5.5, left=0.85, right=0.75, top=0.8, bottom=0.85)
    ax = fig.add_subplot()
    if grads.empty:
        no_data(ax, f"no {metric} records")
        return _finish(fig, path)
    values = grads[GradCol.value].to_numpy(dtype="float64")
    grads = grads.assign(value=np.where(np.isfinite(values) & (values > 0), values, np.nan))
    spans = epoch_spans(grads)
    means = run_epoch_means(run, metric)
    depths = grads[GradCol.depth]
    colour_norm = Normalize(vmin=float(depths.min()), vmax=max(float(depths.max()), 1e-9))
    cmap = colormaps["viridis"]
    raw_lines, bold_lines, colours = [], [], []
    for (layer, depth), rows in grads.groupby([GradCol.layer, GradCol.depth], sort=False):
        rows = rows.sort_values(GradCol.step)
        raw_lines.append(np.column_stack([rows[GradCol.step], rows[GradCol.value]]))
        bold_lines.append(staircase(spans, means.loc[means[GradCol.layer] == layer]))
        colours.append(cmap(colour_norm(depth)))
    ax.add_collection(LineCollection(raw_lines, colors=colours, linewidths=0.6, alpha=0.35))
    ax.add_collection(LineCollection(bold_lines, colors=colours, linewidths=2.4))
    limits = log_limits(values)
    log_axis(ax, limits)
    if limits is None:
        no_data(ax)
    else:
        ax.set_xlim(float(grads[GradCol.step].min()), max(float(grads[GradCol.step].max()), 1.0))
    colourbar = fig.colorbar(ScalarMappable(norm=colour_norm, cmap=cmap), ax=ax, pad=0.015,
                             fraction=0.04)
    colourbar.set_label("layer depth (0 = nearest the input)")
    colourbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(axis_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    epoch_axis(ax, spans)
    mark_divergence_step(ax, run)
    ax.legend(handles=[Line2D([], [], color="0.3", linewidth=0.6, alpha=0.6, label="per step"),
                       Line2D([], [], color="0.3", linewidth=2.4, label="epoch mean")],
              loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False, fontsize=8)
    return _finish(fig, path)


def default_subset(run: RunOrFrame, metric: str = DEFAULT_METRIC) -> list[str]:
    """The first, middle and last layers of the fitted kind (conv), in depth order."""
    run = as_run(run)
    grads = run.gradients.loc[run.gradients[GradCol.metric] == metric]
    layers = [name for name, _ in fitted_layers(grads)]
    if not layers:
        return []
    picked = [layers[0], layers[len(layers) // 2], layers[-1]]
    return list(dict.fromkeys(picked))


@overload
def plot_layer_subset(run: RunOrFrame, metric: str, layers: Sequence[str] | None,
                      path: FigurePath, *, name: str = ...) -> Path: ...
@overload
def plot_layer_subset(run: RunOrFrame, metric: str = ..., layers: Sequence[str] | None = ...,
                      path: None = None, *, name: str = ...) -> Figure: ...
def plot_layer_subset(run: RunOrFrame, metric: str = DEFAULT_METRIC,
                      layers: Sequence[str] | None = None, path: FigurePath | None = None, *,
                      name: str = "probe") -> Path | Figure:
    """Chosen layers' `metric` against step: per step thin, per-epoch mean bold. `layers`
    defaults to `default_subset` (first, middle and last)."""
    run = as_run(run, name)
    layers = default_subset(run, metric) if layers is None else layers
    grads = run.gradients.loc[(run.gradients[GradCol.metric] == metric)
                              & run.gradients[GradCol.layer].isin(list(layers))]
    title = f"{plain(run.name)}: {metric_info(metric).label}, selected layers"
    fig = new_figure(title, 9.5, 4.6, left=0.85, right=0.25, top=0.8, bottom=0.55)
    ax = fig.add_subplot()
    if grads.empty:
        no_data(ax, "none of the selected layers has records")
        return _finish(fig, path)
    values = grads[GradCol.value].to_numpy(dtype="float64")
    grads = grads.assign(value=np.where(np.isfinite(values) & (values > 0), values, np.nan))
    spans = epoch_spans(run.gradients.loc[run.gradients[GradCol.metric] == metric])
    means = run_epoch_means(run, metric)
    present = [layer for layer in layers if layer in set(grads[GradCol.layer])]
    colours = run_colours(len(present))
    for colour, layer in zip(colours, present, strict=True):
        rows = grads.loc[grads[GradCol.layer] == layer].sort_values(GradCol.step)
        depth, kind = int(rows[GradCol.depth].iloc[0]), str(rows[GradCol.kind].iloc[0])
        ax.plot(rows[GradCol.step], rows[GradCol.value], color=colour, linewidth=0.7, alpha=0.45)
        stair = staircase(spans, means.loc[means[GradCol.layer] == layer])
        ax.plot(stair[:, 0], stair[:, 1], color=colour, linewidth=2.4,
                label=plain(f"{layer} (depth {depth}, {kind})"))
    log_axis(ax, log_limits(values))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(axis_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    epoch_axis(ax, spans)
    mark_divergence_step(ax, run)
    ax.legend(loc="best", fontsize=8, title="thin: per step, bold: epoch mean", title_fontsize=8)
    return _finish(fig, path)


@overload
def plot_heatmap(run: RunOrFrame, metric: str, path: FigurePath, *, name: str = ...) -> Path: ...
@overload
def plot_heatmap(run: RunOrFrame, metric: str = ..., path: None = None, *,
                 name: str = ...) -> Figure: ...
def plot_heatmap(run: RunOrFrame, metric: str = DEFAULT_METRIC, path: FigurePath | None = None,
                 *, name: str = "probe") -> Path | Figure:
    """Layer x epoch image of log10 of each layer's epoch-mean `metric`."""
    run = as_run(run, name)
    means = run_epoch_means(run, metric)
    layers = means[[GradCol.layer, GradCol.depth]].drop_duplicates(GradCol.layer).sort_values(
        [GradCol.depth, GradCol.layer], kind="stable")
    height = min(max(3.2, 0.17 * len(layers) + 1.6), 14.0)
    labels = [plain(f"{name} ({depth})") for name, depth in layers.itertuples(index=False)]
    label_size = 7 if len(labels) > 25 else 8
    left = 0.45 + max((text_width(label, label_size) for label in labels), default=0.3)
    title = f"{plain(run.name)}: log10 epoch-mean {metric_info(metric).label}"
    fig = new_figure(title, 6.8 + left, height, left=left, right=0.85, top=0.45, bottom=0.6)
    ax = fig.add_subplot()
    if means.empty:
        no_data(ax, f"no {metric} records")
        return _finish(fig, path)
    epochs = sorted(int(e) for e in means[GradCol.epoch].unique())
    grid = means.pivot_table(index=GradCol.layer, columns=GradCol.epoch, values="mean",
                             aggfunc="first")
    grid = grid.reindex(index=layers[GradCol.layer], columns=epochs)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(grid.to_numpy(dtype="float64"))
    logs[~np.isfinite(logs)] = np.nan
    cmap = colormaps["magma"].with_extremes(bad="0.85")
    finite = logs[np.isfinite(logs)]
    if finite.size == 0:
        no_data(ax)
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
    colourbar.set_label(f"log10 {metric_info(metric).label}")
    if np.isnan(logs).any():
        ax.text(1.0, -0.02, "grey: no finite value", transform=ax.transAxes, ha="right",
                va="top", fontsize=7, color="0.3")
    return _finish(fig, path)
