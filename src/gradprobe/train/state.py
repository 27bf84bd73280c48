"""Where a run stands and what it returns: the state a resume needs besides the weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradprobe.record import EpochRow, RunState, StepRow


@dataclass
class RunResult:
    """What `train` returns: the final state and the run's summary."""

    run_dir: Path
    state: RunState  # completed | diverged (a failure raises)
    summary: dict[str, Any]  # the run's summary file (RunSummary.as_dict())
    skipped: bool = False  # True when the run was already finished and left alone


@dataclass
class RunPosition:
    """Where training stands: everything besides the weights a resume needs."""

    epoch: int = 0  # 0-based index of the epoch in progress
    batch: int = 0  # batches of that epoch already done
    step: int = 0  # optimiser steps done in total
    loss_sum: float = 0.0  # this epoch's summed batch losses (weighted by batch size)
    correct: int = 0  # this epoch's correct predictions so far
    seen: int = 0  # this epoch's images so far
    seconds: float = 0.0  # this epoch's training seconds so far
    metrics_rows: list[EpochRow] = field(default_factory=list)
    step_rows: list[StepRow] = field(default_factory=list)  # steps.csv, one per optimiser step


