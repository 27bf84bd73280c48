"""Analysis: run and study directories (or a probe's in-memory frame) in, numbers, figures and
the report out.

It reads only what the trainer wrote (the run files of `gradprobe.record`), never a model or
torch, so a report can be rewritten anywhere the records are.
"""

from gradprobe.analysis.figures.layers import (
    default_subset,
    plot_heatmap,
    plot_layer_norms,
    plot_layer_subset,
)
from gradprobe.analysis.frames import plot_depth_profile
from gradprobe.analysis.load import RunData, StudyData, load_run, load_study
from gradprobe.analysis.report import write_report
from gradprobe.analysis.summary import (
    DEFAULT_TARGET_ACC,
    VERDICT_THRESHOLDS,
    DecayFit,
    FlowAtEpoch,
    RunAnalysis,
    VerdictThresholds,
    decay_fit,
    epochs_to_target,
    layer_epoch_means,
    layer_ratio,
    summarize_frame,
    summarize_run,
    verdict,
)

__all__ = [
    "DEFAULT_TARGET_ACC",
    "VERDICT_THRESHOLDS",
    "DecayFit",
    "FlowAtEpoch",
    "RunAnalysis",
    "RunData",
    "StudyData",
    "VerdictThresholds",
    "decay_fit",
    "default_subset",
    "epochs_to_target",
    "layer_epoch_means",
    "layer_ratio",
    "load_run",
    "load_study",
    "plot_depth_profile",
    "plot_heatmap",
    "plot_layer_norms",
    "plot_layer_subset",
    "summarize_frame",
    "summarize_run",
    "verdict",
    "write_report",
]
