"""Probe points: the weight layers of a zoo model, named and numbered in forward order.

Every model built by `gradprobe.models` carries `model.probe_points` (the layers the gradient
probe watches, in forward-execution order) and `model.gradprobe_info` (a small description
written into each run's config). Both are computed here, once, when the model is constructed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

ProbeKind = Literal["conv", "linear", "shortcut"]


@dataclass(frozen=True)
class ProbePoint:
    """One weight layer the probe watches.

    `name` is the module's name in `model.named_modules()`; `kind` is "conv", "linear", or
    "shortcut" (a residual block's 1x1 projection conv, so plots can leave it out); `depth` is the
    layer's index in forward-execution order over all probe points, 0 nearest the input.
    """

    name: str
    kind: ProbeKind
    depth: int


def collect_probe_points(
    model: nn.Module, is_shortcut: Callable[[str], bool] | None = None
) -> list[ProbePoint]:
    """Every Conv2d and Linear of `model`, in module registration order.

    The zoo's modules are registered in the order they run (tests check this against forward
    hooks), so registration order is forward order. `is_shortcut(name)` marks projection convs.
    """
    points: list[ProbePoint] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kind: ProbeKind = "shortcut" if is_shortcut and is_shortcut(name) else "conv"
        elif isinstance(module, nn.Linear):
            kind = "linear"
        else:
            continue
        points.append(ProbePoint(name=name, kind=kind, depth=len(points)))
    return points


def describe(
    model: nn.Module,
    *,
    family: str,
    residual: bool,
    norm: str,
    activation: str,
    is_shortcut: Callable[[str], bool] | None = None,
) -> None:
    """Attach `probe_points` and `gradprobe_info` to a freshly constructed zoo model.

    `gradprobe_info["depth"]` counts the weight layers on the main path (conv and linear probe
    points, not shortcuts): 16 for VGG-16, 18 for ResNet-18, as the papers count them.
    `build_model` adds "name", "width" and "init".
    """
    points = collect_probe_points(model, is_shortcut)
    conv_layers = sum(point.kind == "conv" for point in points)
    linear_layers = sum(point.kind == "linear" for point in points)
    model.probe_points = points
    info: dict[str, Any] = {
        "family": family,
        "depth": conv_layers + linear_layers,
        "residual": residual,
        "norm": norm,
        "activation": activation,
        "conv_layers": conv_layers,
        "linear_layers": linear_layers,
        "shortcut_layers": sum(point.kind == "shortcut" for point in points),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    model.gradprobe_info = info
