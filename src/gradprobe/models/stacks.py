"""Constant-width conv stacks of any depth, plain or residual: the subjects of `gradprobe scan`.

A 3x3 stem conv (in_channels -> C, C = 32 * width), then `depth - 1` 3x3 convs at C channels and
the input's spatial size (no downsampling), each followed by the norm (if any) and the
activation; then global average pooling and Linear(C -> num_classes). `depth` counts the conv
layers (default 16, minimum 2). Nothing but depth and the skips changes between networks, so
a depth sweep isolates what depth does to gradient flow.

`residual_stack` groups the body convs in pairs, each pair a BasicBlock with an identity skip,
out = act(x + norm(conv2(act(norm(conv1(x)))))); when `depth - 1` is odd, the one leftover conv
is a plain conv-norm-act layer placed first, right after the stem. `plain_stack` has the same
modules and names with the skips removed, which makes it an ordinary conv-norm-act chain.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gradprobe.models.layers import create_act, create_norm, scale_channels, uses_bias
from gradprobe.models.probe_points import describe
from gradprobe.models.registry import check_depth, register_model
from gradprobe.models.resnet import BasicBlock

CHANNELS = 32  # before `width`
DEFAULT_DEPTH = 16  # conv layers
MIN_DEPTH = 2


def _conv_norm_act(in_channels: int, out_channels: int, norm: str, activation: str) -> nn.Module:
    layers = OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=uses_bias(norm)),
        norm=create_norm(norm, out_channels),
        act=create_act(activation),
    )
    return nn.Sequential(layers)


class ConvStack(nn.Module):
    """`depth` 3x3 convs at constant width and resolution, optionally with identity skips.

    Modules: `stem` (conv-norm-act), `body` (an optional leftover conv-norm-act, then
    BasicBlocks), `pool`, `fc`. Build through `build_model`, which also applies `init`.
    """

    def __init__(
        self,
        depth: int,
        *,
        residual: bool,
        num_classes: int,
        in_channels: int,
        width: float,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        channels = scale_channels(CHANNELS, width)
        self.stem = _conv_norm_act(in_channels, channels, norm, activation)
        self.body = nn.Sequential()
        blocks, leftover = divmod(depth - 1, 2)
        if leftover:
            self.body.append(_conv_norm_act(channels, channels, norm, activation))
        for _ in range(blocks):
            self.body.append(
                BasicBlock(
                    channels, channels, 1, residual=residual, norm=norm, activation=activation
                )
            )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        describe(
            self,
            family="residual_stack" if residual else "plain_stack",
            residual=residual,
            norm=norm,
            activation=activation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))  # (batch, num_classes)


def _build_stack(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    norm: str,
    activation: str,
    depth: int,
    residual: bool,
) -> ConvStack:
    """A conv stack of `depth` conv layers, with identity skips if `residual`."""
    name = "residual_stack" if residual else "plain_stack"
    check_depth(name, depth, MIN_DEPTH, "the number of conv layers, the stem included")
    return ConvStack(
        depth,
        residual=residual,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        norm=norm,
        activation=activation,
    )


for _residual, _name in ((False, "plain_stack"), (True, "residual_stack")):
    register_model(
        _name,
        defaults={"norm": "none", "depth": DEFAULT_DEPTH, "residual": _residual},
        description=f"constant-width conv stack{' with identity skips' if _residual else ''}",
    )(_build_stack)
