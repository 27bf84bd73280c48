"""Executors: who trains a study's runs. In process (here), worker processes the study owns
(`study.pool`), or Ray tasks (`study.ray_tasks`); the pieces they share are here.

Every executor calls the same `run_one`, and gradprobe's own checkpoints are the source of truth
for resuming, whoever runs a run: an executor never restarts a run from step 0 behind the
trainer's back (Ray Tune's experiment restore can; we use plain Ray tasks instead). Nor does an
executor change a run's numbers: the trainer sets the run's own thread count
(`TrainConfig.threads`), so local, pool and Ray runs are bit-identical.

Interrupts (see `gradprobe.interrupts`): on SIGINT or SIGTERM every executor stops within
seconds: queued runs never start (reported "not started"), running runs are marked
"interrupted" and resume from their last checkpoint, and `StudyInterrupted` carries every run's
outcome up to the command line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradprobe import interrupts, record
from gradprobe.config import DataConfig, RunConfig
from gradprobe.data import Splits, load_dataset_from_config
from gradprobe.errors import InputError
from gradprobe.interrupts import Interrupted, signal_name, signum_of
from gradprobe.progress import Progress, StudyClock
from gradprobe.record import RunState
from gradprobe.train.rundir import RunBusyError, RunDirectory

# How long interrupted workers get to record "interrupted" before they are killed (a second
# signal kills them at once). Measured: a training worker stops in well under a second.
GRACE_SECONDS = 3.0
POLL_SECONDS = 0.25  # how often a waiting scheduler looks at the signals it caught


@dataclass(frozen=True)
class RunTask:
    name: str
    config: RunConfig
    run_dir: Path
    force: bool = False  # train it again from scratch even when finished


@dataclass(frozen=True)
class RunOutcome:
    name: str
    # completed | diverged (results) | failed | running (busy: another process trains it)
    # | interrupted (resumable) | missing (not started: the study was interrupted first)
    state: RunState
    message: str = ""
    skipped: bool = False  # finished before this study invocation: left alone

    @property
    def started(self) -> bool:
        return self.state is not RunState.MISSING


class StudyInterrupted(Interrupted):
    """A study stopped by SIGINT or SIGTERM; `outcomes` holds every run's, in the study's order."""

    def __init__(self, signum: int, outcomes: list[RunOutcome]) -> None:
        super().__init__(signum)
        self.outcomes = outcomes


def not_started(task: RunTask) -> RunOutcome:
    return RunOutcome(task.name, RunState.MISSING, "not started")


def interrupted(task: RunTask, signum: int) -> RunOutcome:
    return RunOutcome(task.name, RunState.INTERRUPTED,
                      f"interrupted by {signal_name(signum)}; resumes from its last checkpoint")


def run_one(task: RunTask, progress: Progress,
            load_data: Callable[[DataConfig], Splits] = load_dataset_from_config) -> RunOutcome:
    """Train one run; never raises for a run's own failure (the run directory records it).
    An interrupt (KeyboardInterrupt, `Interrupted`) propagates: the trainer recorded it."""
    from gradprobe.train import train

    try:
        result = train(task.config, task.run_dir, name=task.name, force=task.force,
                       progress=progress,
                       load_data=load_data, record_refusal=True)
    except RunBusyError as error:
        return RunOutcome(task.name, RunState.RUNNING, str(error))
    except Exception as error:  # recorded with its traceback in the run's status.json
        progress.message(f"{task.name}: failed: {type(error).__name__}: {error}")
        return RunOutcome(task.name, RunState.FAILED, f"{type(error).__name__}: {error}")
    return RunOutcome(task.name, result.state, skipped=result.skipped)


def execute_local(tasks: list[RunTask], progress: Progress) -> list[RunOutcome]:
    """One run after another in this process; each distinct dataset is loaded once."""
    # The trainer's own loader, memoised: DataConfig is frozen, hence a hashable key.
    load_data = functools.cache(load_dataset_from_config)
    clock = StudyClock(progress, len(tasks))
    outcomes: list[RunOutcome] = []
    with interrupts.handling():
        for task in tasks:
            try:
                outcomes.append(run_one(task, progress, load_data))
                clock.run_ended(trained=not outcomes[-1].skipped)
            except KeyboardInterrupt as interrupt:
                signum = signum_of(interrupt)
                outcomes.append(interrupted(task, signum))
                outcomes += [not_started(rest) for rest in tasks[len(outcomes):]]
                raise StudyInterrupted(signum, outcomes) from None
    return outcomes


def mark_run(task: RunTask, state: RunState, message: str) -> None:
    """Record `state` for a run whose process ended without recording it (status "running").
    Only under the run's lock, which a killed process no longer holds; a run another process
    trains, or one that never wrote a status, is left alone."""
    if not (task.run_dir / record.STATUS_FILE).is_file():
        return
    try:
        lock = RunDirectory(task.run_dir).lock()
    except (InputError, OSError):
        return
    try:
        status = record.read_run_file(task.run_dir / record.STATUS_FILE)
        if status is not None and status.state is RunState.RUNNING:
            record.write_status(task.run_dir, state, epoch=status.epoch, step=status.step,
                                message=message)
    except (InputError, OSError):  # damaged or unwritable: the resume repairs it
        pass
    finally:
        lock.release()


def report_outcome(progress: Progress, outcome: RunOutcome) -> None:
    detail = f": {outcome.message}" if outcome.message else ""
    progress.message(f"{outcome.name}: {outcome.state}{detail}")


def in_study_order(tasks: list[RunTask], outcomes: dict[str, RunOutcome],
                   caught: list[int]) -> list[RunOutcome]:
    """Every run's outcome in the study's order ("not started" where none came); raises
    `StudyInterrupted` with them when a signal was caught."""
    ordered = [outcomes.get(task.name) or not_started(task) for task in tasks]
    if caught:
        raise StudyInterrupted(caught[0], ordered)
    return ordered
