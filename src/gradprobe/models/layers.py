"""String-to-layer factories for the options every builder shares: activation, norm, width.

Modelled on timm's `create_act.py` / `get_act_layer`: a dict lookup by name, where a callable
passes straight through, so a study can sweep these options by name and a user can still hand
in their own layer. The valid names are the `Literal`s of `gradprobe.config`, so the config
schema and the zoo cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from torch import nn

from gradprobe.config import Activation, Norm
from gradprobe.errors import InputError

# nn.LeakyReLU's default slope; the Kaiming/Xavier gain for leaky_relu uses the same number.
LEAKY_RELU_SLOPE = 0.01

ActLayer = Callable[[], nn.Module]
NormLayer = Callable[[int], nn.Module]

# Not inplace: an inplace activation overwrites the output of the layer before it, which breaks
# tensor hooks and autograd checks that read that output (gradprobe probes layer outputs).
_ACTIVATIONS: dict[str, ActLayer] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}

# Indexed by the feature dimensionality: 2 for conv feature maps, 1 for fully connected layers.
_NORMS: dict[str, dict[int, NormLayer]] = {
    "none": {1: lambda num_features: nn.Identity(), 2: lambda num_features: nn.Identity()},
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d},
}

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
NORMS: tuple[str, ...] = get_args(Norm)


def get_act_layer(activation: str | ActLayer) -> ActLayer:
    """Return a zero-argument constructor for an activation module, looked up by name.

    A callable (e.g. `nn.SiLU`) passes straight through, as in timm's `get_act_layer`.
    """
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; use one of: {', '.join(ACTIVATIONS)}")
    return _ACTIVATIONS[activation]


def create_act(activation: str | ActLayer) -> nn.Module:
    """Build a fresh (never inplace) activation module."""
    return get_act_layer(activation)()


def get_norm_layer(norm: str | NormLayer, dims: int = 2) -> NormLayer:
    """Return a constructor `num_features -> module` for a norm, looked up by name.

    "none" gives `nn.Identity`, so a block's layout (and module names) are the same with and
    without normalisation. `dims` is 2 for conv feature maps and 1 for fully connected layers. A
    callable passes straight through.
    """
    if callable(norm):
        return norm
    if norm not in _NORMS:
        raise InputError(f"unknown norm {norm!r}; use one of: {', '.join(NORMS)}")
    return _NORMS[norm][dims]


def create_norm(norm: str | NormLayer, num_features: int, dims: int = 2) -> nn.Module:
    """Build a norm module over `num_features` channels (identity for "none")."""
    return get_norm_layer(norm, dims)(num_features)


def uses_bias(norm: str) -> bool:
    """Whether a conv/linear layer followed by `norm` carries a bias.

    A bias right before batch norm is cancelled by its mean subtraction (Ioffe & Szegedy 2015),
    so torchvision's ResNets drop it; without a norm the bias is the layer's only shift, as in
    torchvision's VGG. One rule for the whole zoo: bias if and only if no norm follows.
    """
    return norm == "none"


def scale_channels(channels: int, width: float) -> int:
    """Channel count `channels * width`, rounded, at least 1 (the `width` option)."""
    return max(1, round(channels * width))
