"""The probe's hooks and what they hand over during one optimiser step.

The hooks do as little as possible, and nothing that reads a value on the host or branches on
one, so that they trace into a torch.compile graph without a break:
- a layer's forward hook notes its depth and registers a tensor hook on its output;
- that tensor hook, on an accelerator, keeps a reference to the output gradient (no arithmetic):
  `record()` reduces every kept gradient in one fused pass (`Statistic.partials`, one kernel on
  CUDA). A second gradient for the same layer in the same step (a shared module, an
  accumulation micro-batch) is reduced at once with `Statistic.partial`, so memory does not
  grow with the number of calls. On a CPU the hook reduces the gradient at once, while it is
  in cache, to Python floats (`Statistic.host_partial`, which reads the CPU value it guards
  precision with: no device to synchronise with); holding CPU gradients until `record()`
  measured slower (their memory is freed and faulted in again each step);
- activation hooks reduce the activation after a layer to partial sums (`Statistic.partial`):
  the output of the first activation module that runs after the layer and before any other
  probed layer. A layer that another probed layer follows first gets none (it is named in
  `no_activation` and warned about), never the next layer's. A recurrent layer's output is
  already its activation (tanh of its state), so its own output is measured.
While `armed` is False (a step the schedule does not record) the hooks return at once.

Under torch.compile a tensor hook on an intermediate output is traced into the graph, and
dynamo graph-breaks on any Python side effect in it (appending to a list). So while compiling,
the forward hook registers a hook that adds the branch-free `Statistic.partial` of the gradient
into a preallocated device tensor in place (`grad_sums`), which traces cleanly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gradprobe.probe.base import TENSOR_SOURCES, Source, Statistic
from gradprobe.probe.norms import accumulator_dtype


def first_tensor(output: Any) -> Tensor | None:
    """The module's output tensor: itself, or the first tensor of a tuple/list output."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    return None


class Collector:
    """Hook callbacks and the tensors/partials they gathered since the step began."""

    def __init__(
        self, model: nn.Module, layers: int, by_source: dict[Source, list[Statistic]],
        recurrent: frozenset[int] = frozenset(),
    ) -> None:
        self._model = model
        self._recurrent = recurrent  # layers whose own output is their activation
        self._by_source = by_source
        self.layers = layers
        self.enabled = False  # attached
        self.armed = True  # the coming step is recorded
        self.depths = [-1] * layers
        self.hooks_fired = False  # a forward hook ran since attach (even in eval mode)
        self.forward_seen = False  # a probed layer ran in a training forward since attach
        self.ran_this_step = False
        self.no_tensor_output: set[int] = set()
        self.no_activation: set[int] = set()  # layers another probed layer followed first
        self.held: list[Tensor] = []  # output gradients of the step, one per (layer, 1st call)
        self.held_owners: list[int] = []
        self.host_sums: dict[int, list[float]] = {}  # layer -> output-grad sums + calls (CPU)
        self._held_layers: set[int] = set()
        self.partials: dict[Source, list[Tensor]] = {source: [] for source in TENSOR_SOURCES}
        self.owners: dict[Source, list[int]] = {source: [] for source in TENSOR_SOURCES}
        self._awaiting_activation: list[int] = []
        # Eager only: called at the first output gradient after each forward pass, before this
        # pass reaches the parameters (the probe checks there for a manual update's end of step).
        self.on_backward_start: Callable[[], None] | None = None
        self._backward_checked = True
        self._activation_mark = 0  # activation partials gathered before this forward pass
        self._grad_hooks = [functools.partial(self.on_output_grad, i) for i in range(layers)]
        self._sum_hooks = [functools.partial(self.on_output_grad_summed, i) for i in range(layers)]
        width = sum(stat.width for stat in by_source["output_grad"])
        self._width = width
        self.grad_sums = torch.zeros(layers, width + 1, dtype=torch.float64)  # + call count

    def place(self, device: torch.device) -> None:
        """Keep the in-graph accumulator on the model's device (a new tensor only on a move)."""
        if self.grad_sums.device != device:
            self.grad_sums = torch.zeros(
                self.layers, self._width + 1, dtype=accumulator_dtype(device), device=device
            )

    def clear(self) -> None:
        """Forget everything gathered: a new optimiser step begins."""
        self.held.clear()
        self.held_owners.clear()
        self.host_sums.clear()
        self._held_layers.clear()
        for source in TENSOR_SOURCES:
            self.partials[source].clear()
            self.owners[source].clear()
        self._awaiting_activation.clear()
        self.ran_this_step = False

    def forward_started(self) -> None:
        """A forward pass begins (eager): check again at its backward's first gradient."""
        self._backward_checked = False
        self._activation_mark = len(self.partials["activation"])

    def drop_earlier_passes(self) -> None:
        """A step ended between this pass's forward and its backward: forget the output
        gradients of earlier passes and the activations of earlier forward passes."""
        self.held.clear()
        self.held_owners.clear()
        self.host_sums.clear()
        self._held_layers.clear()
        self.partials["output_grad"].clear()
        self.owners["output_grad"].clear()
        self.grad_sums.zero_()
        mark = self._activation_mark
        del self.partials["activation"][:mark], self.owners["activation"][:mark]
        self._activation_mark = 0

    # ------------------------------------------------------------------------------ hooks
    def _active(self) -> bool:
        return self.enabled and self._model.training and torch.is_grad_enabled()

    def on_layer_output(self, indices: Sequence[int], _m: nn.Module, _i: Any, output: Any) -> None:
        """Forward hook of a probed layer (or of the module whose output is the layer's)."""
        self.hooks_fired = True  # in any mode: compiled code that ignores hooks never gets here
        if not self._active():
            return
        self.forward_seen = True
        self.ran_this_step = True
        for index in indices:
            if self.depths[index] < 0:  # first run: forward-execution order defines depth
                self.depths[index] = max(self.depths) + 1
        if not self.armed:
            return
        tensor = first_tensor(output)
        if tensor is None:
            self.no_tensor_output.update(indices)
            return
        if self._by_source["activation"]:
            self._await_activation(indices, tensor)
        if self._by_source["output_grad"] and tensor.requires_grad:
            hooks = self._sum_hooks if torch.compiler.is_compiling() else self._grad_hooks
            for index in indices:
                tensor.register_hook(hooks[index])

    def _await_activation(self, indices: Sequence[int], tensor: Tensor) -> None:
        """A probed layer ran: layers still waiting for an activation get none (the next
        activation belongs to this layer), and this one waits for its own."""
        # In-place list updates only: dynamo replays them in order (a reassigned attribute
        # was read stale by the next hook under torch.compile).
        awaiting = self._awaiting_activation
        self.no_activation.update([i for i in awaiting if i not in indices])
        awaiting.clear()
        awaiting.extend([i for i in indices if i not in self._recurrent])
        recurrent = tuple(i for i in indices if i in self._recurrent)
        if recurrent:
            self.add_partials("activation", recurrent, tensor.detach())

    def on_output_grad(self, index: int, grad: Tensor) -> None:
        if not self._backward_checked and self.enabled:
            self._backward_checked = True
            if self.on_backward_start is not None:
                self.on_backward_start()  # may end the step and re-arm
        if not (self.enabled and self.armed):  # a graph built before detach() may still run
            return
        if grad.device.type == "cpu" and self._host_partials(index, grad.detach()):
            return  # reduced while hot: holding CPU memory costs more than it saves
        if index in self._held_layers:
            self.add_partials("output_grad", (index,), grad.detach())
        else:
            self._held_layers.add(index)
            self.held.append(grad.detach())
            self.held_owners.append(index)

    def on_output_grad_summed(self, index: int, grad: Tensor) -> None:
        """The tensor hook registered under torch.compile: tensor arithmetic only."""
        if not (self.enabled and self.armed):
            return
        parts = [stat.partial(grad.detach()) for stat in self._by_source["output_grad"]]
        partial = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.grad_sums[index, : self._width].add_(partial.to(self.grad_sums.dtype))
        self.grad_sums[index, self._width].add_(1.0)

    def _host_partials(self, index: int, grad: Tensor) -> bool:
        """Add the output-grad statistics' host partials to `host_sums`; False if unsupported."""
        values: list[float] = []
        for stat in self._by_source["output_grad"]:
            part = stat.host_partial(grad)
            if part is None:
                return False
            values += part
        sums = self.host_sums.setdefault(index, [0.0] * (self._width + 1))
        for column, value in enumerate(values):
            sums[column] += value
        sums[-1] += 1.0
        return True

    def on_forward_start(self, _m: nn.Module, _i: Any) -> None:
        self._awaiting_activation.clear()  # the last layers of the previous pass have no successor

    def on_activation(self, _m: nn.Module, _i: Any, output: Any) -> None:
        owners = list(self._awaiting_activation)
        self._awaiting_activation.clear()
        if owners and isinstance(output, Tensor) and self._active() and self.armed:
            self.add_partials("activation", owners, output.detach())

    def add_partials(self, source: Source, owners: Sequence[int], tensor: Tensor) -> None:
        parts = [stat.partial(tensor) for stat in self._by_source[source]]
        partial = parts[0] if len(parts) == 1 else torch.cat(parts)  # (source width,)
        for owner in owners:
            self.partials[source].append(partial)
            self.owners[source].append(owner)

    # ---------------------------------------------------------------------------- reduce
    def blocks(self, device: torch.device) -> list[tuple[Source, Tensor]]:
        """Per tensor source in use: (layers, width + 1) sums, the last column the call count."""
        dtype = accumulator_dtype(device)
        result: list[tuple[Source, Tensor]] = []
        for source in TENSOR_SOURCES:
            stats = self._by_source[source]
            if not stats:
                continue
            width = sum(stat.width for stat in stats)
            rows: list[Tensor] = []
            owners: list[int] = []
            if source == "output_grad" and self.held:
                fused = [stat.partials(self.held).to(dtype) for stat in stats]
                rows.append(fused[0] if len(fused) == 1 else torch.cat(fused, dim=1))
                owners.extend(self.held_owners)
            if self.partials[source]:
                rows.append(torch.stack(self.partials[source]).to(dtype))
                owners.extend(self.owners[source])
            block = torch.zeros(self.layers, width + 1, dtype=dtype, device=device)
            if source == "output_grad":
                block += self.grad_sums.to(device, dtype)  # what compiled hooks summed
                self.grad_sums.zero_()
                if self.host_sums:
                    layers = list(self.host_sums)
                    sums = torch.tensor([self.host_sums[layer] for layer in layers], dtype=dtype)
                    block[layers] += sums.to(device)
            if rows:
                index = torch.tensor(owners, dtype=torch.int64).to(device)
                ones = torch.ones(len(owners), 1, dtype=dtype, device=device)
                block.index_add_(0, index, torch.cat([torch.cat(rows), ones], dim=1))
            result.append((source, block))
        self.clear()
        return result
