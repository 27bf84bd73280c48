"""A deep fully connected network: the simplest place to watch gradients vanish.

The input image is first average-pooled to a fixed 8x8 grid (`nn.AdaptiveAvgPool2d(8)`) and
flattened, so the first Linear has a fixed `in_channels * 64` inputs whatever the image size:
every builder takes only the shared options (no image size), and no lazy module is needed
(lazy modules have no weights to initialise or probe until the first forward).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gradprobe.models.layers import create_act, create_norm, scale_channels, uses_bias
from gradprobe.models.probe_points import describe
from gradprobe.models.registry import check_depth, register_model

GRID = 8  # inputs are pooled to GRID x GRID before the first Linear
HIDDEN = 256  # hidden width before `width`
DEFAULT_DEPTH = 8  # hidden layers


class MLP(nn.Module):
    """Pool to 8x8, flatten, `depth` hidden blocks (Linear, [BatchNorm1d,] activation), Linear.

    Hidden blocks are named `hidden.<i>.linear` / `.norm` / `.act` (the norm is an Identity
    without batch norm), so layer names are the same for every norm. Build through
    `build_model`, which also applies the `init` scheme.
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        hidden = scale_channels(HIDDEN, width)
        self.pool = nn.AdaptiveAvgPool2d(GRID)
        self.hidden = nn.Sequential()
        features = in_channels * GRID * GRID
        for _ in range(depth):
            block = OrderedDict(
                linear=nn.Linear(features, hidden, bias=uses_bias(norm)),
                norm=create_norm(norm, hidden, dims=1),
                act=create_act(activation),
            )
            self.hidden.append(nn.Sequential(block))
            features = hidden
        self.fc = nn.Linear(features, num_classes)
        describe(self, family="mlp", residual=False, norm=norm, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)  # (batch, in_channels * 64)
        return self.fc(self.hidden(x))


@register_model("mlp", defaults={"norm": "none", "depth": DEFAULT_DEPTH},
                description="fully connected net on 8x8-pooled images")
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    norm: str,
    activation: str,
    depth: int,
) -> MLP:
    """An MLP with `depth` hidden layers (default 8) of 256 * width units."""
    check_depth("mlp", depth, 1, "the number of hidden layers")
    return MLP(
        depth,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        norm=norm,
        activation=activation,
    )
