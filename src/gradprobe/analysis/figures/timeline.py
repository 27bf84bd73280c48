"""One run's story on a shared step axis: loss, learning rate, global gradient norm and dead
units, with the run's events marked where they happened (see `gradprobe.analysis.events`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradprobe.analysis.events import DEAD_METRIC, DEAD_SHARE, Event
from gradprobe.analysis.figures.base import (
    DIVERGED_COLOUR,
    epoch_axis,
    log_axis,
    log_limits,
    new_figure,
    no_data,
    plain,
    save_figure,
)
from gradprobe.record import GradCol, StepCol

EVENT_COLOURS = {"instability": "#ff7f0e", "dead_units": "#9467bd", "collapse": "#7f7f7f",
                 "divergence": DIVERGED_COLOUR, "vanishing_at_init": "#1f77b4",
                 "plateau": "#8c564b", "still_improving": "#2ca02c"}


def plot_timeline(steps: pd.DataFrame, gradients: pd.DataFrame, path: str | Path | None = None,
                  *, name: str = "run", events: Sequence[Event] = (),
                  num_classes: int | None = None,
                  warmup_end: int | None = None) -> Path | Figure:
    """Four panels sharing the step axis: the batch loss (with ln(classes) dashed), the
    learning rate, the global gradient norm (log scale) and the dead-unit share after the ReLU
    (median over layers, band from the least to the most dead layer). Events are vertical
    lines in every panel. Writes a PNG to `path`, or returns the Figure."""
    fig = new_figure(f"{plain(name)}: what happened, step by step", 9.5, 8.6, left=0.95,
                     right=0.35, top=0.95, bottom=0.55)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"hspace": 0.12})
    if steps.empty:
        for ax in axes:
            no_data(ax, "no per-step records (steps.csv): a run recorded before they existed")
        return _finish(fig, path)
    steps = steps.sort_values(StepCol.step)
    x = steps[StepCol.step].to_numpy()
    _loss(axes[0], x, steps[StepCol.train_loss].to_numpy(dtype="float64"), num_classes)
    axes[1].plot(x, steps[StepCol.lr].to_numpy(dtype="float64"), color="#2ca02c", linewidth=1)
    axes[1].set_ylabel("learning rate")
    norm = steps[StepCol.global_grad_norm].to_numpy(dtype="float64")
    axes[2].plot(x, np.where(np.isfinite(norm) & (norm > 0), norm, np.nan), color="#1f77b4",
                 linewidth=0.9)
    log_axis(axes[2], log_limits(norm))
    axes[2].set_ylabel("global gradient\nL2 norm (log)")
    _dead(axes[3], gradients)
    axes[3].set_xlabel("optimiser step")
    spans = steps.groupby(StepCol.epoch)[StepCol.step].agg(first="min", last="max")
    epoch_axis(axes[0], spans.reset_index().rename(columns={StepCol.epoch: GradCol.epoch}))
    for ax in axes:
        if warmup_end is not None:
            ax.axvline(warmup_end - 0.5, color="0.6", linestyle=":", linewidth=1)
        for event in events:
            if event.step is not None:
                ax.axvline(event.step, color=EVENT_COLOURS.get(event.kind, "0.3"),
                           linewidth=1, alpha=0.7)
    if warmup_end is not None:
        axes[1].text(warmup_end, 0.05, " warm-up ends", fontsize=8, color="0.4",
                     transform=axes[1].get_xaxis_transform())
    labelled: set[str] = set()
    for event in events:
        if event.step is not None and event.kind not in labelled:
            labelled.add(event.kind)
            axes[0].text(event.step, 0.97, f" {event.kind.replace('_', ' ')}", fontsize=8,
                         color=EVENT_COLOURS.get(event.kind, "0.3"), va="top", rotation=90,
                         transform=axes[0].get_xaxis_transform())
    return _finish(fig, path)


def _loss(ax: Axes, x: np.ndarray, loss: np.ndarray, num_classes: int | None) -> None:
    finite = np.isfinite(loss)
    ax.plot(x, np.where(finite, loss, np.nan), color="0.2", linewidth=0.8)
    if num_classes is not None and num_classes >= 2:
        chance = math.log(num_classes)
        ax.axhline(chance, color="0.5", linestyle="--", linewidth=1)
        ax.text(x[0], chance, f" ln({num_classes}): chance", fontsize=8, color="0.4",
                va="bottom")
    if not finite.all():
        first = int(x[int(np.flatnonzero(~finite)[0])])
        ax.axvline(first, color=DIVERGED_COLOUR, linestyle="--", linewidth=1.2)
    ax.set_ylabel("batch loss")


def _dead(ax: Axes, gradients: pd.DataFrame) -> None:
    rows = gradients.loc[gradients[GradCol.metric] == DEAD_METRIC]
    if rows.empty:
        no_data(ax, "no dead_fraction records")
        return
    table = rows.pivot_table(index=GradCol.step, columns=GradCol.layer, values=GradCol.value,
                             aggfunc="first").sort_index()
    x = table.index.to_numpy()
    ax.fill_between(x, table.min(axis=1), table.max(axis=1), color="#9467bd", alpha=0.2,
                    linewidth=0, label="least to most dead layer")
    ax.plot(x, table.median(axis=1), color="#9467bd", linewidth=1, label="median layer")
    ax.axhline(DEAD_SHARE, color="0.5", linestyle="--", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share of zeros\nafter the ReLU")
    ax.legend(loc="lower right", fontsize=8, frameon=False)


def _finish(fig: Figure, path: str | Path | None) -> Path | Figure:
    return fig if path is None else save_figure(fig, Path(path))
