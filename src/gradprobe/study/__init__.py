"""Studies: specs, presets, grid expansion and executors.

Names are imported on first use (PEP 562), so the CLI can read the presets and the built-in
studies' names to build its flags without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "StudyResult": "gradprobe.study.runner",
    "plan_study": "gradprobe.study.runner",
    "run_study": "gradprobe.study.runner",
    "spec_from_argument": "gradprobe.study.runner",
    "StudySpec": "gradprobe.study.spec",
    "load_spec": "gradprobe.study.spec",
}
__all__ = ["StudyResult", "StudySpec", "load_spec", "plan_study", "run_study",
           "spec_from_argument"]

if TYPE_CHECKING:
    from gradprobe.study.runner import StudyResult, plan_study, run_study, spec_from_argument
    from gradprobe.study.spec import StudySpec, load_spec


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gradprobe.study' has no attribute {name!r}")
