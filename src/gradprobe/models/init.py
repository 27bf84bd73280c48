"""Weight initialisation schemes, looked up by name (the `init` option of `build_model`).

Every scheme except "default" re-initialises every Conv2d and Linear weight (the classifier
included) and zeroes their biases, and resets batch norm to weight 1, bias 0. "default" leaves
PyTorch's own initialisation untouched: Kaiming-uniform with a=sqrt(5), i.e.
Var(W) = 1 / (3 fan_in), a sixth of He's 2 / fan_in for ReLU (Glorot & Bengio 2010; He et al.
2015) -- the baseline under which a deep plain ReLU stack's signal and gradients shrink.

The gain matches the activation, as `torch.nn.init.calculate_gain` defines it: relu sqrt(2),
leaky_relu sqrt(2 / (1 + 0.01^2)), tanh 5/3, sigmoid 1. GELU has no entry there; it is ReLU-like
for large inputs, so it gets ReLU's gain sqrt(2) (our choice, stated here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import torch
from torch import nn

from gradprobe.config import Init
from gradprobe.errors import InputError
from gradprobe.models.layers import LEAKY_RELU_SLOPE

INITS: tuple[str, ...] = get_args(Init)

WeightInit = Callable[[torch.Tensor, str], None]


def activation_gain(activation: str) -> float:
    """The recommended std multiplier for weights feeding `activation` (see module docstring)."""
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", LEAKY_RELU_SLOPE)
    if activation == "gelu":
        return nn.init.calculate_gain("relu")  # no GELU gain in torch: use ReLU's (documented)
    return nn.init.calculate_gain(activation)


def _kaiming(weight: torch.Tensor, activation: str) -> None:
    # He et al. 2015: Var(W) = gain^2 / fan_in keeps the forward signal's variance constant.
    # calculate_gain (inside kaiming_normal_) reads `a` only for leaky_relu.
    nonlinearity = "relu" if activation == "gelu" else activation  # GELU: ReLU's gain
    nn.init.kaiming_normal_(weight, a=LEAKY_RELU_SLOPE, mode="fan_in", nonlinearity=nonlinearity)


def _xavier(weight: torch.Tensor, activation: str) -> None:
    # Glorot & Bengio 2010: Var(W) = gain^2 * 2 / (fan_in + fan_out).
    nn.init.xavier_normal_(weight, gain=activation_gain(activation))


def _orthogonal(weight: torch.Tensor, activation: str) -> None:
    # Orthogonal rows of the flattened kernel, scaled by the activation's gain: singular values
    # all equal at initialisation (dynamical isometry, Pennington et al. 2017).
    nn.init.orthogonal_(weight, gain=activation_gain(activation))


_WEIGHT_INITS: dict[str, WeightInit] = {
    "kaiming": _kaiming,
    "xavier": _xavier,
    "orthogonal": _orthogonal,
}


def get_weight_init(init: str | WeightInit) -> WeightInit | None:
    """Return the weight initialiser for `init` (None for "default"); a callable passes through."""
    if callable(init):
        return init
    if init == "default":
        return None
    if init not in _WEIGHT_INITS:
        raise InputError(f"unknown init {init!r}; use one of: {', '.join(INITS)}")
    return _WEIGHT_INITS[init]


def init_weights(model: nn.Module, init: str | WeightInit, activation: str) -> None:
    """Initialise `model` in place with scheme `init`, with the gain of `activation`.

    "default" returns without touching any parameter (and without consuming random numbers).
    """
    weight_init = get_weight_init(init)
    if weight_init is None:
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight_init(module.weight, activation)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
