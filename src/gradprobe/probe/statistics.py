"""The built-in probe statistics; their names are part of gradprobe's API.

Each is a few lines over `gradprobe.probe.base.Statistic`. Importing this module registers them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradprobe.probe.base import (
    Measurement,
    RecordContext,
    Statistic,
    check_catalog,
    register_statistic,
)
from gradprobe.probe.norms import accumulator_dtype, cpu_norm_value, norms, squared_norm


def _count(tensor: Tensor) -> Tensor:
    """numel as a 1-element tensor made on the device (a fill, not a host-to-device copy)."""
    return torch.full(
        (1,), tensor.numel(), dtype=accumulator_dtype(tensor.device), device=tensor.device
    )


def _activation_moments(tensor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(sum, sum of squares, count) of `tensor`, each shaped (1,), in the accumulator dtype.

    Only sums combine across calls and ranks. In float64 the variance sum_sq/n - mean^2 loses
    ~1e-16 * mean^2 / var of relative precision, far below anything a plot shows; on MPS
    (float32 sums) a mean much larger than the std would be less exact.
    """
    values = tensor.to(accumulator_dtype(tensor.device))  # one copy, then exact-enough sums
    total = values.sum().reshape(1)
    squares = torch.linalg.vector_norm(values).square().reshape(1)
    return total, squares, _count(tensor)


@register_statistic
class WeightGradNorm(Statistic):
    """||dL/dW||: the L2 norm of the layer's weight gradient as the optimiser sees it.

    Read from `.grad` at `record()`: after DDP's all-reduce, summed over accumulation
    micro-steps, divided by a GradScaler's scale. Undefined for a layer without a trainable
    weight or whose weight has no gradient this step.
    """

    name = "weight_grad_norm"
    source = "weight_grad"

    def compute(self, context: RecordContext) -> Measurement:
        return context.weight_grad_norms()


@register_statistic
class WeightGradRms(Statistic):
    """||dL/dW|| / sqrt(numel W): the root-mean-square weight gradient entry.

    Comparable across layers of different widths, where the norm grows with sqrt(numel).
    """

    name = "weight_grad_rms"
    source = "weight_grad"

    def compute(self, context: RecordContext) -> Measurement:
        norms = context.weight_grad_norms()
        return Measurement(norms.values / context.weight_numels.sqrt(), norms.defined)


@register_statistic
class OutputGradNorm(Statistic):
    """||dL/dy|| over the whole batch, y the layer's output: the gradient reaching the layer.

    A module called several times in one forward pass (a shared module) records the norm of
    the concatenation of its outputs' gradients, sqrt(sum of squares over calls); so do
    accumulation micro-batches (one value per optimiser step) and DDP ranks (one value for the
    global batch, identical on every rank).
    """

    name = "output_grad_norm"
    source = "output_grad"
    width = 1

    def partial(self, tensor: Tensor) -> Tensor:
        return squared_norm(tensor).reshape(1)

    def host_partial(self, tensor: Tensor) -> list[float] | None:
        # The guarded float32 pass (see probe.norms) while the gradient is still in cache.
        return [cpu_norm_value(tensor) ** 2]

    def partials(self, tensors: list[Tensor]) -> Tensor:
        # One fused pass over every held gradient (one kernel on CUDA).
        return torch.stack(norms(tensors)).square().reshape(-1, 1)

    def compute(self, context: RecordContext) -> Measurement:
        squares = context.partial_sums(self)[:, 0]
        return Measurement(
            squares.sqrt() / context.output_grad_scale, context.calls(self.source) > 0
        )


@register_statistic
class ActivationMean(Statistic):
    """Mean of the activation after the layer, over the batch and all its elements.

    "The activation after the layer" is the output of the first activation module (ReLU,
    tanh, sigmoid, ...; see `gradprobe.probe.layers.ACTIVATION_TYPES`) that runs after the layer
    and before the next probed layer in the same forward pass; a layer with none there (a
    functional F.relu) has no value, never the next layer's. A recurrent layer (nn.RNN, LSTM,
    GRU) has its own output sequence as its activation.
    """

    name = "activation_mean"
    source = "activation"
    width = 2

    def partial(self, tensor: Tensor) -> Tensor:
        total, _, count = _activation_moments(tensor)
        return torch.cat([total, count])

    def compute(self, context: RecordContext) -> Measurement:
        sums = context.partial_sums(self)  # (layers, [sum, count])
        return Measurement(sums[:, 0] / sums[:, 1], context.calls(self.source) > 0)


@register_statistic
class ActivationStd(Statistic):
    """Population standard deviation of the activation after the layer (see activation_mean).

    Saturation shows here: a sigmoid or tanh unit driven into its flat tails has a small std
    of its derivative and passes back little gradient (Glorot & Bengio 2010).
    """

    name = "activation_std"
    source = "activation"
    width = 3

    def partial(self, tensor: Tensor) -> Tensor:
        return torch.cat(_activation_moments(tensor))

    def compute(self, context: RecordContext) -> Measurement:
        sums = context.partial_sums(self)  # (layers, [sum, sum of squares, count])
        mean = sums[:, 0] / sums[:, 2]
        variance = (sums[:, 1] / sums[:, 2] - mean.square()).clamp_min(0.0)
        return Measurement(variance.sqrt(), context.calls(self.source) > 0)


@register_statistic
class DeadFraction(Statistic):
    """Share of exact zeros in the activation after the layer (see activation_mean).

    After a ReLU this is the share of units that pass no gradient for this batch. Activations
    that never output an exact zero (tanh, sigmoid, leaky ReLU) give (almost always) 0.
    """

    name = "dead_fraction"
    source = "activation"
    width = 2

    def partial(self, tensor: Tensor) -> Tensor:
        count = _count(tensor)
        # (tensor == 0).sum(): measured 5x faster than numel - count_nonzero on CPU
        zeros = (tensor == 0).sum().to(count.dtype).reshape(1)
        return torch.cat([zeros, count])

    def compute(self, context: RecordContext) -> Measurement:
        sums = context.partial_sums(self)  # (layers, [zeros, count])
        return Measurement(sums[:, 0] / sums[:, 1], context.calls(self.source) > 0)


@register_statistic
class GlobalGradNorm(Statistic):
    """||g|| over every measured parameter at once: what `clip_grad_norm_` returns for them.

    One value per step for the whole model (the table's layer "(model)"); a parameter shared
    by several probed layers counts once. Measured before any clipping, like every metric.
    """

    name = "global_grad_norm"
    source = "weight_grad"

    def compute(self, context: RecordContext) -> Measurement:
        total = context.global_grad_norm()
        layers = context.weight_numels.shape[0]
        defined = torch.zeros(layers, dtype=torch.bool, device=total.device)
        defined[0] = True  # stored once, in the first layer's cell
        return Measurement(total.expand(layers), defined)


@register_statistic
class UpdateRatio(Statistic):
    """||W_after - W_before|| / ||W_before||: the relative size of the optimiser's step.

    Needs `GradientProbe.watch_optimizer(optimizer)`. Undefined for a step the optimiser did
    not take (a GradScaler skips steps with inf/NaN gradients).
    """

    name = "update_ratio"
    source = "update"

    def compute(self, context: RecordContext) -> Measurement:
        updates, weights = context.update_norms(), context.weight_norms()
        return Measurement(updates.values / weights.values, updates.defined & weights.defined)


check_catalog()  # the catalog (gradprobe.metrics) and these classes must agree
