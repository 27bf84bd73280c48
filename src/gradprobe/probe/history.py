"""The probe's recorded values: rows on the device until flushed, then on the host.

One row per recorded step holds a (layers, metrics) block of values and a matching block of
"defined" flags. Rows are written into a preallocated device tensor that doubles when full, so
recording is a single copy kernel with no host synchronisation; `flush()` moves them to host
memory in one transfer.

With a sink (`stream()`), a flush also hands the host rows to the sink and drops them, so memory
holds at most `rows_per_flush` rows: `append()` flushes by itself when that many are waiting.
Row indices stay absolute (`first_row` counts the rows handed over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradprobe.probe.base import Measurement

_INITIAL_CAPACITY = 64
# receives (steps, epochs, values, defined) of rows leaving memory, oldest first
RowSink = Callable[[list[int], list[int], Tensor, Tensor], None]


def stack_row(measurements: list[Measurement]) -> tuple[Tensor, Tensor]:
    """One row's (layers, metrics) values (float32, the stored dtype) and defined flags."""
    values = torch.stack([m.values.to(torch.float32) for m in measurements], dim=1)
    defined = torch.stack([m.defined for m in measurements], dim=1)
    return values, defined


class History:
    """Recorded rows: step and epoch (host ints), values and defined flags (layers x metrics)."""

    def __init__(self, layers: int, metrics: int) -> None:
        self.layers = layers
        self.metrics = metrics
        self._steps: list[int] = []  # every held row's step, host and device rows alike
        self._epochs: list[int] = []
        self._host_values = torch.empty(0, layers, metrics, dtype=torch.float32)
        self._host_defined = torch.empty(0, layers, metrics, dtype=torch.bool)
        # (capacity, layers, metrics), allocated on the first row's device
        self._device_values = torch.empty(0, layers, metrics, dtype=torch.float32)
        self._device_defined = torch.empty(0, layers, metrics, dtype=torch.bool)
        self._device_rows = 0
        self.first_row = 0  # absolute index of the first held row; earlier ones went to the sink
        self._sink: RowSink | None = None
        self._rows_per_flush = 0
        self._last_sunk_step: int | None = None

    def __len__(self) -> int:
        """Rows recorded, including those handed to the sink."""
        return self.first_row + len(self._steps)

    @property
    def held(self) -> int:
        """Rows held in memory (host and device)."""
        return len(self._steps)

    def stream(self, sink: RowSink | None, rows_per_flush: int = 1000) -> None:
        """Hand rows to `sink` at every flush (None: keep them in memory again)."""
        self._sink, self._rows_per_flush = sink, max(1, rows_per_flush)

    @property
    def last_step(self) -> int | None:
        """The step of the newest row, or None when empty."""
        return self._steps[-1] if self._steps else self._last_sunk_step

    def append(self, step: int, epoch: int, values: Tensor, defined: Tensor) -> int:
        """Add a row (values and defined are (layers, metrics) on any device); its row index."""
        if self._sink is not None and self.held >= self._rows_per_flush:
            # before the new row: the previous row's late metrics (update_ratio) are written
            self.flush()
        self._reserve(values.device)
        self._device_values[self._device_rows].copy_(values)
        self._device_defined[self._device_rows].copy_(defined)
        self._device_rows += 1
        self._steps.append(step)
        self._epochs.append(epoch)
        return len(self) - 1

    def write(self, row: int, metric: int, values: Tensor, defined: Tensor) -> None:
        """Overwrite one metric's (layers,) values of an existing row (a late-known metric)."""
        row -= self.first_row
        if row < 0:
            raise ValueError("the row was already handed to the stream; flush after the step")
        host_rows = self._host_values.shape[0]
        if row >= host_rows:
            self._device_values[row - host_rows, :, metric].copy_(values)
            self._device_defined[row - host_rows, :, metric].copy_(defined)
        else:
            self._host_values[row, :, metric] = values.to("cpu", torch.float32)
            self._host_defined[row, :, metric] = defined.to("cpu")

    def flush(self, hold_from: int | None = None) -> None:
        """Move device rows to host memory (one synchronising transfer) and reuse the buffer;
        with a sink, hand it the host rows before absolute row `hold_from` and drop them."""
        if self._device_rows:
            rows = slice(0, self._device_rows)
            self._host_values = torch.cat([self._host_values, self._device_values[rows].cpu()])
            self._host_defined = torch.cat([self._host_defined, self._device_defined[rows].cpu()])
            self._device_rows = 0
        if self._sink is None:
            return
        count = self.held if hold_from is None else min(self.held, hold_from - self.first_row)
        count = max(count, 0)
        if not count:
            return
        self._sink(self._steps[:count], self._epochs[:count], self._host_values[:count],
                   self._host_defined[:count])
        self._last_sunk_step = self._steps[count - 1]
        self._steps, self._epochs = self._steps[count:], self._epochs[count:]
        self._host_values = self._host_values[count:].clone()  # free the handed-over rows
        self._host_defined = self._host_defined[count:].clone()
        self.first_row += count

    def truncate_after(self, step: int) -> None:
        """Drop every row whose step is greater than `step`."""
        if self._last_sunk_step is not None and step < self._last_sunk_step:
            raise ValueError(
                f"rows up to step {self._last_sunk_step} were already streamed to disk; "
                f"cannot drop those after step {step}"
            )
        self.flush(hold_from=self.first_row)  # to the host, nothing handed over
        keep = [index for index, row_step in enumerate(self._steps) if row_step <= step]
        self._steps = [self._steps[index] for index in keep]
        self._epochs = [self._epochs[index] for index in keep]
        self._host_values = self._host_values[keep]
        self._host_defined = self._host_defined[keep]

    def host_arrays(self) -> tuple[list[int], list[int], Tensor, Tensor]:
        """(steps, epochs, values, defined) of every held row, moved to the host (not handed
        to the sink)."""
        self.flush(hold_from=self.first_row)
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
