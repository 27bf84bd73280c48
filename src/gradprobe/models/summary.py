"""Human-readable descriptions of a model: parameter count and the `gradprobe models` summary."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torchinfo
from torch import nn

from gradprobe.errors import InputError
from gradprobe.models.probe_points import collect_probe_points


def count_parameters(model: nn.Module) -> int:
    """Total number of parameter elements (trainable or not), as torchvision reports them."""
    return sum(parameter.numel() for parameter in model.parameters())


def model_summary(model: nn.Module, input_size: Sequence[int] = (1, 3, 32, 32)) -> str:
    """A torchinfo table (layer, output shape, parameters) plus the model's probe points.

    torchinfo runs one forward pass in eval mode (so batch norm accepts a batch of one), then
    restores the model's mode and removes its hooks. An input the model cannot take raises
    `InputError`. Models without `probe_points` (any `nn.Module`) get their Conv2d/Linear
    layers listed instead. The input is made on the model's own device.
    """
    try:
        stats = torchinfo.summary(
            model,
            input_size=tuple(input_size),
            col_names=("output_size", "num_params"),
            depth=4,
            mode="eval",
            verbose=0,
        )
    except RuntimeError as error:  # torchinfo wraps the forward pass's own error
        cause = error.__cause__ or error
        raise InputError(
            f"the model cannot run on an input of size {tuple(input_size)}: {cause}. Pass an "
            "input_size of (batch, in_channels, height, width) that matches the model's "
            "in_channels and is large enough for its downsampling (32x32 works for every zoo model)"
        ) from error
    # torchinfo 1.8 formats its unit enum with str(), which Python 3.11+ renders as
    # "Units.MEGABYTES" instead of "M": print the unit's value.
    table = re.sub(r"\bUnits\.(\w+)", lambda match: torchinfo.Units[match[1]].value, str(stats))
    points = getattr(model, "probe_points", None) or collect_probe_points(model)
    name_width = max([len("layer"), *(len(point.name) for point in points)])
    lines = [
        table,
        "",
        f"Probe points ({len(points)}, forward order):",
        f"{'depth':>5}  {'layer':<{name_width}}  kind",
    ]
    lines += [f"{point.depth:>5}  {point.name:<{name_width}}  {point.kind}" for point in points]
    return "\n".join(lines)
