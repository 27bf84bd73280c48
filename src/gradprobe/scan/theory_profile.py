"""`gradprobe scan --theory`: a zoo model's gradient profile at initialisation, from theory alone.

No network is trained or even run: `gradprobe.theory.predict_for_config` reads the layer shapes
off the registry's model and propagates the mean-field recursions, so a student can predict
where gradients will vanish before training. Writes `theory.csv` (one row per model x
activation x init x network depth x layer) and one PNG per model x activation x init.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gradprobe.analysis.figures.base import (
    log_axis,
    log_limits,
    new_figure,
    run_colours,
    save_figure,
)
from gradprobe.models import family_default, model_family
from gradprobe.progress import NullProgress, Progress
from gradprobe.scan.config import TheoryConfig
from gradprobe.theory import NoPrediction, predict_for_config
from gradprobe.util.atomic import atomic_path


@dataclass
class TheoryResult:
    table: pd.DataFrame  # one row per network x layer; `predicted` relative to the last layer
    files: list[Path] = field(default_factory=list)


def run_theory(config: TheoryConfig, out_dir: Path,
               progress: Progress | None = None) -> TheoryResult:
    """Predict every model x activation x init (x depth, for families with one); write files."""
    progress = progress or NullProgress()
    rows = []
    for model in config.models:
        family = model_family(model)  # raises InputError naming the known models
        depths: tuple[int | None, ...] = (
            config.depths if config.depths and "depth" in family.options else (None,))
        for activation in config.activations:
            for init in config.inits:
                for depth in depths:
                    options = {"activation": activation, "init": init, "depth": depth,
                               "width": config.width}
                    prediction = predict_for_config(model, options, image_size=config.image_size)
                    network_depth = depth or family.defaults.get("depth")
                    progress.message(f"{model} {activation} {init} depth {network_depth}: "
                                     f"{_headline(prediction)}")
                    identity = {"model": model, "activation": activation, "init": init,
                                "norm": family_default(model, "norm"),
                                "network_depth": network_depth}
                    rows += _rows(identity, prediction)
    table = pd.DataFrame(rows)
    out_dir = Path(out_dir)
    path = out_dir / "theory.csv"
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)
    return TheoryResult(table, [path, *plot_theory(table, out_dir)])


def _headline(prediction: object) -> str:
    if isinstance(prediction, NoPrediction):
        return f"no prediction ({prediction.reason})"
    return f"factor {prediction.factor:.3f} per layer ({prediction.source})"


def _rows(identity: dict[str, object], prediction: object) -> list[dict[str, object]]:
    if isinstance(prediction, NoPrediction):
        return [{**identity, "layer": "", "depth": np.nan, "gain": np.nan, "predicted": np.nan,
                 "factor": np.nan, "note": prediction.reason}]
    profile = _segment_profile(prediction.gains)
    gains = [*prediction.gains, None]  # the last layer has no outgoing transition
    return [{**identity, "layer": name, "depth": index, "gain": gain, "predicted": value,
             "factor": prediction.factor, "note": prediction.source}
            for index, (name, gain, value) in enumerate(
                zip(prediction.layers, gains, profile, strict=True))]


def _segment_profile(gains: tuple[float | None, ...]) -> list[float]:
    """Relative norms, each run of predicted transitions anchored at 1 at its last layer (a
    transition with no prediction, e.g. across a pooling layer, starts a new run)."""
    values = [1.0]
    for gain in reversed(gains):
        values.append(values[-1] * gain if gain is not None else 1.0)
    return list(reversed(values))


def plot_theory(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per model x activation x init: the predicted profile, one line per depth."""
    paths = []
    for (model, activation, init), panel in table.groupby(["model", "activation", "init"],
                                                           sort=False):
        title = f"{model}, {activation}, {init} init: predicted gradient at initialisation"
        figure = new_figure(title, 7.0, 4.6, left=0.85, right=0.2, top=0.55, bottom=0.55)
        axes = figure.add_subplot()
        networks = list(panel.groupby("network_depth", dropna=False))
        drawn = []
        for colour, (depth, network) in zip(run_colours(len(networks)), networks, strict=True):
            if network["predicted"].isna().all():
                axes.annotate(f"depth {depth}: no prediction: {network['note'].iloc[0]}"[:120],
                              xy=(0.01, 0.01 + 0.05 * len(drawn)), xycoords="axes fraction",
                              fontsize=7.5, color="0.35")
                continue
            segments = np.cumsum(np.r_[0, network["gain"].isna().to_numpy()[:-1]])
            for _, segment in network.groupby(segments):
                axes.plot(segment["depth"], segment["predicted"], marker=".", color=colour,
                          linewidth=1.6)
            axes.plot([], [], color=colour, label=str(depth))
            drawn.append(network["predicted"].to_numpy(dtype="float64"))
        if drawn:
            log_axis(axes, log_limits(np.concatenate(drawn)))
            axes.legend(title="network depth", fontsize=8.5)
        if panel["gain"].isna().sum() > panel.groupby("network_depth", dropna=False).ngroups:
            axes.annotate("no prediction across pooling layers: each segment is anchored at 1 "
                          "at its last layer", xy=(0.01, 0.95), xycoords="axes fraction",
                          fontsize=7.5, color="0.35")
        axes.set_xlabel("weight layer index (0 = nearest the input; shortcuts left out)")
        axes.set_ylabel("predicted ||dL / d(layer output)||, relative (log scale)")
        axes.grid(True, which="major", alpha=0.3)
        paths.append(save_figure(figure, Path(out_dir) / f"theory_{model}_{activation}_"
                                 f"{init}.png"))
    return paths
