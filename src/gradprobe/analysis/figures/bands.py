"""Per-layer and per-epoch bands over a configuration's seeds, as the figures draw them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradprobe.analysis.load import RunData
from gradprobe.analysis.summary import run_epoch_means
from gradprobe.record import GradCol


def profile_band(runs: Sequence[RunData], metric: str, which: str) -> pd.DataFrame:
    """Per layer at the runs' first (`which="first"`) or last epoch with finite values: the
    geometric mean of the epoch-mean `metric` over the runs and its min and max.

    Columns: layer, depth, kind, centre, low, high, n. Layers are matched by name.
    """
    rows = []
    for run in runs:
        means = run_epoch_means(run, metric)
        finite = means.loc[np.isfinite(means["mean"]) & (means["mean"] > 0)]
        if finite.empty:
            continue
        epoch = finite[GradCol.epoch].min() if which == "first" else finite[GradCol.epoch].max()
        rows.append(finite.loc[finite[GradCol.epoch] == epoch,
                               [GradCol.layer, GradCol.depth, GradCol.kind, "mean"]])
    columns = [GradCol.layer, GradCol.depth, GradCol.kind, "centre", "low", "high", "n"]
    if not rows:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in columns})
    joined = pd.concat(rows, ignore_index=True)
    joined["log"] = np.log10(joined["mean"].to_numpy(dtype="float64"))
    band = joined.groupby([GradCol.layer, GradCol.depth, GradCol.kind], sort=False).agg(
        centre=("log", "mean"), low=("mean", "min"), high=("mean", "max"),
        n=("mean", "count")).reset_index()
    band["centre"] = 10.0 ** band["centre"]
    band = band.sort_values([GradCol.depth, GradCol.layer], kind="stable")
    return band[columns].reset_index(drop=True)


def curve_band(runs: Sequence[RunData], column: str) -> pd.DataFrame:
    """Per epoch: the mean of metrics.csv `column` over the runs with a finite value, its min
    and max. Columns: epoch, centre, low, high, n."""
    frames = [run.metrics[["epoch", column]] for run in runs if not run.metrics.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64")
                             for c in ("epoch", "centre", "low", "high", "n")})
    joined = pd.concat(frames, ignore_index=True)
    joined = joined.loc[np.isfinite(joined[column].to_numpy(dtype="float64"))]
    band = joined.groupby("epoch").agg(centre=(column, "mean"), low=(column, "min"),
                                       high=(column, "max"), n=(column, "count")).reset_index()
    return band.sort_values("epoch").reset_index(drop=True)


