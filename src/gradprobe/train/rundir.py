"""The run directory: every file of one run, written atomically (see DESIGN.md's contract)."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock, Timeout

from gradprobe.errors import InputError
from gradprobe.util.atomic import atomic_path, read_json, write_json_atomic

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
GRADIENT_COLUMNS = ("step", "epoch", "layer", "depth", "kind", "metric", "value")


class RunBusyError(InputError):
    """Another process holds this run's lock."""


class RunDirectory:
    """Paths and atomic writers for one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path} is a file, not a directory; "
                             "choose a new directory path for the run.")

    config_file = property(lambda self: self.path / "config.json")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.csv")
    gradients_file = property(lambda self: self.path / "gradients.parquet")
    summary_file = property(lambda self: self.path / "summary.json")

    def lock(self, timeout: float = 0) -> FileLock:
        """A lock held while the run trains; `timeout=0` fails at once if another holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / ".lock"), timeout=timeout)
        try:
            lock.acquire()
        except Timeout as error:
            raise RunBusyError(f"run directory {self.path} is being trained by another process; "
                               "wait for it to finish or use another --out.") from error
        return lock

    def read_status(self) -> dict[str, Any] | None:
        return read_json(self.status_file) if self.status_file.exists() else None

    def read_config(self) -> dict[str, Any] | None:
        return read_json(self.config_file) if self.config_file.exists() else None

    def write_status(self, state: str, *, epoch: int, step: int, message: str = "",
                     traceback: str | None = None) -> None:
        write_json_atomic(self.status_file, {
            "state": state, "epoch": epoch, "step": step, "message": message,
            "traceback": traceback,
            "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        })

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_file, config)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_file, summary)

    def write_metrics(self, rows: list[dict[str, float]]) -> None:
        frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
        with atomic_path(self.metrics_file) as tmp:
            frame.to_csv(tmp, index=False)  # floats at full repr precision: round-trips exactly

    def write_gradients(self, frame: pd.DataFrame) -> None:
        with atomic_path(self.gradients_file) as tmp:
            frame.loc[:, list(GRADIENT_COLUMNS)].to_parquet(tmp, index=False)


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
