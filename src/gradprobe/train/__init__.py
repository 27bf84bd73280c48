"""Training runs: `train` (run.py), the loop (loop.py), checkpoints, resume, the run directory."""

from gradprobe.train.run import train
from gradprobe.train.state import RunResult

__all__ = ["RunResult", "train"]
