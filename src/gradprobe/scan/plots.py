"""Plots of a scan: gradient norm against layer index, one colour per network depth.

Plots read only the scan's tidy table and the theory's predictions (cockpit: quantities
produce data, instruments draw it), in the report's style: the report's figure helpers (fixed
margins, log axes clipped to the finite values, tab10 colours), no pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from gradprobe.analysis.figures.base import (
    log_axis,
    log_limits,
    new_figure,
    run_colours,
    save_figure,
)
from gradprobe.theory import NoPrediction, Prediction

PANEL_KEYS = ["architecture", "activation", "init"]
PredictionMap = Mapping[tuple[str, str, str, int], Prediction | NoPrediction]


def predicted_profile(prediction: Prediction | NoPrediction, anchor: float,
                      layers: int) -> np.ndarray | None:
    """The predicted norm of the first `layers` layers, equal to `anchor` at the last of them."""
    if isinstance(prediction, NoPrediction):
        return None
    gains = prediction.gains[: layers - 1]
    if None in gains:
        return None
    # walk from the last layer toward the input, multiplying by each layer's gain
    values = anchor * np.cumprod([1.0, *reversed([float(gain) for gain in gains])])
    return values[::-1]


def plot_scan(table: pd.DataFrame, out_dir: Path,
              predictions: PredictionMap | None = None) -> list[Path]:
    """One PNG per architecture x activation x init: output_grad_norm of each conv layer.

    x is the conv layer's index (0 = the stem, nearest the input); y is the median over seeds of
    the batch-averaged norm, on a log axis. A dashed line of the same colour is the mean-field
    prediction (`gradprobe.theory`), anchored at the measured last conv layer, so the slopes
    compare directly. Returns the files written.
    """
    convs = table[(table.metric == "output_grad_norm") & (table.kind == "conv")]
    paths = []
    for (architecture, activation, init), panel in convs.groupby(PANEL_KEYS, sort=False):
        title = f"{architecture}, {activation}, {init} init: gradient at initialisation"
        figure = new_figure(title, 7.0, 4.6, left=0.85, right=0.2, top=0.55, bottom=0.55)
        axes = figure.add_subplot()
        networks = list(panel.groupby("network_depth"))
        colours = run_colours(len(networks))
        drawn, not_drawn, predicted_any = [], 0, False
        notes = set()
        for colour, (depth, network) in zip(colours, networks, strict=True):
            median = network.groupby("depth")["value"].median().sort_index().to_numpy()
            not_drawn += int((median <= 0).sum())  # log axis: an underflow to 0 has no place
            axes.plot(range(len(median)), median, marker=".", color=colour, linewidth=1.6,
                      label=str(depth))
            drawn.append(median)
            prediction = (predictions or {}).get((architecture, activation, init, int(depth)))
            if isinstance(prediction, NoPrediction):
                notes.add(prediction.reason)
            if prediction is None or median[-1] <= 0:
                continue
            profile = predicted_profile(prediction, float(median[-1]), len(median))
            if profile is not None:
                axes.plot(range(len(profile)), profile, linestyle="--", color=colour,
                          linewidth=1.1, alpha=0.9)
                drawn.append(profile)
                predicted_any = True
        log_axis(axes, log_limits(np.concatenate(drawn)))
        axes.set_xlabel("conv layer index (0 = nearest the input)")
        axes.set_ylabel("||dL / d(layer output)||, median over seeds (log scale)")
        axes.grid(True, which="major", alpha=0.3)
        handles, _ = axes.get_legend_handles_labels()
        if predicted_any:
            handles.append(Line2D([], [], color="0.3", linestyle="--",
                                  label="theory (anchored at the last layer)"))
        axes.legend(handles=handles, title="network depth", fontsize=8.5)
        footnotes = []
        if not_drawn:
            footnotes.append(f"{not_drawn} values of exactly 0 (float32 underflow) not drawn")
        if notes:
            footnotes.append("no theory line: " + "; ".join(sorted(notes))[:110] + "...")
        for index, text in enumerate(footnotes):
            axes.annotate(text, xy=(0.01, 0.01 + 0.05 * index), xycoords="axes fraction",
                          fontsize=7.5, color="0.35")
        paths.append(save_figure(figure, Path(out_dir) / f"scan_{architecture}_{activation}_"
                                 f"{init}.png"))
    return paths
