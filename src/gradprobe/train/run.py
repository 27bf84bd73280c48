"""`train`: one run into its directory, under its lock, refused before anything is written when
its input is bad, left alone when already finished, resumed when interrupted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradprobe.config import DataConfig, RunConfig
from gradprobe.data import Splits, load_dataset_from_config
from gradprobe.errors import InputError
from gradprobe.interrupts import signal_name, signum_of
from gradprobe.progress import NullProgress, Progress
from gradprobe.record import RunState
from gradprobe.train.checkpoint import CHECKPOINT, PREVIOUS_CHECKPOINT
from gradprobe.train.loop import Trainer
from gradprobe.train.preflight import check_run_config
from gradprobe.train.rundir import RunDirectory
from gradprobe.train.state import RunPosition, RunResult
from gradprobe.train.threads import torch_threads
from gradprobe.util.atomic import remove_stale_temporaries
from gradprobe.util.paths import first_missing_ancestor


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    name: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    splits: Splits | None = None,
    load_data: Callable[[DataConfig], Splits] = load_dataset_from_config,
    record_refusal: bool = False,
) -> RunResult:
    """Train one run into `out_dir`, resuming it when it was interrupted.

    A finished run (completed or diverged) is left alone unless `force`; a directory holding a
    run with another config is refused with the differences. Divergence (a NaN or inf loss) is a
    result: the run stops, is marked `diverged` with its step, and this returns normally.
    `load_data` loads the splits unless `splits` are given (a study passes a cached loader, so
    runs on the same data share them). The run trains on `config.train.threads` CPU threads.
    Bad input is refused with an InputError before anything is written; one found while setting
    up (data that does not load) removes the run directory this call created, unless
    `record_refusal` (a study keeps the run's failed status for its report).
    """
    progress = progress or NullProgress()
    # Bad input is refused before anything is written: no run directory, lock or status.
    check_run_config(config)
    run_dir = RunDirectory(out_dir)
    name = name or run_dir.path.name
    created = first_missing_ancestor(run_dir.path)
    lock = run_dir.lock()
    try:
        remove_stale_temporaries(run_dir.path)  # a killed writer's; safe under the lock
        resolved = config.model_dump(mode="json")
        finished = _check_existing(run_dir, resolved, force, name, progress)
        if finished is not None:
            progress.message(f"{name}: already {finished.state}, left as it is "
                             f"(use --force to train it again): {run_dir.path}")
            return finished
        if force:
            _clear(run_dir)
        with torch_threads(config.train.threads):
            trainer = Trainer(config, run_dir, name, progress, splits, load_data)
            try:
                return trainer.run()
            except KeyboardInterrupt as interrupt:  # SIGINT or SIGTERM (gradprobe.interrupts)
                _mark_interrupted(run_dir, trainer.position, interrupt, name, progress)
                raise
    except InputError:
        # Refused while setting up (data that cannot load, ...): a directory this call created
        # holds nothing worth keeping, so it goes again, unless a study wants the failed status.
        if created is not None and not record_refusal and \
                not run_dir.file(CHECKPOINT).exists():
            lock.release()
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        lock.release()


def _check_existing(run_dir: RunDirectory, resolved: dict[str, Any], force: bool, name: str,
                    progress: Progress) -> RunResult | None:
    """The result of a run already finished in `run_dir` (None: train or resume it); damaged
    records are repaired by resuming (see `RunDirectory.finished_run`)."""
    if force:
        return None
    finished = run_dir.finished_run(resolved, name, progress)
    if finished is None:
        return None
    state, summary = finished
    return RunResult(run_dir.path, state, summary.as_dict(), skipped=True)


def _mark_interrupted(run_dir: RunDirectory, position: RunPosition, interrupt: BaseException,
                      name: str, progress: Progress) -> None:
    """Leave the run resumable and saying so: "interrupted", where it stood. Its files are whole
    (each written atomically), and the next call resumes from the last checkpoint."""
    why = signal_name(signum_of(interrupt))
    try:
        run_dir.write_status(RunState.INTERRUPTED, epoch=position.epoch, step=position.step,
                             message=f"interrupted by {why} at epoch {position.epoch + 1}, step "
                                     f"{position.step}; resumes from its last checkpoint")
    except OSError as error:  # the status stays "running", which resumes the same way
        progress.message(f"{name}: interrupted; could not record it ({error})")
        return
    progress.message(f"{name}: interrupted by {why} at step {position.step}; it resumes from "
                     "its last checkpoint")


def _clear(run_dir: RunDirectory) -> None:
    run_dir.clear(CHECKPOINT, PREVIOUS_CHECKPOINT)


