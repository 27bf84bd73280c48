"""`gradprobe scan`: per-layer gradient flow at initialisation, across architectures and depths.

For every architecture x activation x init x depth x seed, a constant-width conv stack from the
model zoo (`plain_stack` / `residual_stack`, with or without batch norm) is built, put in
training mode (batch norm uses batch statistics, as in the first training step) and shown
`batches` batches of Gaussian images with uniformly random labels. The cross-entropy loss is
back-propagated and a `GradientProbe` records each layer's `output_grad_norm` and
`weight_grad_norm`; values are averaged over batches. No training happens: this is the
gradient the first optimiser step would see, which is where vanishing gradients are decided
(Glorot & Bengio 2010; He et al. 2015).

The summary is the ratio of the first conv layer's output-gradient norm to the last conv
layer's, per seed, then the median over seeds: < 1 means the gradient shrinks toward the input.
The scan reports what it measures; nothing is fitted or adjusted. Squared norms are summed in
float64 by the probe, so a gradient whose float32 entries are tiny but nonzero (a deep sigmoid
stack's first layers) is reported as such, not as an underflow to 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from gradprobe.errors import InputError
from gradprobe.models import build_model
from gradprobe.models.init import INITS
from gradprobe.models.layers import ACTIVATIONS
from gradprobe.probe.probe import GradientProbe
from gradprobe.probe.scan_plots import plot_scan
from gradprobe.util.atomic import atomic_path, write_json_atomic

# architecture name -> (zoo family, norm)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "plain": ("plain_stack", "none"),
    "plain_bn": ("plain_stack", "batch"),
    "residual": ("residual_stack", "none"),
    "residual_bn": ("residual_stack", "batch"),
}
SCAN_METRICS = ("output_grad_norm", "weight_grad_norm")
MIN_DEPTH = 2  # a stem conv and at least one more
CONFIG_COLUMNS = ["architecture", "norm", "activation", "init", "depth"]


@dataclass(frozen=True)
class ScanConfig:
    """What to scan. Sequences may be given as lists; they are stored as tuples."""

    architectures: tuple[str, ...] = ("plain", "plain_bn", "residual", "residual_bn")
    depths: tuple[int, ...] = (8, 16, 32, 64)  # conv layers per network
    activations: tuple[str, ...] = ("relu",)  # nonlinearity after every conv
    inits: tuple[str, ...] = ("kaiming",)  # weight init (see gradprobe.models.init)
    seeds: int = 3  # independent networks (and batches) per configuration: seeds 0..seeds-1
    batches: int = 1  # random batches per network; values are averaged over them
    batch_size: int = 32  # images per batch
    image_size: int = 16  # Gaussian images of image_size x image_size
    width: float = 1.0  # channel multiplier: 1.0 = 32 channels
    num_classes: int = 10  # random labels in [0, num_classes)
    in_channels: int = 3  # image channels

    def __post_init__(self) -> None:
        for name in ("architectures", "depths", "activations", "inits"):
            value = getattr(self, name)
            if isinstance(value, (str, int)) or not value:
                raise InputError(f"scan {name} must be a non-empty list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        _check_choices("architectures", self.architectures, ARCHITECTURES)
        _check_choices("activations", self.activations, ACTIVATIONS)
        _check_choices("inits", self.inits, INITS)
        for depth in self.depths:
            if isinstance(depth, bool) or not isinstance(depth, int) or depth < MIN_DEPTH:
                raise InputError(
                    f"scan depth {depth!r} is not a whole number >= {MIN_DEPTH}; give depths "
                    "as conv-layer counts, e.g. 8 16 32 64"
                )
        for name, minimum in (
            ("seeds", 1),
            ("batches", 1),
            ("batch_size", 2),
            ("image_size", 4),
            ("num_classes", 2),
            ("in_channels", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"scan {name} must be a whole number >= {minimum}, got {value!r}")
        if not isinstance(self.width, (int, float)) or not 0 < self.width <= 16:
            raise InputError(
                f"scan width must be in (0, 16] (1.0 = 32 channels), got {self.width!r}"
            )


def _check_choices(name: str, values: Iterable[str], known: Iterable[str]) -> None:
    known = list(known)
    unknown = [value for value in values if value not in known]
    if unknown:
        raise InputError(f"unknown scan {name} {unknown}; choose from {', '.join(known)}")


@dataclass
class ScanResult:
    """The scan's tables and the files written."""

    table: pd.DataFrame  # tidy: one row per configuration x seed x layer x metric
    summary: pd.DataFrame  # one row per configuration: first/last output_grad_norm ratio
    files: list[Path] = field(default_factory=list)  # scan.parquet, scan.csv, plots
    seconds: float = 0.0  # wall time of the measurement


def run_scan(
    config: ScanConfig, out_dir: Path, progress: Callable[[str], None] | None = None
) -> ScanResult:
    """Measure every configuration of `config`; write the table, summary and plots to out_dir.

    Writes `scan.parquet` (tidy: architecture, norm, activation, init, depth, seed, layer,
    layer_depth, kind, metric, value), `scan.csv` (the summary), `scan_config.json` and one PNG
    per architecture x activation x init. Every file is written atomically.
    """
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
        if progress is not None:
            progress(
                f"[{number}/{len(combos)}] {architecture} {activation} {init} depth {depth} "
                f"seed {seed}"
            )
        frame = measure(config, architecture, activation, init, depth, seed)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    summary = summarise(table)
    seconds = time.perf_counter() - started

    files = [out_dir / "scan.parquet", out_dir / "scan.csv", out_dir / "scan_config.json"]
    with atomic_path(files[0]) as path:
        table.to_parquet(path, index=False)
    with atomic_path(files[1]) as path:
        summary.to_csv(path, index=False)
    write_json_atomic(files[2], {**asdict(config), "seconds": seconds})
    files += plot_scan(table, out_dir)
    return ScanResult(table=table, summary=summary, files=files, seconds=seconds)


def measure(
    config: ScanConfig, architecture: str, activation: str, init: str, depth: int, seed: int
) -> pd.DataFrame:
    """One network at initialisation: per-layer metrics averaged over `config.batches`."""
    family, norm = ARCHITECTURES[architecture]
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_model(
            family,
            depth=depth,
            norm=norm,
            activation=activation,
            init=init,
            width=config.width,
            num_classes=config.num_classes,
            in_channels=config.in_channels,
        )
    model.train()
    generator = torch.Generator().manual_seed(seed)  # the data, independent of the weights
    shape = (config.batch_size, config.in_channels, config.image_size, config.image_size)
    with GradientProbe(model, metrics=SCAN_METRICS) as probe:
        for batch in range(config.batches):
            model.zero_grad(set_to_none=True)
            images = torch.randn(shape, generator=generator)
            labels = torch.randint(0, config.num_classes, (config.batch_size,), generator=generator)
            nn.functional.cross_entropy(model(images), labels).backward()
            probe.record(batch, epoch=0)
    per_batch = probe.to_frame()
    frame = (
        per_batch.groupby(["layer", "depth", "kind", "metric"], sort=False)["value"]
        .mean()
        .reset_index()
        .rename(columns={"depth": "layer_depth"})
    )
    identity: dict[str, Any] = {
        "architecture": architecture,
        "norm": norm,
        "activation": activation,
        "init": init,
        "depth": depth,
        "seed": seed,
    }
    for column, value in reversed(identity.items()):
        frame.insert(0, column, value)
    return frame


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """First-to-last conv output_grad_norm ratio per configuration, median over seeds."""
    convs = table[(table.metric == "output_grad_norm") & (table.kind == "conv")]
    ordered = convs.sort_values("layer_depth")
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
    )
    return summary.reset_index()
