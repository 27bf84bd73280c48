"""Residual networks and their plain twins (He et al. 2016, "Deep Residual Learning").

`resnet18`/`resnet34` are the ImageNet BasicBlock networks (layers (2, 2, 2, 2) / (3, 4, 6, 3),
64-512 channels); `resnet` is the CIFAR family of depth 6n+2 (three stages of n blocks,
16/32/64 channels: ResNet-20, -32, -56, -110). `plain18`, `plain34` and `plain` are the same
networks with the shortcuts removed -- the paper's "plain" baselines, which train worse as they
get deeper (the degradation problem). Residual and plain twins share every module name and
builder: `residual` is a model option, and the plain names are the same builders registered with
`residual=False` (`build_model("resnet", residual=False)` is `build_model("plain")`).

Shortcuts are identities, with a 1x1 conv projection + norm where the shape changes (the
paper's option B; its CIFAR nets used zero-padding, option A, which has no parameters). Module
names follow torchvision (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc), so
torchvision's `resnet18()` state_dict loads directly into `build_model("resnet18",
num_classes=1000, stem="imagenet")`. With norm "none" the norm layers are `nn.Identity` and
the convs carry biases; nothing else changes (no zero-init or Fixup-style rescaling: the
requested init is applied as asked).
"""

from __future__ import annotations

import torch
from torch import nn

from gradprobe.errors import InputError
from gradprobe.models.layers import create_act, create_norm, scale_channels, uses_bias
from gradprobe.models.probe_points import describe
from gradprobe.models.registry import Builder, check_depth, register_model

STEMS: tuple[str, ...] = ("imagenet", "cifar")
DEFAULT_STEM = "cifar"

# Blocks per stage and stage channels (before `width`) of the ImageNet BasicBlock nets.
IMAGENET_LAYERS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
IMAGENET_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)

# The CIFAR family: depth 6n + 2 = stem conv + 3 stages x n blocks x 2 convs + fc.
CIFAR_CHANNELS: tuple[int, ...] = (16, 32, 64)
CIFAR_DEFAULT_DEPTH = 20


def _is_shortcut(name: str) -> bool:
    return ".downsample." in name


class BasicBlock(nn.Module):
    """Two 3x3 convs; out = act(norm(conv2(act(norm(conv1(x))))) + shortcut(x)).

    With `residual=False` the `+ shortcut(x)` is dropped and no projection is built (a plain
    block). Modules are registered in the order they run: conv1, conv2, then downsample.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        residual: bool,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        bias = uses_bias(norm)
        self.residual = residual
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=bias)
        self.bn1 = create_norm(norm, out_channels)
        self.act1 = create_act(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=bias)
        self.bn2 = create_norm(norm, out_channels)
        self.downsample: nn.Module | None = None
        if residual and (stride != 1 or in_channels != out_channels):
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias),
                create_norm(norm, out_channels),
            )
        self.act2 = create_act(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            # The identity path: dx_{l+1}/dx_l = I + dF/dx_l (He et al. 2016b).
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act2(out)


class ResNet(nn.Module):
    """Stem, stages of BasicBlocks (stride 2 at the start of every stage but the first), global
    average pool, one Linear.

    `stem` "imagenet" is the 7x7/2 conv + 3x3/2 maxpool; "cifar" a 3x3/1 conv and no pool.
    Build through `build_model`, which also applies the `init` scheme.
    """

    def __init__(
        self,
        layers: tuple[int, ...],
        stage_channels: tuple[int, ...],
        *,
        residual: bool,
        stem: str,
        num_classes: int,
        in_channels: int,
        width: float,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        bias = uses_bias(norm)
        channels = [scale_channels(stage, width) for stage in stage_channels]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, channels[0], 7, 2, padding=3, bias=bias)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, channels[0], 3, 1, padding=1, bias=bias)
            self.maxpool = nn.Identity()
        self.bn1 = create_norm(norm, channels[0])
        self.act = create_act(activation)
        block_in = channels[0]
        self.stages: list[str] = []
        for index, (blocks, out_channels) in enumerate(zip(layers, channels, strict=True)):
            stage = nn.Sequential()
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stage.append(
                    BasicBlock(
                        block_in,
                        out_channels,
                        stride,
                        residual=residual,
                        norm=norm,
                        activation=activation,
                    )
                )
                block_in = out_channels
            self.stages.append(f"layer{index + 1}")
            self.add_module(self.stages[-1], stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(block_in, num_classes)
        describe(
            self,
            family="resnet" if residual else "plain",
            residual=residual,
            norm=norm,
            activation=activation,
            is_shortcut=_is_shortcut,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = self.get_submodule(stage)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (batch, num_classes)


def _check_stem(stem: str) -> str:
    if stem not in STEMS:
        raise InputError(
            f"unknown stem {stem!r}; use one of: {', '.join(STEMS)} (imagenet = 7x7/2 conv + "
            "maxpool for large images, cifar = 3x3/1 conv for small ones)"
        )
    return stem


def _imagenet_builder(layers: int) -> Builder:
    """A builder for ResNet-`layers` (or, with residual=False, its plain twin)."""

    def build(
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        norm: str,
        activation: str,
        stem: str,
        residual: bool,
    ) -> ResNet:
        """An ImageNet-layout BasicBlock net with blocks from `IMAGENET_LAYERS`."""
        return ResNet(
            IMAGENET_LAYERS[layers],
            IMAGENET_CHANNELS,
            residual=residual,
            stem=_check_stem(stem),
            num_classes=num_classes,
            in_channels=in_channels,
            width=width,
            norm=norm,
            activation=activation,
        )

    return build


def _build_cifar(
    *,
    num_classes: int,
    in_channels: int,
    width: float,
    norm: str,
    activation: str,
    depth: int,
    stem: str,
    residual: bool,
) -> ResNet:
    """A CIFAR-layout net of depth 6n+2, residual or (residual=False) plain."""
    name = "resnet" if residual else "plain"
    check_depth(name, depth, 8, "6n+2 weight layers: 8, 14, 20, 32, 44, 56, 110, ...")
    if (depth - 2) % 6:
        raise InputError(
            f"{name} depth must be 6n+2 (three stages of n two-conv blocks, plus the stem "
            f"conv and the classifier), e.g. 8, 14, 20, 32, 44, 56, 110; got {depth}"
        )
    return ResNet(
        ((depth - 2) // 6,) * len(CIFAR_CHANNELS),
        CIFAR_CHANNELS,
        residual=residual,
        stem=_check_stem(stem),
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        norm=norm,
        activation=activation,
    )


# Residual and plain twins share a builder; only the default of `residual` differs.
for _layers in IMAGENET_LAYERS:
    _builder = _imagenet_builder(_layers)
    for _residual, _name in ((True, f"resnet{_layers}"), (False, f"plain{_layers}")):
        register_model(
            _name,
            defaults={"norm": "batch", "stem": DEFAULT_STEM, "residual": _residual},
            description=f"ImageNet BasicBlock {'ResNet' if _residual else 'plain net'}-{_layers}",
        )(_builder)
for _residual, _name in ((True, "resnet"), (False, "plain")):
    register_model(
        _name,
        defaults={"norm": "batch", "depth": CIFAR_DEFAULT_DEPTH, "stem": DEFAULT_STEM,
                  "residual": _residual},
        description=f"CIFAR {'ResNet' if _residual else 'plain net'} of depth 6n+2",
    )(_build_cifar)
