"""Plots of a scan: gradient norm against layer index, one line per network depth.

Plots read only the scan's tidy table (cockpit: quantities produce data, instruments draw it).
Matplotlib's object API (`Figure`) is used without pyplot, so no global backend is touched.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gradprobe.util.atomic import atomic_path

PANEL_KEYS = ["architecture", "activation", "init"]


def plot_scan(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per architecture x activation x init: output_grad_norm of each conv layer.

    x is the conv layer's index in forward order (0 = the stem, nearest the input); y is the
    median over seeds of the batch-averaged norm, on a log axis. Returns the files written.
    """
    convs = table[(table.metric == "output_grad_norm") & (table.kind == "conv")]
    paths = []
    for (architecture, activation, init), panel in convs.groupby(PANEL_KEYS, sort=False):
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        axes = figure.add_subplot()
        not_drawn = 0
        for depth, network in panel.groupby("depth"):
            median = network.groupby("layer_depth")["value"].median().sort_index()
            not_drawn += int((median <= 0).sum())  # log axis: an underflow to 0 has no place
            axes.plot(range(len(median)), median.to_numpy(), marker=".", label=f"{depth}")
        axes.set_yscale("log")
        axes.set_xlabel("conv layer index (0 = nearest the input)")
        axes.set_ylabel("||dL / d(layer output)||, median over seeds")
        axes.set_title(f"{architecture}, {activation}, {init} init: gradient at initialisation")
        axes.legend(title="network depth", fontsize="small")
        axes.grid(True, which="major", alpha=0.3)
        if not_drawn:
            axes.annotate(
                f"{not_drawn} values of exactly 0 (float32 underflow) not drawn",
                xy=(0.01, 0.01),
                xycoords="axes fraction",
                fontsize="small",
            )
        path = Path(out_dir) / f"scan_{architecture}_{activation}_{init}.png"
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=120)
        paths.append(path)
    return paths
