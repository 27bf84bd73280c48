"""The update statistics (update_ratio): weights snapshotted around the optimiser's step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from gradprobe.probe.base import RecordContext, Statistic
from gradprobe.probe.constants import DeviceConstants
from gradprobe.probe.history import History
from gradprobe.probe.params import LayerParameters


class UpdateWatcher:
    """Fills a recorded row's "update" columns once the optimiser step after it has run.

    `record()` sets `pending_row`; the next watched optimiser step copies the weights before it
    and, after it, writes the per-layer update statistics into that history row.
    """

    def __init__(
        self,
        params: LayerParameters,
        statistics: list[Statistic],
        history: History,
        constants: DeviceConstants,
        device: Callable[[], torch.device],
    ) -> None:
        self._params = params
        self._statistics = statistics
        self._history = history
        self._constants = constants
        self._device = device
        self.pending_row: int | None = None  # history row waiting for update statistics
        self._weights_before: list[Tensor | None] | None = None

    def drop(self) -> None:
        """Forget the pending row: its update stays undefined."""
        self.pending_row = None
        self._weights_before = None

    def hook(self, optimizer: Optimizer) -> list[RemovableHandle]:
        """Register the step pre/post hooks on `optimizer`; their handles."""
        return [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]

    def _before_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if self.pending_row is not None:
            self._weights_before = [
                None if param is None else param.detach().clone()
                for param in self._params.trainable()
            ]

    def _after_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        before, row = self._weights_before, self.pending_row
        if before is None or row is None:
            return
        self._weights_before, self.pending_row = None, None
        device = self._device()
        after = [None if param is None else param.detach() for param in self._params.trainable()]
        deltas = [
            None if new is None or old is None else new - old
            for new, old in zip(after, before, strict=True)
        ]
        update_norms, _ = self._params.layer_norms(deltas, device)
        weight_norms, _ = self._params.layer_norms(before, device)
        context = RecordContext(
            partial_sums={},
            calls={},
            weight_grad_norms=lambda: self._constants.undefined(device),
            weight_numels=self._constants.weight_numels(device),
            output_grad_scale=1.0,
            update=(update_norms, weight_norms),
        )
        for column, stat in enumerate(self._statistics):
            if stat.source == "update":
                measurement = stat.compute(context)
                self._history.write(
                    row, column, measurement.values.to(torch.float32), measurement.defined
                )
