"""The probe's recorded values: rows on the device until flushed, then on the host.

One row per recorded step holds a (layers, metrics) block of values and a matching block of
"defined" flags. Rows are written into a preallocated device tensor that doubles when full, so
recording is a single copy kernel with no host synchronisation; `flush()` moves them to host
memory in one transfer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_INITIAL_CAPACITY = 64


class History:
    """Recorded rows: step and epoch (host ints), values and defined flags (layers x metrics)."""

    def __init__(self, layers: int, metrics: int) -> None:
        self.layers = layers
        self.metrics = metrics
        self._steps: list[int] = []  # every row's step, host and device rows alike
        self._epochs: list[int] = []
        self._host_values = torch.empty(0, layers, metrics, dtype=torch.float32)
        self._host_defined = torch.empty(0, layers, metrics, dtype=torch.bool)
        # (capacity, layers, metrics), allocated on the first row's device
        self._device_values = torch.empty(0, layers, metrics, dtype=torch.float32)
        self._device_defined = torch.empty(0, layers, metrics, dtype=torch.bool)
        self._device_rows = 0

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def last_step(self) -> int | None:
        """The step of the newest row, or None when empty."""
        return self._steps[-1] if self._steps else None

    def append(self, step: int, epoch: int, values: Tensor, defined: Tensor) -> int:
        """Add a row (values and defined are (layers, metrics) on any device); its row index."""
        self._reserve(values.device)
        self._device_values[self._device_rows].copy_(values)
        self._device_defined[self._device_rows].copy_(defined)
        self._device_rows += 1
        self._steps.append(step)
        self._epochs.append(epoch)
        return len(self._steps) - 1

    def write(self, row: int, metric: int, values: Tensor, defined: Tensor) -> None:
        """Overwrite one metric's (layers,) values of an existing row (a late-known metric)."""
        host_rows = self._host_values.shape[0]
        if row >= host_rows:
            self._device_values[row - host_rows, :, metric].copy_(values)
            self._device_defined[row - host_rows, :, metric].copy_(defined)
        else:
            self._host_values[row, :, metric] = values.to("cpu", torch.float32)
            self._host_defined[row, :, metric] = defined.to("cpu")

    def flush(self) -> None:
        """Move device rows to host memory (one synchronising transfer) and reuse the buffer."""
        if not self._device_rows:
            return
        rows = slice(0, self._device_rows)
        self._host_values = torch.cat([self._host_values, self._device_values[rows].cpu()])
        self._host_defined = torch.cat([self._host_defined, self._device_defined[rows].cpu()])
        self._device_rows = 0

    def truncate_after(self, step: int) -> None:
        """Drop every row whose step is greater than `step`."""
        self.flush()
        keep = [index for index, row_step in enumerate(self._steps) if row_step <= step]
        self._steps = [self._steps[index] for index in keep]
        self._epochs = [self._epochs[index] for index in keep]
        self._host_values = self._host_values[keep]
        self._host_defined = self._host_defined[keep]

    def host_arrays(self) -> tuple[list[int], list[int], Tensor, Tensor]:
        """(steps, epochs, values, defined) of every row, flushed to the host."""
        self.flush()
        return self._steps, self._epochs, self._host_values, self._host_defined

    def state_dict(self) -> dict[str, Any]:
        """Tensors only, so `torch.load(weights_only=True)` reads it."""
        steps, epochs, values, defined = self.host_arrays()
        return {
            "steps": torch.tensor(steps, dtype=torch.int64),
            "epochs": torch.tensor(epochs, dtype=torch.int64),
            "values": values.clone(),
            "defined": defined.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every row with those of `state` (from `state_dict`)."""
        values, defined = state["values"], state["defined"]
        expected = (self.layers, self.metrics)
        if tuple(values.shape[1:]) != expected or tuple(defined.shape[1:]) != expected:
            raise ValueError(
                f"probe history holds {tuple(values.shape[1:])} (layers, metrics) blocks; "
                f"this probe records {expected}"
            )
        self._steps = [int(step) for step in state["steps"].tolist()]
        self._epochs = [int(epoch) for epoch in state["epochs"].tolist()]
        self._host_values = values.to("cpu", torch.float32).clone()
        self._host_defined = defined.to("cpu", torch.bool).clone()
        self._device_rows = 0

    def _reserve(self, device: torch.device) -> None:
        """Make room for one more device row, doubling the buffer (or moving it) as needed."""
        capacity = self._device_values.shape[0]
        if self._device_values.device != device:
            self.flush()  # first row, or the model moved: start a buffer on the new device
            capacity = 0
        elif self._device_rows < capacity:
            return
        capacity = max(_INITIAL_CAPACITY, 2 * capacity)
        values = torch.empty(capacity, self.layers, self.metrics, device=device)
        defined = torch.zeros(capacity, self.layers, self.metrics, dtype=torch.bool, device=device)
        rows = slice(0, self._device_rows)  # empty after a flush
        values[rows] = self._device_values[rows]
        defined[rows] = self._device_defined[rows]
        self._device_values, self._device_defined = values, defined
