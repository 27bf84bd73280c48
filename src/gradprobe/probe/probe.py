"""`GradientProbe`: per-layer gradient statistics on any `nn.Module`, recorded on the device.

Usage: call `record()` after backward (after all accumulation micro-steps) and before gradient
clipping and the optimiser step (Lightning's `on_before_optimizer_step`):

    probe = GradientProbe(model)              # DEFAULT_LAYER_TYPES, or model.probe_points
    model = torch.compile(model)              # optional: attach first, or pass the compiled one
    with probe:                               # attach() ... detach()
        for images, labels in loader:
            loss = criterion(model(images), labels)
            scaler.scale(loss).backward()     # or loss.backward(), once per micro-batch
            probe.record(scaler=scaler)       # counts steps; or record(step, epoch)
            scaler.unscale_(optimizer); clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer); scaler.update(); optimizer.zero_grad()
        probe.flush()                         # once per epoch: one device-to-host copy
    frame = probe.to_frame()                  # step, epoch, layer, depth, kind, metric, value
    probe.summary()                           # the report's numbers: ratio, decay, verdict

Long runs: `GradientProbe(model, stream_to="history.parquet")` writes rows to disk at every
flush (and every `rows_per_flush` rows), so memory stays flat; see `gradprobe.probe.stream`.

How it measures: a forward hook registers a tensor hook on each layer's output (not
`register_full_backward_hook`, which fails on outputs later modified in place, e.g.
`ReLU(inplace=True)`); the hooks only keep references (`gradprobe.probe.hooks`). `record()`
reduces them in one fused, precision-guarded pass, all-reduces across DDP ranks, reads parameter
gradients with one `torch._foreach_norm` and copies one (layers, metrics) row into a device
buffer: no host synchronisation on an accelerator until `flush()`. Any optimiser step on the
model's parameters ends the step and drops what `record()` did not consume, so recording every N
steps reports the step recorded, not a sum over N; without a torch optimiser, a manual update
(parameters changed in place, gradients reset or zeroed) seen at the next pass ends it
(`gradprobe.probe.steps`). Nothing happens in eval mode, with gradients
disabled, or on a step the schedule skips. update_ratio: `gradprobe.probe.update`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.amp.grad_scaler import GradScaler
from torch.optim import Optimizer
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.hooks import RemovableHandle

from gradprobe.errors import InputError
from gradprobe.metrics import default_metrics, metric_info
from gradprobe.probe import wiring
from gradprobe.probe.base import Measurement, RecordContext, Source, Statistic
from gradprobe.probe.constants import DeviceConstants
from gradprobe.probe.frame import LayerTable, tidy_frame
from gradprobe.probe.history import History, stack_row
from gradprobe.probe.hooks import Collector
from gradprobe.probe.layers import (
    LayerInfo,
    LayerSelector,
    select_layers,
    unprobed_weighted_modules,
    unwrap,
)
from gradprobe.probe.params import LayerParameters, ParameterChoice, measured_parameters
from gradprobe.probe.steps import StepTracker, pooled_message
from gradprobe.probe.stream import StreamFiles
from gradprobe.probe.update import UpdateWatcher
from gradprobe.probe.wiring import Schedule

if TYPE_CHECKING:
    from gradprobe.analysis.summary import RunAnalysis

DEFAULT_METRICS = default_metrics()
STATE_FORMAT = 1  # version of `state_dict()`'s layout


class GradientProbe:
    """Records per-layer gradient statistics of `model` at each scheduled optimiser step.

    `layers`: None (the model's `probe_points` when it declares them, else every module of
    `DEFAULT_LAYER_TYPES`: Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear, RNN/LSTM/GRU,
    MultiheadAttention), "all" (every module with a trainable parameter of its own, adding
    Embedding, LayerNorm, BatchNorm and custom modules), module types, module names, or a
    predicate `(name, module) -> bool`. With the default selection every other module with a
    trainable parameter of its own is named in one warning that says how to include it.
    `metrics`: names from `list_metrics()`. `every`: record steps divisible by k, or a callable
    `step -> bool`; on other steps the hooks do no work. `parameters`: "weights" (each layer's
    weight, or its parameters named like one: attention's `in_proj_weight`, a recurrent layer's
    `weight_ih_l*`/`weight_hh_l*` of every layer and direction together) or "all" (biases and
    every other direct parameter too). `distributed`: all-reduce output statistics over the
    default process group; None = when torch.distributed is initialised with several ranks.
    `stream_to`: a Parquet path the history streams to (see `stream_to()`).

    Semantics worth knowing:
    - A module called several times in one forward pass (shared weights) has one row per
      metric: output statistics are pooled over its calls (output_grad_norm is the norm of the
      concatenated gradients, sqrt of the summed squares), and its weight gradient is the one
      autograd accumulated. Its depth is that of its first call.
    - A module returning a tuple is measured on its first tensor (nn.MultiheadAttention's
      attention output; an nn.RNN/LSTM/GRU's output sequence, all time steps and both
      directions, not its final states h_n/c_n); an attention's `out_proj`, which its parent
      applies functionally, gets its output gradient from that same tensor.
    - Activation metrics read the output of the first activation module (nn.ReLU, nn.Tanh, ...)
      that runs after the layer and before the next probed layer; a layer without one (a
      functional F.relu, or none) has no activation metrics and is named in a warning, never
      given another layer's. A recurrent layer's own output sequence is its activation.
    - Steps: a torch optimiser's step on the model's parameters ends a step. Without one (a
      manual update loop), a parameter changed in place or a gradient reset or zeroed between
      two backward passes ends it, seen at the next forward pass or its backward, so
      `record()` every k-th step reports that step with its number. Backward passes with
      none of these in between are gradient accumulation: pooled, and warned about if no
      optimiser ever steps.
    - A selected layer that yields no metric (no measured parameter, never called, no tensor
      output) is named in a warning, once.
    - torch.compile: attach before or after compiling, or pass the compiled module: the same
      numbers as eager, no graph break. Attaching when code was already compiled resets
      torch.compile's caches (compiled code ignores hooks added later) and warns once.
    - Under DDP (pass the wrapped or the inner model: names are the inner model's), every rank
      must call `record()` at the same steps, because it all-reduces the output statistics.
      Output gradients are divided by the world size, as DDP divides weight gradients.
    - The hooks are idle while the model (its root module) is in eval mode or gradients are
      disabled. The model is assumed to be on one device.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSelector = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        every: Schedule = 1,
        *,
        parameters: ParameterChoice = "weights",
        distributed: bool | None = None,
        stream_to: str | Path | None = None,
    ) -> None:
        self._model = unwrap(model)
        selected = select_layers(self._model, layers)
        # Only the default selection names what it leaves out: a model's probe_points and an
        # explicit `layers` are deliberate choices.
        declared = layers is None and hasattr(self._model, "probe_points")
        self._unprobed = ([] if layers is not None or declared
                          else unprobed_weighted_modules(self._model, selected))
        self._names = [layer.name for layer in selected]
        self._kinds = [layer.kind for layer in selected]
        self._modules = [layer.module for layer in selected]
        self._parameters = parameters
        self._params = LayerParameters(
            [measured_parameters(module, parameters) for module in self._modules]
        )
        self._statistics = wiring.create_statistics(metrics)
        self._by_source: dict[Source, list[Statistic]] = {
            source: [stat for stat in self._statistics if stat.source == source]
            for source in ("weight_grad", "output_grad", "activation", "update")
        }
        self._per_layer = [metric_info(s.name).per_layer if wiring.known_metric(s.name) else True
                           for s in self._statistics]
        self._should_record = wiring.schedule(every)
        self._distributed = distributed
        self._history = History(len(selected), len(self._statistics))
        recurrent = frozenset(i for i, module in enumerate(self._modules)
                              if isinstance(module, nn.RNNBase))
        self._collector = Collector(self._model, len(selected), self._by_source, recurrent)
        self._collector.on_backward_start = self._on_backward_start
        self.epoch = 0  # the epoch `record()` uses when given none

        self._attached = False
        self._handles: list[RemovableHandle] = []
        self._optimizers: list[Optimizer] = []
        self._optimizer_steps = 0  # optimiser steps seen on the model's parameters
        self._manual_steps = 0  # steps ended by a manual update (no torch optimiser)
        self._steps = StepTracker(
            self._params.params,
            grads_written_after_backward=isinstance(model, nn.parallel.DistributedDataParallel),
        )
        self._step_handles: list[RemovableHandle] = []
        self._pooled: list[int] = []  # recorded steps that pooled several backward passes
        self._pooled_passes = 0  # how many, at the first of them
        self._eager_forward = False  # the forward-start check ran (not compiled code)
        self._param_ids = {id(param) for param in self._model.parameters()}
        self._last_step: int | None = None  # the step of the last record() call
        self._constants = DeviceConstants(self._params.numels)
        self._updates = UpdateWatcher(self._params, self._statistics, self._history,
                                      self._constants, self._device)
        self._warned: set[str] = set()
        self._files = StreamFiles()  # the history's rows streamed to disk
        if stream_to is not None:
            self.stream_to(stream_to)

    # ---------------------------------------------------------------------------- lifecycle
    def attach(self) -> GradientProbe:
        """Register the hooks (idempotent)."""
        if self._attached:
            return self
        collector = self._collector
        wiring.forget_compiled_code(self._warn)
        self._handles += wiring.layer_hooks(self._model, self._modules, collector,
                                            bool(self._by_source["activation"]))
        self._handles.append(register_optimizer_step_post_hook(self._on_any_optimizer_step))
        self._attached = collector.enabled = True
        collector.place(self._device())
        collector.armed = self._should_record(self._expected_step())
        for optimizer in self._optimizers:
            self._handles += self._updates.hook(optimizer)
        self._handles.append(self._model.register_forward_pre_hook(self._on_forward_start))
        if not self._optimizers and not self._optimizer_steps:
            self._step_handles = self._steps.hook()
        wiring.warn_parameterless(self._names, self._modules, self._params.empty,
                                  self._by_source, self._warn)
        measured_by = {id(param): name for name, module in zip(self._names, self._modules,
                                                              strict=True)
                       for param in measured_parameters(module, self._parameters)}
        wiring.warn_unprobed(self._unprobed, measured_by, self._warn)
        return self

    def detach(self) -> None:
        """Remove every hook this probe registered and drop partial sums not yet recorded;
        finish the stream, if any (`finish_stream`)."""
        self._warn_pooled()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stop_tracking_steps()
        self._attached = self._collector.enabled = False
        self._collector.clear()
        self._updates.drop()
        self.finish_stream()

    def __enter__(self) -> GradientProbe:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def watch_optimizer(
        self, optimizer: Optimizer, *, record: bool = False, scaler: GradScaler | None = None
    ) -> GradientProbe:
        """Follow `optimizer`'s steps: needed for update_ratio, and tells GradScaler's state.

        `record=True` (recording from the optimiser's step hook) was removed: that point comes
        after gradient clipping, so it reported clipped norms. Call `record()` before clipping.
        """
        if record or scaler is not None:
            raise InputError(
                "watch_optimizer(record=True) was removed: the optimiser's step comes after "
                "clip_grad_norm_, so it recorded clipped gradients. Call probe.record(scaler=...) "
                "after backward and before clipping instead"
            )
        if any(watched is optimizer for watched in self._optimizers):
            raise InputError("this optimizer is already watched by the probe; watch it once")
        self._optimizers.append(optimizer)
        self._stop_tracking_steps()  # its steps end the steps
        if self._attached:
            self._handles += self._updates.hook(optimizer)
        return self

    # ------------------------------------------------------------------------------ reading
    @property
    def layers(self) -> list[LayerInfo]:
        """The probed layers in selection order, depth -1 until a layer first runs."""
        return [
            LayerInfo(*info)
            for info in zip(self._names, self._kinds, self._collector.depths, strict=True)
        ]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The recorded metric names, in column order."""
        return tuple(stat.name for stat in self._statistics)

    def record(
        self, step: int | None = None, epoch: int | None = None, *,
        scaler: GradScaler | None = None,
    ) -> bool:
        """Record the current step's statistics if the schedule says so; whether it did.

        Call after backward (after all accumulation micro-steps) and before gradient clipping
        and the optimiser step. `step` defaults to the number of optimiser steps taken on the
        model so far (or the last recorded step + 1), `epoch` to `probe.epoch`. Pass the
        GradScaler in use so values are reported unscaled. What the hooks gathered since the
        step began is consumed either way.
        """
        if not self._attached:
            raise RuntimeError("attach the probe (probe.attach() or `with probe:`) before record()")
        if self._by_source["update"] and not self._optimizers:
            names = ", ".join(stat.name for stat in self._by_source["update"])
            raise InputError(
                f"{names} measures the optimiser's step: call "
                "probe.watch_optimizer(optimizer) before recording"
            )
        step = self._expected_step() if step is None else int(step)
        epoch = self.epoch if epoch is None else int(epoch)
        # An update still pending belongs to a step the optimiser skipped (GradScaler found
        # inf/NaN gradients): it stays undefined rather than taking the next step's update.
        self._updates.drop()
        should_record = self._should_record(step)
        last = self._history.last_step
        collector = self._collector
        if should_record and last is not None and step <= last:
            collector.clear()
            raise ValueError(
                f"step {step} is not after the last recorded step {last}; record each step once, "
                f"in order (when resuming from an older checkpoint, call "
                f"truncate_after({step - 1}) first)"
            )
        armed = collector.armed
        self._last_step = step
        self._check_pooled(step, should_record)
        if not should_record:
            self._end_step()
            return False
        self._check_hooks_ran(armed, step)
        device = self._device()
        amp_scale, weight_grads_scaled = wiring.amp_state(scaler, self._optimizers)
        partial_sums, calls = wiring.reduce_partials(self._collector, self._by_source,
                                                    self._distributed, device)
        memo: list[tuple[Measurement, Tensor]] = []

        def grad_norms() -> tuple[Measurement, Tensor]:  # computed once, if a statistic asks
            if not memo:
                memo.append(self._params.layer_norms(self._params.grads(), device))
            return memo[0]

        unscale = amp_scale if weight_grads_scaled else 1.0
        context = RecordContext(
            partial_sums=partial_sums,
            calls=calls,
            weight_grad_norms=lambda: wiring.divide(grad_norms()[0], unscale),
            weight_numels=self._constants.weight_numels(device),
            output_grad_scale=amp_scale * wiring.world_size(self._distributed),
            global_grad_norm=lambda: grad_norms()[1] / unscale,
        )
        undefined = self._constants.undefined(device)
        measurements = [
            undefined if stat.source == "update" else stat.compute(context)
            for stat in self._statistics
        ]
        row = self._history.append(step, epoch, *stack_row(measurements))
        self._updates.pending_row = row if self._by_source["update"] else None
        self._end_step()
        return True

    def flush(self) -> None:
        """Move recorded rows from the device to host memory (synchronises the device); when
        streaming, write them to disk and drop them from memory."""
        # A row still awaiting its update_ratio stays on the device.
        self._history.flush(hold_from=self._updates.pending_row)

    def to_frame(self) -> pd.DataFrame:
        """The tidy table: step, epoch, layer, depth, kind, metric, value; one row per value.

        Rows are ordered by step, then depth, then metric column; undefined values are left
        out (a frozen layer has no weight_grad_norm), defined NaN/inf values are kept. When
        streaming, the rows already on disk are read back first.
        """
        frame = self._tidy(*self._history.host_arrays())
        on_disk = self._files.read()
        return pd.concat([*on_disk, frame], ignore_index=True) if on_disk else frame

    def summary(self, metric: str = "weight_grad_norm", *, name: str = "probe") -> RunAnalysis:
        """The report's numbers for this history (`gradprobe.analysis.summarize_frame`): the
        first-to-last ratio, decay per layer and verdict at the first and last epochs."""
        from gradprobe.analysis.summary import summarize_frame  # lazy: pandas analysis, plots

        return summarize_frame(self.to_frame(), metric, name=name)

    def stream_to(self, path: str | Path, rows_per_flush: int = 1000) -> None:
        """Stream the history to the Parquet file `path`: every flush (and every
        `rows_per_flush` rows) writes the rows held in memory to disk and drops them. The file is
        complete after `finish_stream()` or `detach()`; until then, and after a crash, the rows
        are in `<path>.parts/` (see `gradprobe.probe.stream`)."""
        if rows_per_flush < 1:
            raise InputError(f"rows_per_flush must be at least 1, got {rows_per_flush}")
        self.finish_stream()
        stream = self._files.start(path)
        self._history.stream(lambda *rows: stream.write(self._tidy(*rows)), rows_per_flush)

    def finish_stream(self) -> Path | None:
        """Complete the stream's file with the rest of the history; its path (None when not
        streaming). Rows recorded later stay in memory."""
        if self._files.current is not None:
            self._history.flush()
            self._history.stream(None)
        return self._files.finish()

    def _tidy(self, steps: list[int], epochs: list[int], values: Tensor,
              defined: Tensor) -> pd.DataFrame:
        table = LayerTable(self._names, self._kinds, self.metrics, self._per_layer)
        return tidy_frame(table, self._collector.depths, steps, epochs, values, defined)

    def state_dict(self) -> dict[str, Any]:
        """The history held in memory (not rows streamed to disk) and layer depths, loadable
        with `torch.load(weights_only=True)`."""
        self._files.refuse_while_streaming("state_dict")
        return {
            "format": STATE_FORMAT,
            "layers": list(self._names),
            "metrics": list(self.metrics),
            "depths": list(self._collector.depths),
            "last_step": -1 if self._last_step is None else self._last_step,
            "history": self._history.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a resumed run's history; recording continues after its last step."""
        self._files.refuse_while_streaming("load_state_dict")
        wiring.check_resumable(state, STATE_FORMAT, self._names, list(self.metrics))
        self._history.load_state_dict(state["history"])
        self._collector.depths = [int(depth) for depth in state["depths"]]
        self._last_step = None if state["last_step"] < 0 else int(state["last_step"])
        self._end_step()
        self._updates.drop()

    def truncate_after(self, step: int) -> None:
        """Drop recorded rows after `step` (resuming from a checkpoint older than the history)."""
        self._history.truncate_after(step)
        if self._last_step is not None and self._last_step > step:
            self._last_step = step
        self._updates.drop()

    # ------------------------------------------------------------------------ step handling
    def _expected_step(self) -> int:
        """The step the next `record()` without arguments gets."""
        after_last = 0 if self._last_step is None else self._last_step + 1
        return max(after_last, self._optimizer_steps + self._manual_steps)

    def _end_step(self) -> None:
        """Drop what the hooks gathered and arm them for the next step if it is recorded."""
        self._collector.clear()
        self._collector.grad_sums.zero_()
        self._collector.armed = self._should_record(self._expected_step())

    def _on_any_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        # Any optimiser stepping this model's parameters ends the step: partial sums that no
        # record() consumed belong to it, not to the next one.
        if any(id(p) in self._param_ids for group in optimizer.param_groups
               for p in group["params"][:1]):
            self._optimizer_steps += 1
            self._stop_tracking_steps()  # the optimiser's steps end the steps from now on
            self._pooled.clear()  # those were accumulation micro-batches
            self._end_step()

    def _on_forward_start(self, _module: nn.Module, _args: Any) -> None:
        # A manual update loop: the weights or gradients changed since the last backward, so
        # a step ended without an optimiser; what no record() consumed belongs to it.
        if torch.compiler.is_compiling() or not self._steps.active:
            return
        self._eager_forward = True
        if self._steps.step_ended():
            self._steps.reset()
            self._manual_steps += 1
            self._end_step()
        self._collector.forward_started()

    def _on_backward_start(self) -> None:
        # The same check where zero_grad() comes after the forward pass, before backward:
        # only this pass's activations and none of its output gradients are gathered yet.
        if self._steps.active and self._steps.step_ended():
            self._steps.reset()
            self._manual_steps += 1
            self._collector.drop_earlier_passes()
            self._collector.armed = self._should_record(self._expected_step())

    def _stop_tracking_steps(self) -> None:
        for handle in self._step_handles:
            handle.remove()
        self._step_handles.clear()
        self._steps.active = False
        self._steps.reset()

    def _check_pooled(self, step: int, should_record: bool) -> None:
        """Note a recorded step that pooled several backward passes without an optimiser; warn
        once no optimiser step followed (then they were not accumulation micro-batches)."""
        passes = self._steps.passes_since_record()
        self._steps.recorded()
        self._warn_pooled()
        if should_record and passes > 1 and self._steps.active:
            if not self._pooled:
                self._pooled_passes = passes
            self._pooled.append(step)

    def _warn_pooled(self) -> None:
        if not self._pooled or self._optimizer_steps:
            return
        self._warn("pooled", pooled_message(self._pooled[0], self._pooled_passes,
                                            compiled=not self._eager_forward))
        self._pooled.clear()

    def _check_hooks_ran(self, armed: bool, step: int) -> None:
        # Only needed (and only computed) when no hook has ever fired.
        grads = not self._collector.hooks_fired and any(
            grad is not None for grad in self._params.grads()
        )
        wiring.check_hooks_ran(self._collector, self._names, self._by_source, grads, armed,
                               step, self._expected_step(), self._warn)
        if self._by_source["activation"]:
            wiring.warn_no_activation(self._names, self._collector.no_activation, self._warn)

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _device(self) -> torch.device:
        for tensor in self._model.parameters():
            return tensor.device
        return torch.device("cpu")


