"""`gradprobe scan`: per-layer gradient flow at initialisation, across architectures and depths.

For every architecture x activation x init x depth x seed, `measure` records one network; the
summary (`scan.csv`) is the ratio of the first conv layer's output-gradient norm to the last
conv layer's, per seed, then the median over seeds (< 1: the gradient shrinks toward the
input), the measured per-layer factor ratio^(1/(convs - 1)), and beside them what mean-field
theory predicts for the same network (`gradprobe.theory`; `prediction_note` holds the source,
or the reason there is no prediction, and the predicted columns are then empty). The scan
reports what it measures; nothing is fitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gradprobe.progress import NullProgress, Progress
from gradprobe.scan.config import SCAN_MODEL, ScanConfig
from gradprobe.scan.measure import CONFIG_COLUMNS, measure
from gradprobe.scan.plots import plot_scan
from gradprobe.theory import NoPrediction, Prediction, predict_for_config
from gradprobe.util.atomic import atomic_path, write_json_atomic


@dataclass
class ScanResult:
    """The scan's tables and the files written."""

    table: pd.DataFrame  # tidy: one row per configuration x seed x layer x metric
    summary: pd.DataFrame  # one row per configuration: measured and predicted ratios
    files: list[Path] = field(default_factory=list)  # scan.parquet, scan.csv, plots
    seconds: float = 0.0  # wall time of the measurement


def run_scan(config: ScanConfig, out_dir: Path, progress: Progress | None = None) -> ScanResult:
    """Measure every configuration of `config`; write the table, summary and plots to out_dir.

    Writes `scan.parquet` (tidy: architecture, norm, activation, init, network_depth, seed,
    layer, depth = the layer's index, kind, metric, value), `scan.csv` (the summary),
    `scan_config.json` and one PNG per architecture x activation x init. Every file is written
    atomically.
    """
    progress = progress or NullProgress()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    combos = [
        (architecture, activation, init, depth, seed)
        for architecture in config.architectures
        for activation in config.activations
        for init in config.inits
        for depth in config.depths
        for seed in range(config.seeds)
    ]
    frames = []
    for number, (architecture, activation, init, depth, seed) in enumerate(combos, start=1):
        progress.message(f"[{number}/{len(combos)}] {architecture} {activation} {init} "
                         f"depth {depth} seed {seed}")
        frames.append(measure(config, architecture, activation, init, depth, seed))
    table = pd.concat(frames, ignore_index=True)
    predictions = predict_networks(config)
    summary = summarise(table, predictions)
    seconds = time.perf_counter() - started

    files = [out_dir / "scan.parquet", out_dir / "scan.csv", out_dir / "scan_config.json"]
    with atomic_path(files[0]) as path:
        table.to_parquet(path, index=False)
    with atomic_path(files[1]) as path:
        summary.to_csv(path, index=False)
    write_json_atomic(files[2], {**config.model_dump(), "seconds": seconds})
    files += plot_scan(table, out_dir, predictions)
    return ScanResult(table=table, summary=summary, files=files, seconds=seconds)


Predictions = dict[tuple[str, str, str, int], Prediction | NoPrediction]


def predict_networks(config: ScanConfig) -> Predictions:
    """Theory for every scanned network: (architecture, activation, init, depth) -> prediction."""
    return {
        (architecture, activation, init, depth): predict_for_config(
            SCAN_MODEL, config.model_options(architecture, activation, init, depth),
            in_channels=config.in_channels, image_size=config.image_size)
        for architecture in config.architectures
        for activation in config.activations
        for init in config.inits
        for depth in config.depths
    }


def conv_ratio(prediction: Prediction | NoPrediction, convs: int) -> float:
    """Predicted ||g_first conv|| / ||g_last conv|| (NaN if there is no prediction)."""
    if isinstance(prediction, NoPrediction):
        return float("nan")
    gains = prediction.gains[: convs - 1]
    return float(np.prod(gains)) if None not in gains else float("nan")


def summarise(table: pd.DataFrame, predictions: Predictions | None = None) -> pd.DataFrame:
    """First-to-last conv output_grad_norm ratio per configuration, median over seeds, and the
    measured and predicted per-layer factors."""
    convs = table[(table.metric == "output_grad_norm") & (table.kind == "conv")]
    ordered = convs.sort_values("depth")
    keys = [*CONFIG_COLUMNS, "seed"]
    first = ordered.groupby(keys, sort=False).first()
    last = ordered.groupby(keys, sort=False).last()
    per_seed = pd.DataFrame(
        {
            "first_layer": first["layer"],
            "last_layer": last["layer"],
            "first_output_grad_norm": first["value"],
            "last_output_grad_norm": last["value"],
            "ratio": first["value"] / last["value"],
            "convs": ordered.groupby(keys, sort=False).size(),
        }
    ).reset_index()
    summary = per_seed.groupby(CONFIG_COLUMNS).agg(
        first_layer=("first_layer", "first"),
        last_layer=("last_layer", "first"),
        first_output_grad_norm=("first_output_grad_norm", "median"),
        last_output_grad_norm=("last_output_grad_norm", "median"),
        ratio=("ratio", "median"),
        ratio_min=("ratio", "min"),
        ratio_max=("ratio", "max"),
        seeds=("seed", "count"),
        convs=("convs", "first"),
    ).reset_index()
    summary["measured_factor"] = summary["ratio"] ** (1.0 / (summary["convs"] - 1))
    predicted_ratio, note = [], []
    for row in summary.itertuples(index=False):
        key = (row.architecture, row.activation, row.init, int(row.network_depth))
        prediction = (predictions or {}).get(key, NoPrediction("not predicted"))
        predicted_ratio.append(conv_ratio(prediction, int(row.convs)))
        note.append(prediction.reason if isinstance(prediction, NoPrediction)
                    else prediction.source)
    summary["predicted_ratio"] = predicted_ratio
    summary["predicted_factor"] = summary["predicted_ratio"] ** (1.0 / (summary["convs"] - 1))
    summary["prediction_note"] = note
    return summary.drop(columns="convs")
