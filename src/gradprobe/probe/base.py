"""The interface every probe statistic implements, the context it reads, and the registry.

A statistic is a small class with one fixed lifecycle (cockpit's `quantities/`, Schneider et al.
2021): it declares the `source` it reads, may turn each tensor it is shown into a few partial
sums (`partial`), and turns what was gathered over one optimiser step into one value per layer
(`compute`). The orchestrator (`GradientProbe`) only routes tensors by `source`, sums partials
over calls, micro-batches and ranks, and stores results; it never knows which statistic it runs,
so adding one means writing a class here-like and decorating it with `register_statistic`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from gradprobe.errors import InputError
from gradprobe.metrics import Source, metric_info
from gradprobe.metrics import probe_metrics as catalog_metrics

# What a statistic reads (the catalog's `Source`):
# - "weight_grad": the layers' parameter gradients at `record()` (after backward and any DDP
#   all-reduce), through `RecordContext.weight_grad_norms()`.
# - "output_grad": dLoss/d(layer output) of every call of the layer, given to `partials` at
#   `record()` (the backward hooks only keep a reference to it).
# - "activation": the output of the first activation module (ReLU, tanh, ...) that runs after the
#   layer and before the next probed layer in the same forward pass (a recurrent layer: its own
#   output), given to `partial` in the forward pass.
# - "update": the optimiser's step, read after it through `RecordContext.update_norms()`.

TENSOR_SOURCES: tuple[Source, ...] = ("output_grad", "activation")


@dataclass(frozen=True)
class Measurement:
    """One value per probed layer, and whether it is defined for that layer at this step.

    An undefined value (a frozen layer has no weight gradient; a layer that did not run has no
    output gradient) is left out of the table; a defined NaN (a diverged run) is kept.
    """

    values: Tensor  # (layers,) floating point, on the probe's device (stored as float32)
    defined: Tensor  # (layers,) bool, same device


class RecordContext:
    """What statistics may read at one record, computed lazily and shared between them.

    Everything stays on the model's device: no `.item()`, no host synchronisation.
    """

    def __init__(
        self,
        *,
        partial_sums: dict[str, Tensor],
        calls: dict[Source, Tensor],
        weight_grad_norms: Callable[[], Measurement],
        weight_numels: Tensor,
        output_grad_scale: Tensor | float,
        global_grad_norm: Callable[[], Tensor] | None = None,
        update: tuple[Measurement, Measurement] | None = None,
    ) -> None:
        self._global_grad_norm = global_grad_norm
        self._partial_sums = partial_sums
        self._calls = calls
        self._weight_grad_norms = weight_grad_norms
        self._cached_weight_grad_norms: Measurement | None = None
        self._update = update
        self.weight_numels = weight_numels  # (layers,) float, 0 for a layer without a weight
        # Output gradients are read as autograd produced them, so they carry the loss scale
        # of a GradScaler and the world size of DDP, which averages gradients over ranks
        # (each rank's loss is 1/world of the objective the optimiser descends): divide by this.
        self.output_grad_scale = output_grad_scale

    def partial_sums(self, statistic: Statistic) -> Tensor:
        """(layers, statistic.width) sums of the statistic's partials over calls and ranks."""
        return self._partial_sums[statistic.name]

    def calls(self, source: Source) -> Tensor:
        """(layers,) count of tensors the source delivered per layer, summed over ranks."""
        return self._calls[source]

    def weight_grad_norms(self) -> Measurement:
        """L2 norm of each layer's weight `.grad`, unscaled; undefined where there is none."""
        if self._cached_weight_grad_norms is None:
            self._cached_weight_grad_norms = self._weight_grad_norms()
        return self._cached_weight_grad_norms

    def global_grad_norm(self) -> Tensor:
        """0-d: the L2 norm of every measured parameter's gradient together (each counted once)."""
        if self._global_grad_norm is None:
            raise RuntimeError("the global gradient norm exists only at record()")
        return self._global_grad_norm()

    def update_norms(self) -> Measurement:
        """||W_after - W_before|| per layer for the optimiser step just taken."""
        return self._require_update()[0]

    def weight_norms(self) -> Measurement:
        """||W_before|| per layer, the weight the optimiser step was applied to."""
        return self._require_update()[1]

    def _require_update(self) -> tuple[Measurement, Measurement]:
        if self._update is None:
            raise RuntimeError("update norms exist only for statistics whose source is 'update'")
        return self._update


class Statistic(ABC):
    """A per-layer quantity the probe can record; see the module docstring for the lifecycle."""

    name: ClassVar[str]  # the metric name in the tidy table (part of the API)
    source: ClassVar[Source]  # what it reads
    width: ClassVar[int] = 0  # partial sums per call, for tensor sources

    def partial(self, tensor: Tensor) -> Tensor:
        """(width,) partial sums of one tensor from `source`, in `norms.accumulator_dtype`.

        Only sums combine over calls, micro-batches and ranks, so a mean is returned as
        (sum, count) and divided in `compute`. `tensor` is detached.
        """
        raise NotImplementedError(f"{type(self).__name__} reads {self.source!r}, not tensors")

    def host_partial(self, tensor: Tensor) -> list[float] | None:
        """Optional: the partial sums of a CPU tensor as Python floats (None: not offered).

        Outside torch.compile, CPU hooks use it: reading a CPU value is not a device
        synchronisation, and Python floats spare the tensor bookkeeping of small models.
        """
        return None

    def partials(self, tensors: list[Tensor]) -> Tensor:
        """(len(tensors), width) partial sums of several tensors at once (override to fuse).

        Output gradients reach statistics through this, at `record()`, outside the backward
        hooks; so it may read values on the host (unlike `partial` under torch.compile).
        """
        return torch.stack([self.partial(tensor) for tensor in tensors])

    @abstractmethod
    def compute(self, context: RecordContext) -> Measurement:
        """The statistic's value for every probed layer at this record."""


_REGISTRY: dict[str, type[Statistic]] = {}

StatisticType = TypeVar("StatisticType", bound=type[Statistic])


def register_statistic(cls: StatisticType) -> StatisticType:
    """Class decorator adding a statistic under `cls.name`; a taken name raises ValueError."""
    if cls.name in _REGISTRY:
        raise ValueError(
            f"a statistic named {cls.name!r} is already registered "
            f"({_REGISTRY[cls.name].__module__}); choose another name"
        )
    if cls.source in TENSOR_SOURCES and cls.width < 1:
        raise ValueError(f"{cls.__name__} reads tensors from {cls.source!r}: give it a width >= 1")
    _REGISTRY[cls.name] = cls
    return cls


def list_metrics() -> list[str]:
    """Every metric the probe can record: the catalog's, in its order, then user-registered."""
    built_in = catalog_metrics()
    return built_in + sorted(name for name in _REGISTRY if name not in built_in)


def check_catalog() -> None:
    """Fail at import unless every catalog metric has a registered statistic of its source."""
    for name in catalog_metrics():
        info = metric_info(name)
        statistic = _REGISTRY.get(name)
        if statistic is None or statistic.source != info.source:
            raise RuntimeError(
                f"gradprobe.metrics lists {name!r} (source {info.source!r}) but the probe "
                f"registers {statistic and statistic.source!r}: keep the two in step"
            )


def create_statistic(name: str) -> Statistic:
    """A fresh instance of the statistic registered as `name`."""
    if name not in _REGISTRY:
        raise InputError(f"unknown probe metric {name!r}; choose from {', '.join(list_metrics())}")
    return _REGISTRY[name]()
