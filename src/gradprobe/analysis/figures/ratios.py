"""The study-wide figure: every run's first-to-last ratio against the verdict bands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from gradprobe.analysis.figures.base import (
    DIVERGED_COLOUR,
    log_axis,
    log_limits,
    new_figure,
    plain,
    save_figure,
    text_width,
)
from gradprobe.analysis.summary import VERDICT_THRESHOLDS, RunAnalysis
from gradprobe.metrics import metric_info
from gradprobe.record import RunState


def plot_ratio_overview(summaries: Mapping[str, RunAnalysis], path: Path, metric: str) -> Path:
    """Every run's first-to-last ratio at first (hollow) and last (filled) epoch, log x axis."""
    names = list(summaries)
    left = 0.3 + max((text_width(plain(name), 8) for name in names), default=0.5)
    fig = new_figure(f"Gradient flow of every run ({metric_info(metric).label})",
                     max(9.0, 7.0 + left), min(max(2.8, 0.3 * len(names) + 1.8), 20), left=left,
                     right=1.35, top=0.65, bottom=0.9)
    ax = fig.add_subplot()
    values = []
    for row, name in enumerate(names):
        summary = summaries[name]
        first = summary.first.ratio
        last = summary.last.ratio
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
        if summary.state is RunState.DIVERGED:
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
    ax.set_yticks(range(len(names)), labels=[plain(name) for name in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("first-to-last ratio: input-side conv norm / output-side conv norm (log scale)")
    # below the axes, where it cannot hide a run's points
    fig.legend(handles=[
        Line2D([], [], marker="o", markerfacecolor="white", color="#1f77b4", linestyle="none",
               label="first epoch"),
        Line2D([], [], marker="o", color="#1f77b4", linestyle="none", label="last epoch")],
        fontsize=8, loc="lower center", ncol=2, frameon=False)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    return save_figure(fig, path)
