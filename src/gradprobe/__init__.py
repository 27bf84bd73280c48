"""gradprobe: a laboratory for gradient flow in deep networks.

The public API (README.md, "Install as a library"): build a model from the zoo, load a
dataset, probe any `nn.Module`'s per-layer gradients, train a run, run a study and write its
report.

Names are imported on first use (PEP 562), so `gradprobe --version` and importing one
sub-package do not pay for importing torch, pandas and matplotlib all at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradprobe._version import __version__

_EXPORTS = {
    "build_model": "gradprobe.models",
    "list_models": "gradprobe.models",
    "load_dataset": "gradprobe.data",
    "GradientProbe": "gradprobe.probe",
    "train": "gradprobe.train",
    "run_study": "gradprobe.study",
    "write_report": "gradprobe.analysis",
}
__all__ = ["GradientProbe", "__version__", "build_model", "list_models", "load_dataset",
           "run_study", "train", "write_report"]

if TYPE_CHECKING:
    from gradprobe.analysis import write_report
    from gradprobe.data import load_dataset
    from gradprobe.models import build_model, list_models
    from gradprobe.probe import GradientProbe
    from gradprobe.study import run_study
    from gradprobe.train import train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gradprobe' has no attribute {name!r}")
