"""The run directory: every file of one run, written atomically (contract: `gradprobe.record`)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock, Timeout

from gradprobe import record
from gradprobe.errors import InputError
from gradprobe.progress import Progress
from gradprobe.record import EpochRow, RunState, RunStatus, RunSummary, StepRow
from gradprobe.record.io import REBUILDABLE
from gradprobe.util.atomic import no_space_error
from gradprobe.util.paths import prepare_output_dir


class RunBusyError(InputError):
    """Another process holds this run's lock."""


class RunDirectory:
    """One run's directory: its lock, and its files read and written through `gradprobe.record`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path} is a file, not a directory; "
                             "choose a new directory path for the run.")

    def file(self, name: str) -> Path:
        """The path of one of the run's files (`name`: a `gradprobe.record` *_FILE constant)."""
        return self.path / name

    def lock(self, timeout: float = 0) -> FileLock:
        """A lock held while the run trains; `timeout=0` fails at once if another holds it."""
        prepare_output_dir(self.path)
        lock = FileLock(str(self.path / record.LOCK_FILE), timeout=timeout)
        try:
            lock.acquire()
        except Timeout as error:
            raise RunBusyError(f"run directory {self.path} is being trained by another process; "
                               "wait for it to finish or use another --out.") from error
        except OSError as error:  # filelock opens with O_NOFOLLOW: a planted link is ELOOP
            path = self.path / record.LOCK_FILE
            full = no_space_error(error, path)
            if full is not None:
                raise full from None
            what = "a symbolic link" if path.is_symlink() else "not a lockable file"
            raise InputError(f"the lock file {path} is {what} ({error.strerror}); gradprobe "
                             "never follows it, so its target is untouched. Fix: delete it (a "
                             "lock holds nothing) and run the same command again.") from None
        return lock

    def read_status(self) -> RunStatus | None:
        """The run's status, None if absent; `RunFileError` (an InputError) if damaged."""
        return record.read_run_file(self.file(record.STATUS_FILE))

    def read_config(self) -> dict[str, Any] | None:
        return record.read_run_file(self.file(record.CONFIG_FILE))

    def read_summary(self) -> RunSummary | None:
        return record.read_run_file(self.file(record.SUMMARY_FILE))

    def finished_run(self, resolved: dict[str, Any], name: str,
                     progress: Progress) -> tuple[RunState, RunSummary] | None:
        """The state and summary of the run in this directory if it finished with the config
        `resolved`; None when there is none or it must be trained or resumed.

        Recovery policy: the files the checkpoint rebuilds (`REBUILDABLE`) are deleted when
        damaged, saying so, and None is returned: resuming rewrites them. A damaged config.json,
        the run's identity, raises `RunFileError` naming the file and the fix, and another config
        an InputError listing the differences.
        """
        existing = self.read_config()
        if existing is None:
            return None
        allowed, refused = resume_changes(existing.get("run", {}), resolved)
        if refused:
            listing = "\n  ".join(refused)
            raise InputError(
                f"{self.path} holds a run with a different config:\n  {listing}\n"
                "Use another --out, or --force to discard that run and train this config there."
            )
        extended = [change for change in allowed if change.startswith("train.epochs:")]
        for change in allowed:
            if change not in extended:
                progress.message(f"{name}: {change}")
        damaged = False
        for file_name in REBUILDABLE:
            try:
                record.read_run_file(self.file(file_name))
            except record.RunFileError as error:
                progress.message(f"{name}: {file_name} is damaged ({error.problem}); rebuilding "
                                 "it by resuming the run from its checkpoint")
                self.file(file_name).unlink(missing_ok=True)
                damaged = True
        status = None if damaged else self.read_status()
        trained = 0 if status is None else status.epoch
        if trained > resolved["train"]["epochs"]:
            raise InputError(
                f"{self.path} holds a run that has trained {trained} epochs, more than --epochs "
                f"{resolved['train']['epochs']}; a run cannot be shortened. Use another --out, "
                "or --force to train it again from scratch."
            )
        if extended and (status is None or status.state != RunState.DIVERGED):
            progress.message(f"{name}: {extended[0]}")
        if status is None or status.state not in record.FINISHED_STATES:
            return None
        if extended and status.state == RunState.COMPLETED:
            return None  # it continues from its last checkpoint to the new epoch count
        metrics = record.read_run_file(self.file(record.METRICS_FILE))
        rows = 0 if metrics is None else len(metrics)
        if rows != status.epoch:  # whole rows lost: a truncation at a line end still parses
            progress.message(f"{name}: {record.METRICS_FILE} has {rows} epoch rows where the run "
                             f"finished {status.epoch}; rebuilding it by resuming the run from "
                             "its checkpoint")
            self.file(record.METRICS_FILE).unlink(missing_ok=True)
            return None
        summary = self.read_summary()
        return None if summary is None else (status.state, summary)

    def write_status(self, state: RunState, *, epoch: int, step: int, message: str = "",
                     traceback: str | None = None) -> None:
        record.write_status(self.path, state, epoch=epoch, step=step, message=message,
                            traceback=traceback)

    def write_config(self, config: dict[str, Any]) -> None:
        record.write_config(self.path, config)

    def write_summary(self, summary: RunSummary) -> None:
        record.write_summary(self.path, summary)

    def write_metrics(self, rows: Sequence[EpochRow]) -> None:
        record.write_metrics(self.path, rows)

    def write_steps(self, rows: Sequence[StepRow]) -> None:
        record.write_steps(self.path, rows)

    def write_gradients(self, frame: pd.DataFrame) -> None:
        record.write_gradients(self.path, frame)

    def clear(self, *extra: str) -> None:
        """Delete the run's records (and `extra` files of the trainer's, such as checkpoints)."""
        for name in (record.CONFIG_FILE, record.STATUS_FILE, record.METRICS_FILE,
                     record.GRADIENTS_FILE, record.STEPS_FILE, record.SUMMARY_FILE, *extra):
            self.file(name).unlink(missing_ok=True)
        shutil.rmtree(self.file(record.TENSORBOARD_DIR), ignore_errors=True)


def versions() -> dict[str, str | None]:
    """Versions written next to every result, so a number can be traced to the code that made it."""
    from gradprobe._version import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "gradprobe": __version__, "git_commit": _git_commit()}


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


# Settings that never change a run's numbers: a run may resume (or be left finished) with other
# values. (`train.threads` is not one: CPU reductions split their work by thread count.)
RESULT_NEUTRAL = {
    "train.checkpoint_every": "how often a checkpoint is written",
    "train.tensorboard": "whether TensorBoard event files are also written",
}


def resume_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The changes from run config `old` to `new` a run may resume with (allowed), and those it
    may not (refused), each a line naming the setting and why.

    Allowed: `RESULT_NEUTRAL` settings, and more `train.epochs` when the learning-rate schedule
    does not depend on the total (step, none; a warm-up counts its own steps): the run then
    continues exactly as a run trained that long from the start would have. The cosine
    schedule's rate at every epoch depends on the total, so its length cannot change.
    """
    allowed, refused = [], []
    for line in config_differences(old, new):
        path = line.split(":", 1)[0]
        if path in RESULT_NEUTRAL:
            allowed.append(f"{line} ({RESULT_NEUTRAL[path]}: does not change results)")
        elif path == "train.epochs" and new.get("train", {}).get("scheduler") == "cosine":
            refused.append(f"{line} (the cosine schedule's learning rate at every epoch depends "
                           "on the total epochs, so the run cannot change length)")
        elif path == "train.epochs":
            allowed.append(f"{line} (continues the run: with a {new['train']['scheduler']} "
                           "schedule the result is the same as training that long from the "
                           "start)")
        else:
            refused.append(line)
    return allowed, refused


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable lines `key.path: old -> new` for every differing leaf."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{path}: (absent) -> {new[key]!r}")
            elif key not in new:
                lines.append(f"{path}: {old[key]!r} -> (absent)")
            else:
                lines.extend(config_differences(old[key], new[key], path))
        return lines
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
