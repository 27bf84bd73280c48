"""The report's figures: helpers in `base`, one module per family of figures."""

from gradprobe.analysis.figures.compare import (
    plot_depth_profiles,
    plot_experiment,
    plot_training_curves,
)
from gradprobe.analysis.figures.depth import plot_depth_experiment
from gradprobe.analysis.figures.layers import (
    default_subset,
    plot_heatmap,
    plot_layer_norms,
    plot_layer_subset,
)
from gradprobe.analysis.figures.overview import plot_overview

__all__ = [
    "default_subset",
    "plot_depth_experiment",
    "plot_depth_profiles",
    "plot_experiment",
    "plot_heatmap",
    "plot_layer_norms",
    "plot_layer_subset",
    "plot_overview",
    "plot_training_curves",
]
