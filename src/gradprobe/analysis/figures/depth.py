"""The depth experiment, drawn as He et al. (2016) Fig. 1 does: one small panel per depth with
the plain and the residual net's depth profiles (at most four lines a panel: each net at its
first and last epoch), and a last panel of final validation accuracy against depth, plain
beside residual, with chance shaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from gradprobe.analysis.chance import Chance
from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.figures.bands import profile_band
from gradprobe.analysis.figures.base import (
    KIND_MARKERS,
    log_axis,
    log_limits,
    new_figure,
    no_data,
    save_figure,
)
from gradprobe.analysis.load import RunData
from gradprobe.record import GradCol

COLOURS = {False: "#1f77b4", True: "#2ca02c"}  # plain, residual
NAMES = {False: "plain", True: "residual"}
CHANCE_COLOUR = "0.35"  # grey: no run colour (tab10) is grey-black


def plot_depth_experiment(cells: Mapping[tuple[int, bool], Configuration],
                          runs: Mapping[str, Sequence[RunData]], metric: str,
                          chance: Chance | None, path: Path, title: str) -> Path:
    """`cells`: (depth, residual) -> configuration; `runs`: configuration name -> its runs."""
    depths = sorted({depth for depth, _ in cells})
    panels = len(depths) + 1
    fig = new_figure(title, 3.4 * panels + 0.6, 4.4, left=0.75, right=0.2, top=0.75,
                     bottom=1.25, wspace=0.32)
    values: list[np.ndarray] = []
    axes = [fig.add_subplot(1, panels, index + 1) for index in range(panels)]
    for ax, depth in zip(axes, depths, strict=False):
        drawn = False
        for residual in (False, True):
            config = cells.get((depth, residual))
            if config is None:
                continue
            for which, style, face in (("first", "--", "white"), ("last", "-", None)):
                band = profile_band(runs[config.name], metric, which)
                main = band.loc[band[GradCol.kind] == "conv"]
                if main.empty:
                    continue
                ax.plot(main[GradCol.depth], main["centre"], linestyle=style,
                        color=COLOURS[residual], linewidth=1.4, marker="o", markersize=2.5,
                        markerfacecolor=face or COLOURS[residual])
                shortcuts = band.loc[band[GradCol.kind] == "shortcut"]
                if not shortcuts.empty and which == "last":
                    ax.plot(shortcuts[GradCol.depth], shortcuts["centre"], linestyle="none",
                            marker=KIND_MARKERS["shortcut"], color=COLOURS[residual],
                            markersize=5)
                values.append(band[["centre"]].to_numpy(dtype="float64").ravel())
                drawn = True
        ax.set_title(f"depth {depth}", fontsize=10)
        ax.set_xlabel("layer depth (0 = input)")
        if not drawn:
            no_data(ax, "no data")
    limits = log_limits(np.concatenate(values)) if values else None
    for ax in axes[:-1]:
        if ax.has_data():
            log_axis(ax, limits)
            ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(f"epoch-mean {metric} (log)")
    ax_acc = axes[-1]
    if chance is not None:
        ax_acc.axhspan(100 * chance.low, 100 * chance.high, color=CHANCE_COLOUR, alpha=0.18,
                       linewidth=0)
    for residual in (False, True):
        points = [(d, cells[(d, residual)]) for d in depths if (d, residual) in cells]
        points = [(d, c) for d, c in points if c.final_val_acc.n]
        if not points:
            continue
        xs = [d for d, _ in points]
        ax_acc.plot(xs, [100 * c.final_val_acc.centre for _, c in points], "-o",
                    color=COLOURS[residual], linewidth=1.6)
        for d, c in points:
            ax_acc.plot([d] * len(c.final_val_acc.values),
                        [100 * v for v in c.final_val_acc.values], ".", color=COLOURS[residual],
                        alpha=0.5)
    ax_acc.set_xticks(depths)
    ax_acc.set_ylim(0, 100)
    ax_acc.set_xlabel("depth (layers)")
    ax_acc.set_ylabel("final validation accuracy (%)")
    ax_acc.set_title("accuracy against depth", fontsize=10)
    ax_acc.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=COLOURS[r], linewidth=2, label=NAMES[r]) for r in COLOURS]
    handles += [Line2D([], [], color="0.3", linestyle="--", marker="o", markerfacecolor="white",
                       markersize=3, label="first epoch"),
                Line2D([], [], color="0.3", linestyle="-", marker="o", markersize=3,
                       label="last epoch"),
                Line2D([], [], color="0.3", linestyle="none", marker=KIND_MARKERS["shortcut"],
                       label="shortcut conv (not in the ratio)"),
                Line2D([], [], color=CHANCE_COLOUR, linewidth=6, alpha=0.4, label="chance")]
    fig.legend(handles=handles, fontsize=8.5, loc="lower center", ncol=len(handles),
               frameon=False)
    return save_figure(fig, path)
