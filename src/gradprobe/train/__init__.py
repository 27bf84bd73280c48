"""Training runs: the loop, checkpoints, resume and the run directory."""

from gradprobe.train.loop import RunResult, train

__all__ = ["RunResult", "train"]
