"""The metric catalog: every per-layer metric gradprobe can record, in one torch-free table.

The probe's statistics, the trainer, the TensorBoard writer, the CLI's `--metric` choices and the
report all read this table; none of them tests a metric by its name. Adding a metric means adding
one `MetricInfo` here and one `Statistic` class in `gradprobe.probe.statistics` (the probe checks
at import that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gradprobe.errors import InputError

# The layer name under which a whole-model metric (per_layer=False) appears in tables.
MODEL_LAYER = "(model)"

# What a metric reads: a parameter's gradient, the gradient reaching a module's output, the
# activation after a layer, or the optimiser's step (needs the optimiser to be watched);
# "weights": the trainer records it once per epoch; a GradientProbe never does.
Source = Literal["weight_grad", "output_grad", "activation", "update", "weights"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, for everything that records, stores, fits or draws it."""

    name: str  # the API name, a column value in gradients.parquet
    label: str  # human words for axes, tables and sentences
    unit: str  # what the number is measured in ("" for a pure ratio or share)
    source: Source  # what the probe must observe to compute it
    log_scale: bool  # strictly positive magnitudes spanning decades: draw and fit on log10
    default: bool = False  # recorded unless the user chooses metrics
    description: str = ""  # one sentence for --help and the report's methods
    per_layer: bool = True  # False: one value per step for the whole model (layer "(model)")
    # Recorded by a training run (`gradprobe train`, every study) unless the user chooses
    # metrics, but not by a bare GradientProbe: they explain why a run failed (dead units,
    # saturation, oversized steps), at a cost measured in the README's Benchmarks section.
    diagnostic: bool = False

    @property
    def needs_optimizer(self) -> bool:
        """True when the probe must watch the optimiser's step to compute it."""
        return self.source == "update"

    @property
    def gradient_size(self) -> bool:
        """A gradient-size metric: the analysis fits its depth profile and first-to-last ratio."""
        return self.log_scale and self.per_layer and self.source != "weights"


_CATALOG: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo(
            "weight_grad_norm", "weight-gradient L2 norm", "", "weight_grad", True, True,
            "L2 norm of the layer's weight gradient as the optimiser steps on it",
        ),
        MetricInfo(
            "weight_grad_rms", "weight-gradient RMS (norm / sqrt(numel))", "", "weight_grad",
            True, True, "the weight-gradient norm / sqrt(number of weights), comparable "
            "across layers of different widths",
        ),
        MetricInfo(
            "output_grad_norm", "output-gradient L2 norm", "", "output_grad", True, True,
            "L2 norm of dLoss/d(layer output) over the whole batch",
        ),
        MetricInfo(
            "activation_mean", "activation mean", "", "activation", False,
            description="mean of the activation after the layer", diagnostic=True,
        ),
        MetricInfo(
            "activation_std", "activation standard deviation", "", "activation", False,
            description="standard deviation of the activation after the layer",
            diagnostic=True,
        ),
        MetricInfo(
            "dead_fraction", "dead-unit share", "", "activation", False,
            description="share of exact zeros in the activation after the layer (after the "
            "ReLU: units passing no gradient for the batch)", diagnostic=True,
        ),
        MetricInfo(
            "global_grad_norm", "global gradient L2 norm", "", "weight_grad", True,
            description="L2 norm of all measured parameters' gradients together, what "
            "torch.nn.utils.clip_grad_norm_ returns for them (before clipping)",
            per_layer=False,
        ),
        MetricInfo(
            "update_ratio", "update / weight norm ratio", "", "update", True,
            description="||W_after - W_before|| / ||W_before||, the relative optimiser step",
            diagnostic=True,
        ),
        MetricInfo(
            "weight_distance", "relative distance from initial weights", "", "weights", True,
            True, description="||W_t - W_0|| / ||W_0|| of the layer's weight, at each epoch's last "
            "step: how far the layer has learned (recorded by the trainer, not the probe)",
        ),
    )
}


def list_metrics() -> list[str]:
    """Every metric name, in catalog order."""
    return list(_CATALOG)


def probe_metrics() -> list[str]:
    """The metrics a GradientProbe records (all but the trainer's `weight_distance`)."""
    return [name for name, info in _CATALOG.items() if info.source != "weights"]


def default_metrics() -> tuple[str, ...]:
    """The metrics a GradientProbe records when the user chooses none."""
    return tuple(name for name, info in _CATALOG.items()
                 if info.default and info.source != "weights")


def default_run_metrics() -> tuple[str, ...]:
    """The metrics a training run records when the user chooses none: the probe's defaults,
    the diagnostic ones (dead units, activations, update size) and the trainer's own
    (`weight_distance`). The global gradient norm, the loss and the learning rate of every
    step are in the run's steps.csv whatever the metrics."""
    return tuple(name for name, info in _CATALOG.items() if info.default or info.diagnostic)


def gradient_size_metrics() -> tuple[str, ...]:
    """Metrics whose depth profile and first-to-last ratio the analysis computes."""
    return tuple(name for name, info in _CATALOG.items() if info.gradient_size)


def metric_info(name: str) -> MetricInfo:
    """The catalog entry of `name`; an unknown name raises InputError listing the known ones."""
    try:
        return _CATALOG[name]
    except KeyError:
        raise InputError(
            f"unknown metric {name!r}. Known metrics: {', '.join(_CATALOG)}."
        ) from None
