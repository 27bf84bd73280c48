"""Which parameters each probed layer measures, and their norms combined per layer.

A layer's "weight" metrics are over its measured parameters: `module.weight` when it has one,
else every direct parameter named like a weight: ending in "weight" (nn.MultiheadAttention's
`in_proj_weight`, or `q/k/v_proj_weight`) or starting with "weight_" (a recurrent layer's
`weight_ih_l0`, `weight_hh_l0`, `weight_hh_l1_reverse`, `weight_hr_l0`: every layer and
direction of an nn.RNN/LSTM/GRU together); with `parameters="all"`, every direct parameter
(biases too). A layer measuring several parameters reports the norm of their concatenation.
A parameter shared by several layers (tied weights) is normed once and counted once in the
global norm.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from gradprobe.errors import InputError
from gradprobe.probe.base import Measurement
from gradprobe.probe.norms import accumulator_dtype, cpu_norm_values, norms

ParameterChoice = Literal["weights", "all"]


def measured_parameters(module: nn.Module, choice: ParameterChoice) -> list[Tensor]:
    """The parameters of `module` (not of its submodules) that its weight metrics cover."""
    if choice not in ("weights", "all"):
        raise InputError(f"parameters={choice!r} must be 'weights' or 'all' (biases too)")
    direct = list(module.named_parameters(recurse=False))
    if choice == "all":
        return [param for _, param in direct]
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor):
        return [weight]
    return [param for name, param in direct if is_weight_name(name)]


def is_weight_name(name: str) -> bool:
    """A parameter named like a weight: `weight`, `in_proj_weight`, `weight_ih_l0_reverse`."""
    return name.endswith("weight") or name.startswith("weight_")


class LayerParameters:
    """The measured parameters of every layer, deduplicated, with per-layer norm combination."""

    def __init__(self, per_layer: list[list[Tensor]]) -> None:
        self.params: list[Tensor] = []
        position: dict[int, int] = {}
        self._pairs: list[tuple[int, int]] = []  # (layer, index into params)
        for layer, params in enumerate(per_layer):
            for param in params:
                if id(param) not in position:
                    position[id(param)] = len(self.params)
                    self.params.append(param)
                self._pairs.append((layer, position[id(param)]))
        self.layers = len(per_layer)
        self.numels = [sum(param.numel() for param in params) for params in per_layer]
        self.empty = [not params for params in per_layer]
        self._cache: dict[tuple[object, ...], tuple[Tensor, Tensor, Tensor]] = {}

    def trainable(self) -> list[Tensor | None]:
        """Each parameter when it requires grad now, else None."""
        return [param if param.requires_grad else None for param in self.params]

    def grads(self) -> list[Tensor | None]:
        """Each trainable parameter's `.grad` (None when frozen or without a gradient)."""
        return [None if param is None else param.grad for param in self.trainable()]

    def layer_norms(
        self, tensors: list[Tensor | None], device: torch.device
    ) -> tuple[Measurement, Tensor]:
        """Per-layer norms of per-parameter tensors (None = absent), and their global norm."""
        present = tuple(tensor is not None for tensor in tensors)
        if device.type == "cpu":
            return self._cpu_layer_norms(tensors, present, device)
        dtype = accumulator_dtype(device)
        squares = torch.zeros(len(tensors), dtype=dtype, device=device)
        found = [tensor for tensor in tensors if tensor is not None]
        if found:
            index, layer_index, defined = self._indices(present, device)
            squares[index] = torch.stack(norms(found)).to(dtype).square()
            per_layer = torch.zeros(self.layers, dtype=dtype, device=device)
            per_layer.index_add_(0, layer_index, squares[self._pair_params(device)])
        else:
            per_layer = torch.zeros(self.layers, dtype=dtype, device=device)
            defined = torch.zeros(self.layers, dtype=torch.bool, device=device)
        return Measurement(per_layer.sqrt(), defined), squares.sum().sqrt()

    def _cpu_layer_norms(
        self, tensors: list[Tensor | None], present: tuple[bool, ...], device: torch.device
    ) -> tuple[Measurement, Tensor]:
        """The same in Python floats: on small models, tensor bookkeeping costs more than math."""
        found = cpu_norm_values([tensor for tensor in tensors if tensor is not None])
        squares = [0.0] * len(tensors)
        for position, value in zip(
            (i for i, here in enumerate(present) if here), found, strict=True
        ):
            squares[position] = value * value
        per_layer = [0.0] * self.layers
        for layer, param in self._pairs:
            per_layer[layer] += squares[param]
        values = torch.tensor(per_layer, dtype=torch.float64).sqrt_()
        defined = self._indices(present, device)[2]
        return Measurement(values, defined), torch.tensor(sum(squares), dtype=torch.float64).sqrt_()

    def _pair_params(self, device: torch.device) -> Tensor:
        key = ("pair_params", device)
        if key not in self._cache:
            params = torch.tensor([param for _, param in self._pairs], dtype=torch.int64)
            self._cache[key] = (params.to(device),) * 3
        return self._cache[key][0]

    def _indices(self, present: tuple[bool, ...], device: torch.device) -> tuple[Tensor, ...]:
        """(positions of present params, layer of each pair, layer defined mask) for a pattern."""
        key = (present, device)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            index = [i for i, here in enumerate(present) if here]
            layers = [layer for layer, _ in self._pairs]
            defined = [False] * self.layers
            for layer, param in self._pairs:
                defined[layer] = defined[layer] or present[param]
            self._cache[key] = (
                torch.tensor(index, dtype=torch.int64, device=device),
                torch.tensor(layers, dtype=torch.int64, device=device),
                torch.tensor(defined, dtype=torch.bool, device=device),
            )
        return self._cache[key]
