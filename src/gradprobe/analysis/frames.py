"""The report's summaries and figures for probes held in memory (no run directory).

Thin adapters only: a probe's tidy frame (`GradientProbe.to_frame()`) becomes an in-memory
`RunData` (`RunData.from_frame`) and goes through the report's own code, so a notebook and the
report compute the same numbers and draw the same figures. The single-run figures
(`plot_layer_norms`, `plot_layer_subset`, `plot_heatmap`) take a frame directly; this module adds
the summary and the depth profile, which compares several probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gradprobe.analysis.figures.compare import plot_depth_profiles
from gradprobe.analysis.figures.layers import DEFAULT_METRIC, RunOrFrame
from gradprobe.analysis.load import RunData, as_run
from gradprobe.analysis.summary import summarize_frame
from gradprobe.errors import InputError

__all__ = ["plot_depth_profile", "summarize_frame"]


def plot_depth_profile(
    runs: RunOrFrame | Mapping[str, RunOrFrame], metric: str = DEFAULT_METRIC,
    path: str | Path | None = None, *, title: str | None = None, name: str = "probe",
) -> Path | Figure:
    """Each run's epoch-mean `metric` against depth at its first (dashed) and last (solid)
    epoch: one frame (titled `name`) or a mapping of names to frames or runs, compared on one
    axis. The report's comparison figure; returns the `Figure` when no `path` is given."""
    if isinstance(runs, (RunData, pd.DataFrame)):
        runs = {name: runs}
    if not runs:
        raise InputError("No runs to draw: pass a probe frame or a {name: frame} mapping.")
    loaded = {str(key): as_run(value, str(key)) for key, value in runs.items()}
    title = title or f"{', '.join(loaded)}: gradient norm against depth"
    return plot_depth_profiles(loaded, [metric], None if path is None else Path(path), title)
