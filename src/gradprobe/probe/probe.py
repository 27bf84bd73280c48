"""`GradientProbe`: per-layer gradient statistics on any `nn.Module`, recorded on the device.

Usage, at the named point after backward and before clipping and the optimiser step
(Lightning's `on_before_optimizer_step`):

    probe = GradientProbe(model)              # every Conv and Linear, or model.probe_points
    probe.watch_optimizer(optimizer)          # only needed for update_ratio
    with probe:                               # attach() ... detach()
        for step, (images, labels) in enumerate(loader):
            loss = criterion(model(images), labels)
            scaler.scale(loss).backward()     # or loss.backward(), once per micro-batch
            probe.record(step, epoch, scaler=scaler)
            scaler.step(optimizer); scaler.update(); optimizer.zero_grad()
        probe.flush()                         # once per epoch: one device-to-host copy
    frame = probe.to_frame()                  # step, epoch, layer, depth, kind, metric, value

How it measures:
- Output gradients come from a tensor hook registered on each layer's output in a forward hook,
  not from `register_full_backward_hook`, which fails on outputs later modified in place
  (torchvision's `ReLU(inplace=True)`). A hook registered before an in-place op receives the
  gradient with respect to the value the layer produced (PyTorch autograd notes, "Backward hooks
  and in-place ops").
- Each hook reduces its tensor to a few partial sums on the device (a squared norm) and keeps
  only that; the graph, the output and its gradient are never referenced after the hook returns.
- `record()` sums the partials per layer (over calls of a shared module and over accumulation
  micro-batches), all-reduces them across DDP ranks, reads weight gradients with one
  `torch._foreach_norm` (one fused kernel on CUDA), and copies one (layers, metrics) row into
  a preallocated device buffer: no `.item()`, no host synchronisation until `flush()` (on CPU
  the norms read a scalar to guard their precision, see `gradprobe.probe.norms`; a CPU has no
  device to synchronise with).
- Nothing happens in eval mode or with gradients disabled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.amp.grad_scaler import GradScaler, OptState
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from gradprobe.errors import InputError
from gradprobe.probe.base import (
    TENSOR_SOURCES,
    Measurement,
    RecordContext,
    Source,
    Statistic,
    create_statistic,
)
from gradprobe.probe.history import History
from gradprobe.probe.layers import ACTIVATION_TYPES, LayerInfo, LayerSelector, select_layers, unwrap
from gradprobe.probe.norms import accumulator_dtype, norms

DEFAULT_METRICS = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm")
STATE_FORMAT = 1  # version of `state_dict()`'s layout
_CACHE_LIMIT = 64  # device index/mask tensors kept per probe (one per distinct call pattern)

Schedule = int | Callable[[int], bool]


class GradientProbe:
    """Records per-layer gradient statistics of `model` at each scheduled optimiser step.

    `layers`: None (the model's `probe_points` when it declares them, else every Conv and
    Linear), module types, module names, or a predicate `(name, module) -> bool`.
    `metrics`: names from `list_metrics()`. `every`: record steps divisible by k, or a callable
    `step -> bool`. `distributed`: all-reduce output statistics over the default process group;
    None = when torch.distributed is initialised with more than one rank (DDP training).

    Semantics worth knowing:
    - A module called several times in one forward pass (shared weights) has one row per
      metric: output statistics are pooled over its calls (output_grad_norm is the norm of the
      concatenated gradients, sqrt of the summed squares), and its weight gradient is the one
      autograd accumulated. Its depth is that of its first call.
    - Under DDP (pass the wrapped or the inner model: names are the inner model's), every rank
      must call `record()` at the same steps, because it all-reduces the output statistics;
      the tables are then identical on every rank. Output gradients are divided by the world
      size, as DDP divides weight gradients, so values equal a single process's on the global
      batch.
    - The hooks are idle while the model (its root module) is in eval mode or gradients are
      disabled. Only tensor outputs are measured, and the model is assumed to be on one device.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSelector = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        every: Schedule = 1,
        *,
        distributed: bool | None = None,
    ) -> None:
        self._model = unwrap(model)
        selected = select_layers(self._model, layers)
        self._names = [layer.name for layer in selected]
        self._kinds = [layer.kind for layer in selected]
        self._modules = [layer.module for layer in selected]
        self._depths = [-1] * len(selected)
        self._statistics = _create_statistics(metrics)
        self._by_source: dict[Source, list[Statistic]] = {
            source: [stat for stat in self._statistics if stat.source == source]
            for source in ("weight_grad", *TENSOR_SOURCES, "update")
        }
        self._should_record = _schedule(every)
        self._distributed = distributed
        self._history = History(len(selected), len(self._statistics))
        self.epoch = 0  # the epoch `watch_optimizer(..., record=True)` records under

        self._attached = False
        self._handles: list[RemovableHandle] = []
        self._optimizers: list[Optimizer] = []
        self._record_on_step: dict[int, GradScaler | None] = {}  # id(optimizer) -> scaler
        self._grad_hooks = [
            functools.partial(self._on_output_grad, index) for index in range(len(selected))
        ]
        # Per tensor source: partial-sum tensors of the current step and the layer each is for.
        self._partials: dict[Source, list[Tensor]] = {source: [] for source in TENSOR_SOURCES}
        self._owners: dict[Source, list[int]] = {source: [] for source in TENSOR_SOURCES}
        self._awaiting_activation: list[int] = []  # layers run since the last activation module
        self._last_step: int | None = None  # the step of the last record() call
        self._update_row: int | None = None  # history row waiting for update statistics
        self._weights_before_step: list[Tensor] | None = None
        self._device_cache: dict[tuple[Any, ...], Tensor] = {}

    # ---------------------------------------------------------------------------- lifecycle
    def attach(self) -> GradientProbe:
        """Register the hooks (idempotent)."""
        if self._attached:
            return self
        for index, module in enumerate(self._modules):
            hook = functools.partial(self._on_layer_output, index)
            self._handles.append(module.register_forward_hook(hook))
        if self._by_source["activation"]:
            self._handles.append(self._model.register_forward_pre_hook(self._on_forward_start))
            for module in self._model.modules():
                if isinstance(module, ACTIVATION_TYPES):
                    self._handles.append(module.register_forward_hook(self._on_activation))
        self._attached = True
        for optimizer in self._optimizers:
            self._hook_optimizer(optimizer)
        return self

    def detach(self) -> None:
        """Remove every hook this probe registered and drop partial sums not yet recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._attached = False
        self._clear_step_state()
        self._weights_before_step = None
        self._update_row = None

    def __enter__(self) -> GradientProbe:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def watch_optimizer(
        self, optimizer: Optimizer, *, record: bool = False, scaler: GradScaler | None = None
    ) -> GradientProbe:
        """Follow `optimizer`'s steps: needed for update_ratio, and tells GradScaler's state.

        With `record=True` the probe also calls `record()` itself just before each step the
        optimiser takes (after a GradScaler has unscaled the gradients), numbering steps on from
        the last recorded one and using `probe.epoch`; a step the scaler skips is not recorded.
        """
        if any(watched is optimizer for watched in self._optimizers):
            raise InputError("this optimizer is already watched by the probe; watch it once")
        self._optimizers.append(optimizer)
        if record:
            self._record_on_step[id(optimizer)] = scaler
        if self._attached:
            self._hook_optimizer(optimizer)
        return self

    # ------------------------------------------------------------------------------ reading
    @property
    def layers(self) -> list[LayerInfo]:
        """The probed layers in selection order, depth -1 until a layer first runs."""
        return [
            LayerInfo(*info) for info in zip(self._names, self._kinds, self._depths, strict=True)
        ]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The recorded metric names, in column order."""
        return tuple(stat.name for stat in self._statistics)

    def record(self, step: int, epoch: int, *, scaler: GradScaler | None = None) -> bool:
        """Record the current step's statistics if the schedule says so; whether it did.

        Call at every optimiser step, after backward (after all accumulation micro-steps) and
        before gradient clipping and the optimiser step; the schedule picks the steps to keep.
        Pass the GradScaler in use so values are reported unscaled. The partial sums gathered
        since the previous call are consumed either way.
        """
        if not self._attached:
            raise RuntimeError("attach the probe (probe.attach() or `with probe:`) before record()")
        if self._by_source["update"] and not self._optimizers:
            raise InputError(
                "update_ratio measures the optimiser's step: call "
                "probe.watch_optimizer(optimizer) before recording"
            )
        step, epoch = int(step), int(epoch)
        # An update still pending belongs to a step the optimiser skipped (GradScaler found
        # inf/NaN gradients): it stays undefined rather than taking the next step's update.
        self._update_row = None
        should_record = self._should_record(step)
        last = self._history.last_step
        if should_record and last is not None and step <= last:
            self._clear_step_state()
            raise ValueError(
                f"step {step} is not after the last recorded step {last}; record each step once, "
                f"in order (when resuming from an older checkpoint, call "
                f"truncate_after({step - 1}) first)"
            )
        self._last_step = step
        if not should_record:
            self._clear_step_state()
            return False
        device = self._device()
        amp_scale, weight_grads_scaled = self._amp_state(scaler)
        partial_sums, calls = self._reduce_partials(device)
        context = RecordContext(
            partial_sums=partial_sums,
            calls=calls,
            weight_grad_norms=lambda: self._weight_grad_norms(
                device, amp_scale if weight_grads_scaled else None
            ),
            weight_numels=self._weight_numels(device),
            output_grad_scale=amp_scale * self._world_size(),
        )
        undefined = self._undefined(device)
        measurements = [
            undefined if stat.source == "update" else stat.compute(context)
            for stat in self._statistics
        ]
        row = self._history.append(step, epoch, *self._stack(measurements))
        self._update_row = row if self._by_source["update"] else None
        return True

    def flush(self) -> None:
        """Move recorded rows from the device to host memory (synchronises the device)."""
        self._history.flush()

    def to_frame(self) -> pd.DataFrame:
        """The tidy table: step, epoch, layer, depth, kind, metric, value; one row per value.

        Rows are ordered by step, then depth, then metric column; undefined values are left
        out (a frozen layer has no weight_grad_norm), defined NaN/inf values are kept.
        """
        steps, epochs, values, defined = self._history.host_arrays()
        # Order layers by depth (layers that never ran last) so rows read input to output.
        order = sorted(
            range(len(self._names)), key=lambda i: (self._depths[i] < 0, self._depths[i])
        )
        values, defined = values[:, order], defined[:, order]
        rows, layers, metrics = (axis.numpy() for axis in defined.nonzero(as_tuple=True))
        names, kinds = np.array(self._names, dtype=object), np.array(self._kinds, dtype=object)
        depths = np.array(self._depths, dtype=np.int64)
        return pd.DataFrame(
            {
                "step": np.asarray(steps, dtype=np.int64)[rows],
                "epoch": np.asarray(epochs, dtype=np.int64)[rows],
                "layer": names[order][layers],
                "depth": depths[order][layers],
                "kind": kinds[order][layers],
                "metric": np.array(self.metrics, dtype=object)[metrics],
                "value": values[defined].double().numpy(),
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """The history and layer depths, loadable with `torch.load(weights_only=True)`."""
        return {
            "format": STATE_FORMAT,
            "layers": list(self._names),
            "metrics": list(self.metrics),
            "depths": list(self._depths),
            "last_step": -1 if self._last_step is None else self._last_step,
            "history": self._history.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a resumed run's history; recording continues after its last step."""
        if state.get("format") != STATE_FORMAT:
            raise InputError(
                f"probe state has format {state.get('format')!r}, this gradprobe reads "
                f"{STATE_FORMAT}; resume with the gradprobe version that wrote the checkpoint"
            )
        for what, saved, mine in (
            ("layers", state["layers"], self._names),
            ("metrics", state["metrics"], list(self.metrics)),
        ):
            if list(saved) != mine:
                raise InputError(
                    f"the checkpoint's probe recorded {what} {list(saved)}, this probe records "
                    f"{mine}; build the probe with the same model, layers and metrics to resume"
                )
        self._history.load_state_dict(state["history"])
        self._depths = [int(depth) for depth in state["depths"]]
        self._last_step = None if state["last_step"] < 0 else int(state["last_step"])
        self._clear_step_state()
        self._update_row = None

    def truncate_after(self, step: int) -> None:
        """Drop recorded rows after `step` (resuming from a checkpoint older than the history)."""
        self._history.truncate_after(step)
        if self._last_step is not None and self._last_step > step:
            self._last_step = step
        self._update_row = None

    # -------------------------------------------------------------------------------- hooks
    def _active(self) -> bool:
        return self._attached and self._model.training and torch.is_grad_enabled()

    def _on_layer_output(self, index: int, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self._active():
            return
        if self._depths[index] < 0:  # first run: forward-execution order defines depth
            self._depths[index] = max(self._depths) + 1
        if not isinstance(output, Tensor):
            return
        if self._by_source["activation"]:
            self._awaiting_activation.append(index)
        if self._by_source["output_grad"] and output.requires_grad:
            output.register_hook(self._grad_hooks[index])

    def _on_output_grad(self, index: int, grad: Tensor) -> None:
        if self._attached:  # a graph built before detach() may still run backward
            self._add_partials("output_grad", (index,), grad.detach())

    def _on_forward_start(self, module: nn.Module, inputs: Any) -> None:
        self._awaiting_activation.clear()  # the last layers of the previous pass have no successor

    def _on_activation(self, module: nn.Module, inputs: Any, output: Any) -> None:
        owners, self._awaiting_activation = self._awaiting_activation, []
        if owners and isinstance(output, Tensor) and self._active():
            self._add_partials("activation", owners, output.detach())

    def _add_partials(self, source: Source, owners: Sequence[int], tensor: Tensor) -> None:
        parts = [stat.partial(tensor) for stat in self._by_source[source]]
        partial = parts[0] if len(parts) == 1 else torch.cat(parts)  # (source width,)
        for owner in owners:
            self._partials[source].append(partial)
            self._owners[source].append(owner)

    def _hook_optimizer(self, optimizer: Optimizer) -> None:
        self._handles.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
        self._handles.append(optimizer.register_step_post_hook(self._after_optimizer_step))

    def _before_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if id(optimizer) in self._record_on_step:
            step = 0 if self._last_step is None else self._last_step + 1
            self.record(step, self.epoch, scaler=self._record_on_step[id(optimizer)])
        if self._update_row is not None:
            self._weights_before_step = [
                weight.detach().clone()
                for weight in self._trainable_weights()
                if weight is not None
            ]

    def _after_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        before, row = self._weights_before_step, self._update_row
        if before is None or row is None:
            return
        self._weights_before_step, self._update_row = None, None
        weights = self._trainable_weights()
        device = self._device()
        present = [weight.detach() for weight in weights if weight is not None]
        update_norms = norms(torch._foreach_sub(present, before))
        weight_norms = norms(before)
        mask = [weight is not None for weight in weights]
        context = RecordContext(
            partial_sums={},
            calls={},
            weight_grad_norms=lambda: self._undefined(device),
            weight_numels=self._weight_numels(device),
            output_grad_scale=1.0,
            update=(
                self._scatter(update_norms, mask, device),
                self._scatter(weight_norms, mask, device),
            ),
        )
        for column, stat in enumerate(self._statistics):
            if stat.source == "update":
                measurement = stat.compute(context)
                self._history.write(
                    row, column, measurement.values.to(torch.float32), measurement.defined
                )

    # ---------------------------------------------------------------------- record helpers
    def _clear_step_state(self) -> None:
        for source in TENSOR_SOURCES:
            self._partials[source].clear()
            self._owners[source].clear()
        self._awaiting_activation.clear()

    def _reduce_partials(
        self, device: torch.device
    ) -> tuple[dict[str, Tensor], dict[Source, Tensor]]:
        """Per statistic (layers, width) sums and per source (layers,) call counts."""
        dtype = accumulator_dtype(device)
        blocks: list[Tensor] = []
        for source in TENSOR_SOURCES:
            stats = self._by_source[source]
            if not stats:
                continue
            width = sum(stat.width for stat in stats)
            block = torch.zeros(len(self._names), width + 1, dtype=dtype, device=device)
            if self._partials[source]:
                index, calls = self._owner_index(self._owners[source], device)
                block[:, :width].index_add_(0, index, torch.stack(self._partials[source]))
                block[:, width] = calls
            blocks.append(block)  # (layers, width + calls column)
        self._clear_step_state()
        if blocks and self._world_size() > 1:
            # One collective for every statistic: each rank saw its own slice of the batch.
            reduced = torch.cat(blocks, dim=1)
            dist.all_reduce(reduced)
            blocks = list(reduced.split([block.shape[1] for block in blocks], dim=1))
        partial_sums: dict[str, Tensor] = {}
        calls_by_source: dict[Source, Tensor] = {}
        sources = [source for source in TENSOR_SOURCES if self._by_source[source]]
        for source, block in zip(sources, blocks, strict=True):
            columns = block.split([stat.width for stat in self._by_source[source]] + [1], dim=1)
            for stat, sums in zip(self._by_source[source], columns[:-1], strict=True):
                partial_sums[stat.name] = sums
            calls_by_source[source] = columns[-1][:, 0]
        return partial_sums, calls_by_source

    def _owner_index(self, owners: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
        """Device tensors of the owners list and of calls per layer, cached per call pattern."""
        key = ("owners", device, tuple(owners))
        if key not in self._device_cache:
            index = torch.tensor(owners, dtype=torch.int64, device=device)
            calls = torch.bincount(index, minlength=len(self._names))
            self._remember(key, index)
            self._remember((*key, "calls"), calls.to(accumulator_dtype(device)))
        return self._device_cache[key], self._device_cache[(*key, "calls")]

    def _trainable_weights(self) -> list[Tensor | None]:
        """Each layer's weight when it is a trainable tensor, else None."""
        weights: list[Tensor | None] = []
        for module in self._modules:
            weight = getattr(module, "weight", None)
            trainable = isinstance(weight, Tensor) and weight.requires_grad
            weights.append(weight if trainable else None)
        return weights

    def _weight_grad_norms(self, device: torch.device, scale: Tensor | float | None) -> Measurement:
        grads = [None if weight is None else weight.grad for weight in self._trainable_weights()]
        present = [grad for grad in grads if grad is not None]
        measurement = self._scatter(norms(present), [grad is not None for grad in grads], device)
        if scale is None:
            return measurement
        return Measurement(measurement.values / scale, measurement.defined)

    def _weight_numels(self, device: torch.device) -> Tensor:
        numels = []
        for module in self._modules:
            weight = getattr(module, "weight", None)
            numels.append(weight.numel() if isinstance(weight, Tensor) else 0)
        key = ("numels", device, tuple(numels))
        if key not in self._device_cache:
            self._remember(
                key, torch.tensor(numels, dtype=accumulator_dtype(device), device=device)
            )
        return self._device_cache[key]

    def _scatter(
        self, values: Sequence[Tensor], present: list[bool], device: torch.device
    ) -> Measurement:
        """A Measurement from one 0-d tensor per present layer (NaN placeholders elsewhere)."""
        nan_key = ("nan", device)
        if nan_key not in self._device_cache:
            self._remember(
                nan_key, torch.full((), math.nan, dtype=accumulator_dtype(device), device=device)
            )
        nan = self._device_cache[nan_key]
        found = iter(values)
        stacked = torch.stack([next(found) if here else nan for here in present])
        return Measurement(stacked, self._mask(present, device))

    def _mask(self, present: list[bool], device: torch.device) -> Tensor:
        key = ("mask", device, tuple(present))
        if key not in self._device_cache:
            self._remember(key, torch.tensor(present, dtype=torch.bool, device=device))
        return self._device_cache[key]

    def _undefined(self, device: torch.device) -> Measurement:
        """All layers undefined: the placeholder for statistics known only after the step."""
        return self._scatter([], [False] * len(self._names), device)

    def _remember(self, key: tuple[Any, ...], tensor: Tensor) -> None:
        if len(self._device_cache) >= _CACHE_LIMIT:
            self._device_cache.clear()  # call patterns keep changing: do not grow without bound
        self._device_cache[key] = tensor

    def _stack(self, measurements: list[Measurement]) -> tuple[Tensor, Tensor]:
        values = torch.stack([m.values.to(torch.float32) for m in measurements], dim=1)
        defined = torch.stack([m.defined for m in measurements], dim=1)
        return values, defined  # (layers, metrics) each

    def _amp_state(self, scaler: GradScaler | None) -> tuple[Tensor | float, bool]:
        """(loss scale, whether the weight gradients still carry it) for this step."""
        if scaler is None or not scaler.is_enabled():
            return 1.0, False
        scale = scaler._get_scale_async()  # the device tensor: reading get_scale() would sync
        if scale is None:
            raise RuntimeError("record() got a GradScaler that has not scaled a loss yet")
        # GradScaler keeps a stage per optimiser; UNSCALED means unscale_() already divided the
        # .grad tensors (e.g. before clipping), so they must not be divided again.
        states = scaler._per_optimizer_states
        watched = [states[id(opt)] for opt in self._optimizers if id(opt) in states]
        candidates = watched if self._optimizers else list(states.values())
        unscaled = any(state["stage"] is OptState.UNSCALED for state in candidates)
        return scale.reshape(()).to(accumulator_dtype(scale.device)), not unscaled

    def _world_size(self) -> int:
        """Ranks whose output statistics are combined: 1 unless distributed."""
        initialised = dist.is_available() and dist.is_initialized()
        if self._distributed and not initialised:
            raise RuntimeError("distributed=True but torch.distributed is not initialised")
        if self._distributed is False or not initialised:
            return 1
        return dist.get_world_size()

    def _device(self) -> torch.device:
        for tensor in self._model.parameters():
            return tensor.device
        return torch.device("cpu")


def _create_statistics(metrics: Sequence[str]) -> list[Statistic]:
    if isinstance(metrics, str) or not metrics:
        raise InputError(
            f"metrics={metrics!r} must be a non-empty list of metric names, e.g. "
            f"{list(DEFAULT_METRICS)}"
        )
    duplicates = sorted({name for name in metrics if list(metrics).count(name) > 1})
    if duplicates:
        raise InputError(f"metrics lists {', '.join(duplicates)} twice; list each metric once")
    return [create_statistic(name) for name in metrics]


def _schedule(every: Schedule) -> Callable[[int], bool]:
    if callable(every):
        return every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError(
            f"every={every!r} must be a positive integer (record every k-th step) or a "
            "callable step -> bool"
        )
    return lambda step: step % every == 0
