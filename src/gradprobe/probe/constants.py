"""Small per-device tensors the probe reuses every step (created once, not per record)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gradprobe.probe.base import Measurement
from gradprobe.probe.norms import accumulator_dtype

_CACHE_LIMIT = 64  # device tensors kept per probe: bounded if the model moves between devices


class DeviceConstants:
    """Per-layer weight element counts and the all-undefined placeholder, on each device."""

    def __init__(self, numels: list[int]) -> None:
        self._numels = numels
        self._cache: dict[tuple[Any, ...], Tensor] = {}

    def weight_numels(self, device: torch.device) -> Tensor:
        """(layers,) measured-parameter element counts, in the device's accumulator dtype."""
        key = ("numels", device)
        if key not in self._cache:
            numels = torch.tensor(self._numels, dtype=accumulator_dtype(device))
            self._remember(key, numels.to(device))
        return self._cache[key]

    def undefined(self, device: torch.device) -> Measurement:
        """All layers undefined: the placeholder for statistics known only after the step."""
        key = ("undefined", device)
        if key not in self._cache:
            layers = len(self._numels)
            self._remember(key, torch.full((layers,), math.nan, device=device))
            self._remember((*key, "mask"), torch.zeros(layers, dtype=torch.bool, device=device))
        return Measurement(self._cache[key], self._cache[(*key, "mask")])

    def _remember(self, key: tuple[Any, ...], tensor: Tensor) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = tensor
