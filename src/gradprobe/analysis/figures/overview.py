"""The headline figure: one row per configuration, accuracy against chance beside gradient flow.

Left: final validation accuracy, each seed a small dot and the mean a bar, over the shaded band a
guesser reaches. Right: the first-to-last ratio (geometric mean over seeds) at step 0, the first
and the last epoch, over the shaded vanishing and exploding bands. A configuration without a
finite value says "no data" in its row instead of breaking the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from gradprobe.analysis.chance import Chance
from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.figures.base import (
    DIVERGED_COLOUR,
    log_axis,
    log_limits,
    new_figure,
    plain,
    save_figure,
    text_width,
)
from gradprobe.analysis.summary import VERDICT_THRESHOLDS

MARKERS = {"step0": ("^", "step 0 (initialisation)", "0.35"),
           "first": ("o", "first epoch", "white"),
           "last": ("o", "last epoch", "#1f77b4")}
CHANCE_COLOUR = "0.35"  # grey: no run colour (tab10) is grey-black


def plot_overview(configs: Sequence[Configuration], chance: Chance | None, metric: str,
                  path: Path, title: str) -> Path:
    labels = [plain(c.name) for c in configs]
    left = 0.3 + max((text_width(label, 8.5) for label in labels), default=0.5)
    height = min(max(2.4, 0.22 * len(configs) + 1.6), 12)
    fig = new_figure(title, 11.5, height, left=left, right=0.25, top=0.55, bottom=1.05,
                     wspace=0.08)
    grid = fig.add_gridspec(1, 2, width_ratios=(1, 1.6))
    ax_acc, ax_flow = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    rows = np.arange(len(configs))
    if chance is not None:
        ax_acc.axvspan(100 * chance.low, 100 * chance.high, color=CHANCE_COLOUR, alpha=0.15,
                       linewidth=0)
        ax_acc.axvline(100 * chance.accuracy, color=CHANCE_COLOUR, linewidth=1, linestyle=":")
    ratios: list[float] = []
    for row, config in zip(rows, configs, strict=True):
        values = [100 * v for v in config.final_val_acc.values]
        if values:
            ax_acc.plot(values, [row] * len(values), "o", color="0.3", markersize=3)
            ax_acc.plot([np.mean(values)], [row], "|", color="black", markersize=13, mew=2)
        else:
            ax_acc.text(50, row, "no data", ha="center", va="center", fontsize=8, color="0.4")
        drawn = []
        for point, (marker, _, face) in MARKERS.items():
            value = config.ratio(metric, point)
            if value is None or not value.n or not (value.centre > 0):
                continue
            ax_flow.plot([value.centre], [row], marker=marker, markerfacecolor=face,
                         color="#1f77b4", markersize=7, linestyle="none")
            drawn.append(value.centre)
        if len(drawn) > 1:
            ax_flow.plot([min(drawn), max(drawn)], [row, row], color="0.7", linewidth=1, zorder=0)
        if not drawn:
            ax_flow.text(0.5, row, "no data: no finite gradient values", ha="center",
                         va="center", fontsize=8, color="0.4",
                         transform=ax_flow.get_yaxis_transform())
        ratios += drawn
    low, high = VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above
    limits = log_limits(np.array([*ratios, low / 3, high * 3]))
    log_axis(ax_flow, limits, axis="x")
    if limits is not None:
        ax_flow.axvspan(limits[0], low, color="#1f77b4", alpha=0.08)
        ax_flow.axvspan(high, limits[1], color=DIVERGED_COLOUR, alpha=0.08)
    for threshold in (low, high):
        ax_flow.axvline(threshold, color="0.5", linestyle=":", linewidth=1)
    ax_flow.axvline(1.0, color="0.5", linewidth=1)
    ax_flow.text(low, 1.0, "vanishing \u2190 ", ha="right", va="bottom", fontsize=8,
                 transform=ax_flow.get_xaxis_transform())
    ax_flow.text(high, 1.0, " \u2192 exploding", ha="left", va="bottom", fontsize=8,
                 transform=ax_flow.get_xaxis_transform())
    ax_acc.set_xlim(0, 100)
    ax_acc.set_yticks(rows, labels=labels, fontsize=8.5)
    ax_flow.set_yticks(rows, labels=[])
    for ax in (ax_acc, ax_flow):
        ax.set_ylim(len(configs) - 0.5, -0.5)
        ax.grid(True, axis="x", alpha=0.3)
    ax_acc.set_xlabel("final validation accuracy (%)")
    ax_flow.set_xlabel("first-to-last gradient ratio (input side / output side, log scale)")
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="none", markersize=3,
                      label="one seed"),
               Line2D([], [], marker="|", color="black", linestyle="none", markersize=10,
                      mew=2, label="mean over seeds")]
    if chance is not None:
        handles.append(Line2D([], [], color=CHANCE_COLOUR, linewidth=6, alpha=0.3,
                              label=f"chance ({100 * chance.low:.0f}-{100 * chance.high:.0f}%)"))
    handles += [Line2D([], [], marker=marker, markerfacecolor=face, color="#1f77b4",
                       linestyle="none", label=label)
                for marker, label, face in MARKERS.values()]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles),
               frameon=False)
    return save_figure(fig, path)
