"""Studies: specs, presets, grid expansion and executors."""

from gradprobe.study.runner import StudyResult, plan_study, run_study, spec_from_argument
from gradprobe.study.spec import StudySpec, load_spec

__all__ = ["StudyResult", "StudySpec", "load_spec", "plan_study", "run_study",
           "spec_from_argument"]
