"""Per-layer gradient statistics on any model (`GradientProbe`) and the at-init scan.

    from gradprobe.probe import GradientProbe, list_metrics
    with GradientProbe(model) as probe:
        ...  # backward, then probe.record(), then clipping and the optimiser step
    probe.to_frame()  # tidy: step, epoch, layer, depth, kind, metric, value

Statistics are small classes (`Statistic`) in a registry; `gradprobe.probe.statistics` holds
the built-in ones, importing this package registers them and checks them against the metric
catalog (`gradprobe.metrics`: names, labels, units, sources, defaults). The at-initialisation
scan lives in its own package, `gradprobe.scan`.
"""

from gradprobe.probe import statistics  # noqa: F401  (registers the built-in statistics)
from gradprobe.probe.base import (
    Measurement,
    RecordContext,
    Statistic,
    list_metrics,
    register_statistic,
)
from gradprobe.probe.layers import DEFAULT_LAYER_TYPES, LayerInfo
from gradprobe.probe.probe import DEFAULT_METRICS, GradientProbe

__all__ = [
    "DEFAULT_LAYER_TYPES",
    "DEFAULT_METRICS",
    "GradientProbe",
    "LayerInfo",
    "Measurement",
    "RecordContext",
    "Statistic",
    "list_metrics",
    "register_statistic",
]
