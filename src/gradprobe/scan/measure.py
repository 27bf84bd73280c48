"""One scanned network at initialisation: per-layer gradient norms, averaged over batches.

The network is built through the registry (`build_model(SCAN_MODEL, residual=..., norm=...)`),
put in training mode (batch norm uses batch statistics, as in the first training step) and
shown `batches` batches of Gaussian images with uniformly random labels. The cross-entropy loss
is back-propagated and a `GradientProbe` records each layer's `output_grad_norm` and
`weight_grad_norm`: the gradient the first optimiser step would see, which is where vanishing
gradients are decided (Glorot & Bengio 2010; He et al. 2015). Squared norms are summed in
float64 by the probe, so a tiny but nonzero float32 gradient is reported as such.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from gradprobe.models import build_model
from gradprobe.probe.probe import GradientProbe
from gradprobe.scan.config import ARCHITECTURE_OPTIONS, SCAN_MODEL, ScanConfig

SCAN_METRICS = ("output_grad_norm", "weight_grad_norm")
# One row per network; `depth` in scan.parquet is the LAYER index, as in gradients.parquet.
CONFIG_COLUMNS = ["architecture", "norm", "activation", "init", "network_depth"]


def measure(
    config: ScanConfig, architecture: str, activation: str, init: str, depth: int, seed: int
) -> pd.DataFrame:
    """Tidy rows (configuration, seed, layer, depth, kind, metric, value) of one network.

    `depth` here is the network's number of conv layers; in the rows it becomes
    `network_depth`, and `depth` is each layer's index (0 nearest the input).
    """
    options = config.model_options(architecture, activation, init, depth)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_model(SCAN_MODEL, num_classes=config.num_classes,
                            in_channels=config.in_channels, **options)
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
    frame = (
        probe.to_frame()
        .groupby(["layer", "depth", "kind", "metric"], sort=False)["value"]
        .mean()
        .reset_index()
    )
    identity: dict[str, Any] = {
        "architecture": architecture,
        "norm": ARCHITECTURE_OPTIONS[architecture]["norm"],
        "activation": activation,
        "init": init,
        "network_depth": depth,
        "seed": seed,
    }
    for column, value in reversed(identity.items()):
        frame.insert(0, column, value)
    return frame
