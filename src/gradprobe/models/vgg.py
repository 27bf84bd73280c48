"""VGG networks (Simonyan & Zisserman 2015): stacks of 3x3 convs with a maxpool per stage.

`vgg11`/`vgg13`/`vgg16`/`vgg19` are configurations A, B, D, E (torchvision's `cfgs` table,
written as conv layers per stage). `vgg_deep` spreads any number of conv layers over the same
five stages; its default, 29 conv layers, is more than twice VGG-16's 13 -- the network in
which the assignment looks for vanishing gradients.

`features` has torchvision's layout and module indices (conv, [batch norm,] activation, ...,
maxpool), so torchvision's `vgg16().features` state_dict loads into ours (with batch norm the
layout matches too, but our convs drop the bias that batch norm cancels; see `uses_bias`).
The head differs from torchvision's (whose 7x7x512 -> 4096 -> 4096 classifier alone holds 120M
parameters): global average pooling, then Linear 512w -> 512w -> 256w -> num_classes with the
activation between, as in the assignment.
"""

from __future__ import annotations

import torch
from torch import nn

from gradprobe.models.layers import create_act, create_norm, scale_channels, uses_bias
from gradprobe.models.probe_points import describe
from gradprobe.models.registry import Builder, check_depth, register_model

# Output channels of the five stages (before `width`); a 2x2 maxpool ends each stage.
STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

# Conv layers per stage: torchvision's cfgs "A", "B", "D", "E".
VGG_STAGES: dict[str, tuple[int, ...]] = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}

# More than twice VGG-16's 13 conv layers; 29 convs + 3 linear layers = 32 weight layers.
VGG_DEEP_DEFAULT_DEPTH = 29
VGG_DEEP_MIN_DEPTH = len(STAGE_CHANNELS)  # one conv per stage

# Widths of the head's two hidden Linear layers (before `width`).
HEAD_WIDTHS: tuple[int, int] = (512, 256)


def deep_stages(depth: int) -> tuple[int, ...]:
    """Spread `depth` conv layers over the five stages as evenly as possible.

    The remainder goes to the later stages, as in VGG's own tables (13 -> (2, 2, 3, 3, 3), the
    same as VGG-16; 29 -> (5, 6, 6, 6, 6)).
    """
    stages = len(STAGE_CHANNELS)
    base, extra = divmod(depth, stages)
    return tuple(base + (1 if stage >= stages - extra else 0) for stage in range(stages))


class VGG(nn.Module):
    """A VGG: conv stages with maxpools, global average pool, a three-layer MLP head.

    `stages[i]` is the number of 3x3 conv layers in stage i. With norm "batch" each conv is
    followed by BatchNorm2d (torchvision's `vgg*_bn` layout). Build through `build_model`, which
    also applies the `init` scheme.
    """

    def __init__(
        self,
        stages: tuple[int, ...],
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for convs, stage_channels in zip(stages, STAGE_CHANNELS, strict=True):
            out_channels = scale_channels(stage_channels, width)
            for _ in range(convs):
                layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=uses_bias(norm)))
                if norm != "none":  # no Identity placeholder: keeps torchvision's indices
                    layers.append(create_norm(norm, out_channels))
                layers.append(create_act(activation))
                channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = [scale_channels(features, width) for features in HEAD_WIDTHS]
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden[0]),
            create_act(activation),
            nn.Linear(hidden[0], hidden[1]),
            create_act(activation),
            nn.Linear(hidden[1], num_classes),
        )
        describe(self, family="vgg", residual=False, norm=norm, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)  # (batch, channels)
        return self.classifier(x)


def _fixed_depth_builder(stages: tuple[int, ...]) -> Builder:
    """A builder for one of the fixed VGG configurations."""

    def build(
        *, num_classes: int, in_channels: int, width: float, norm: str, activation: str
    ) -> VGG:
        """A VGG with a fixed configuration from `VGG_STAGES`."""
        return VGG(
            stages,
            num_classes=num_classes,
            in_channels=in_channels,
            width=width,
            norm=norm,
            activation=activation,
        )

    return build


for _name, _stages in VGG_STAGES.items():
    register_model(_name, defaults={"norm": "none"},
                   description=f"VGG, {sum(_stages)} conv layers")(_fixed_depth_builder(_stages))


@register_model("vgg_deep", defaults={"norm": "none", "depth": VGG_DEEP_DEFAULT_DEPTH},
                description="VGG with any number of conv layers over five stages")
def vgg_deep(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    norm: str,
    activation: str,
    depth: int,
) -> VGG:
    """A VGG with `depth` conv layers (default 29) over VGG's five stages; see `deep_stages`."""
    check_depth("vgg_deep", depth, VGG_DEEP_MIN_DEPTH, "the number of conv layers, 1+ per stage")
    return VGG(
        deep_stages(depth),
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        norm=norm,
        activation=activation,
    )
