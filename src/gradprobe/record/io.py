"""Reading and writing run and study files: atomic writes, and one reader for every file.

`read_run_file` is the only way gradprobe reads a run or study file back. Any damage (bytes
that are not UTF-8, truncated or invalid JSON/YAML/CSV/Parquet, a JSON value of the wrong type,
text in a numeric column of the epoch metrics) becomes a `RunFileError` whose message names the
file and what fixes it, never a traceback or a silently wrong number.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from gradprobe.errors import InputError
from gradprobe.record.schema import (
    CONFIG_FILE,
    FIGURES_DIR,
    GRADIENT_COLUMNS,
    GRADIENTS_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    REPORT_LOCK,
    STATUS_FILE,
    STEP_COLUMNS,
    STEPS_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    Col,
    EpochRow,
    GradCol,
    RunState,
    RunStatus,
    RunSummary,
    StepCol,
    StepRow,
)
from gradprobe.util.atomic import (
    NoSpaceError,
    atomic_path,
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from gradprobe.util.safe_yaml import load_yaml

# What the trainer rebuilds by itself (see REBUILDABLE): rerunning is the whole fix.
_REBUILT = ("run the same `gradprobe train` or `gradprobe study` command again: it deletes the "
            "damaged file, resumes the run from its checkpoint and rewrites it")
FIXES = {  # what a user does about a damaged file
    STATUS_FILE: _REBUILT,
    SUMMARY_FILE: _REBUILT,
    METRICS_FILE: _REBUILT,
    GRADIENTS_FILE: _REBUILT,
    STEPS_FILE: _REBUILT,
    CONFIG_FILE: ("it cannot be rebuilt: delete the whole run directory and train the run again "
                  "(or restore the file from a backup)"),
    STUDY_FILE: ("run `gradprobe study` with the study's spec and --out again: it rewrites it "
                 "(the runs beside it are kept)"),
}


# The files a run's checkpoint rebuilds (the trainer rewrites them on resume): damage to one of
# them is repaired by resuming the run, not reported as a failure. config.json is the run's
# identity and is never rebuilt.
REBUILDABLE = (STATUS_FILE, SUMMARY_FILE, METRICS_FILE, GRADIENTS_FILE, STEPS_FILE)


class RunFileError(InputError):
    """A run or study file exists but cannot be used; the message names the file and the fix."""

    def __init__(self, path: Path, problem: str) -> None:
        fix = FIXES.get(path.name, "delete it and run the command that wrote it again")
        super().__init__(f"{path} is damaged ({problem}); {fix}.")
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------------------- the one reader
def read_run_file(path: str | Path) -> Any:
    """Read and validate one run or study file; None when it does not exist.

    The status gives a `RunStatus`, the summary a `RunSummary`, the config and the study spec
    a dict, the epoch metrics and the gradient records a
    typed frame with the contract's columns. Raises `RunFileError` for any damage.
    """
    path = Path(path)
    if not path.exists():
        return None
    reader = _READERS.get(path.name)
    if reader is None:
        raise ValueError(f"{path.name} is not a run or study file")  # a bug, not user input
    try:
        return reader(path)
    except RunFileError:
        raise
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as error:
        # UnicodeDecodeError, JSONDecodeError and pandas'/pyarrow's parse errors are ValueErrors
        raise RunFileError(path, f"{type(error).__name__}: {error}") from error


def _json_object(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(data, dict):
        raise RunFileError(path, f"it holds a JSON {type(data).__name__}, not an object")
    return data


def _check_types(path: Path, data: dict[str, Any], expected: dict[str, tuple[type, ...]]) -> None:
    for key, types in expected.items():
        value = data.get(key)
        # bool is an int to Python, but never a valid count or number here
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool)
                                  and bool not in types)):
            names = " or ".join(t.__name__ for t in types)
            raise RunFileError(path, f"{key!r} is {value!r}, not a {names}")


def _check_state(path: Path, data: dict[str, Any]) -> None:
    state = data.get("state")
    written = [s.value for s in RunState if s is not RunState.MISSING]
    if state is not None and state not in written:
        raise RunFileError(path, f"'state' is {state!r}, not one of {', '.join(written)}")


_NUMBER = (int, float)


def _typed(path: Path, data: dict[str, Any], record_type: type[Any]) -> Any:
    """`record_type` (a schema dataclass) from the file's keys; unknown keys are ignored."""
    if data.get("state") is None:
        raise RunFileError(path, "it has no 'state'")
    values = {f.name: data[f.name] for f in fields(record_type) if f.name in data}
    values["state"] = RunState(data["state"])
    return record_type(**values)


def _read_status(path: Path) -> RunStatus:
    data = _json_object(path)
    _check_state(path, data)
    _check_types(path, data, {"epoch": (int,), "step": (int,), "message": (str,),
                              "traceback": (str,), "updated": (str,)})
    if data.get("message") is None:
        data["message"] = ""
    return _typed(path, data, RunStatus)


def _read_config(path: Path) -> dict[str, Any]:
    data = _json_object(path)
    _check_types(path, data, {"name": (str,), "run": (dict,), "model_info": (dict,),
                              "data_info": (dict,), "versions": (dict,), "device": (str,)})
    for section, block in (data.get("run") or {}).items():
        if not isinstance(block, dict):
            raise RunFileError(path, f"'run.{section}' is {block!r}, not an object")
    return data


def _read_summary(path: Path) -> RunSummary:
    data = _json_object(path)
    _check_state(path, data)
    _check_types(path, data, {
        "test_loss": _NUMBER, "test_acc": _NUMBER, "best_val_acc": _NUMBER, "best_epoch": (int,),
        "final_val_acc": _NUMBER, "final_train_loss": _NUMBER, "epochs_completed": (int,),
        "steps": (int,), "diverged_step": (int,), "seconds": _NUMBER,
    })
    missing = [f.name for f in fields(RunSummary) if f.name not in data]
    if missing:
        raise RunFileError(path, f"it lacks the keys {missing}")
    return _typed(path, data, RunSummary)


def _read_numeric_csv(path: Path, columns: Sequence[str],
                      whole: Sequence[str]) -> pd.DataFrame:
    """A CSV the trainer wrote (metrics.csv, steps.csv): `columns` as float64, `whole` ones as
    int64; a cut last line, a missing column or a cell that is not a number is named."""
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):  # the writer ends every row: a cut one may still parse
        raise RunFileError(path, "its last line is cut short (the file was truncated)")
    frame = pd.read_csv(io.StringIO(raw.decode("utf-8")), dtype=str, keep_default_na=False)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise RunFileError(path, f"it lacks the columns {missing}")
    result = pd.DataFrame(index=frame.index)
    for column in columns:
        text = frame[column].str.strip()
        # the trainer writes NaN as an empty cell; "nan"/"inf" strings parse as floats
        values = pd.to_numeric(text.where(text != "", "nan"), errors="coerce")
        garbage = values.isna() & ~text.str.lower().isin(["", "nan", "-nan"])
        if garbage.any():
            row = int(garbage.idxmax())
            raise RunFileError(path, f"row {row + 1} holds {frame.at[row, column]!r} in the "
                                     f"numeric column {column!r}")
        result[column] = values.astype("float64")
    for column in whole:
        counts = result[column]
        if counts.isna().any() or (counts != counts.round()).any():
            raise RunFileError(path, f"a{'n' if column[0] in 'aeiou' else ''} {column} number "
                                     "is missing or not a whole number")
        result[column] = counts.astype("int64")
    return result


def _read_metrics(path: Path) -> pd.DataFrame:
    result = _read_numeric_csv(path, METRIC_COLUMNS, whole=(Col.epoch,))
    return result.sort_values(Col.epoch).reset_index(drop=True)


def _read_gradients(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    missing = [column for column in GRADIENT_COLUMNS if column not in frame.columns]
    if missing:
        raise RunFileError(path, f"it lacks the columns {missing}")
    frame = frame.loc[:, list(GRADIENT_COLUMNS)].copy()
    for column in (GradCol.step, GradCol.epoch, GradCol.depth):
        frame[column] = frame[column].astype("int64")
    for column in (GradCol.layer, GradCol.kind, GradCol.metric):
        frame[column] = frame[column].astype(str)
    frame[GradCol.value] = pd.to_numeric(frame[GradCol.value]).astype("float64")
    return frame


def _read_steps(path: Path) -> pd.DataFrame:
    """steps.csv as float64 columns (step and epoch int64), sorted by step; damage is named."""
    result = _read_numeric_csv(path, STEP_COLUMNS, whole=(StepCol.step, StepCol.epoch))
    if result[StepCol.step].duplicated().any():
        raise RunFileError(path, "a step appears twice")
    return result.sort_values(StepCol.step).reset_index(drop=True)


def _read_study(path: Path) -> dict[str, Any]:
    spec = load_yaml(path.read_bytes().decode("utf-8"), str(path)) or {}
    if not isinstance(spec, dict):
        raise RunFileError(path, f"it holds a YAML {type(spec).__name__}, not a mapping")
    return spec


_READERS: dict[str, Callable[[Path], Any]] = {
    STATUS_FILE: _read_status, CONFIG_FILE: _read_config, SUMMARY_FILE: _read_summary,
    METRICS_FILE: _read_metrics, GRADIENTS_FILE: _read_gradients, STUDY_FILE: _read_study,
    STEPS_FILE: _read_steps,
}


def empty_metrics() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in METRIC_COLUMNS})
    return frame.astype({Col.epoch: "int64"})


def empty_steps() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in STEP_COLUMNS})
    return frame.astype({StepCol.step: "int64", StepCol.epoch: "int64"})


def empty_gradients() -> pd.DataFrame:
    dtypes = {GradCol.step: "int64", GradCol.epoch: "int64", GradCol.layer: "object",
              GradCol.depth: "int64", GradCol.kind: "object", GradCol.metric: "object",
              GradCol.value: "float64"}
    return pd.DataFrame({column: pd.Series(dtype=dtypes[column]) for column in GRADIENT_COLUMNS})


# ---------------------------------------------------------------------------- writers
# A "failed" status written while there is space, renamed over status.json when a status write
# hits a full disk: a rename needs no space, so no run is ever left saying "running".
STATUS_FALLBACK = ".status.no-space.json"
NO_SPACE_MESSAGE = ("NoSpaceError: the disk filled up while this run was writing its files; free "
                    "some space and run the same command again: the run resumes from its last "
                    "checkpoint")


def write_status(run_dir: Path, state: RunState, *, epoch: int, step: int, message: str = "",
                 traceback: str | None = None) -> None:
    """Write status.json; a full disk never leaves it saying "running".

    Before a "running" status is written, a "failed" one is put aside (`STATUS_FALLBACK`). When
    a write hits a full disk, that file is renamed over status.json; a "failed" status then
    counts as written (the caller is raising the error that failed the run) and any other
    raises `NoSpaceError`.
    """
    updated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    state = RunState(state)
    status = RunStatus(state, epoch, step, message, traceback, updated)
    fallback, target = run_dir / STATUS_FALLBACK, run_dir / STATUS_FILE
    if state is RunState.RUNNING and not fallback.exists():
        failed = RunStatus(RunState.FAILED, epoch, step, NO_SPACE_MESSAGE, None, updated)
        write_json_atomic(fallback, failed.as_dict())  # no space: raises before "running"
    try:
        write_json_atomic(target, status.as_dict())
    except NoSpaceError:
        if fallback.exists():
            os.replace(fallback, target)
        if state is not RunState.FAILED:
            raise
    else:
        if state in (RunState.COMPLETED, RunState.DIVERGED):  # finished: nothing left to fail
            fallback.unlink(missing_ok=True)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run_dir / CONFIG_FILE, config)


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    write_json_atomic(run_dir / SUMMARY_FILE, summary.as_dict())


def write_metrics(run_dir: Path, rows: Sequence[EpochRow]) -> None:
    frame = pd.DataFrame([row.as_dict() for row in rows], columns=list(METRIC_COLUMNS))
    with atomic_path(run_dir / METRICS_FILE) as tmp:
        frame.to_csv(tmp, index=False)  # floats at full repr precision: round-trips exactly


def write_steps(run_dir: Path, rows: Sequence[StepRow]) -> None:
    frame = pd.DataFrame([row.as_dict() for row in rows], columns=list(STEP_COLUMNS))
    with atomic_path(run_dir / STEPS_FILE) as tmp:
        frame.to_csv(tmp, index=False)  # floats at full repr precision: round-trips exactly


def write_gradients(run_dir: Path, frame: pd.DataFrame) -> None:
    with atomic_path(run_dir / GRADIENTS_FILE) as tmp:
        frame.loc[:, list(GRADIENT_COLUMNS)].to_parquet(tmp, index=False)


def write_study_file(study_dir: Path, spec: dict[str, Any]) -> None:
    write_text_atomic(study_dir / STUDY_FILE, yaml.safe_dump(spec, sort_keys=False))


def finite(value: float | None) -> float | None:
    """None for a missing or non-finite number (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else value


@contextlib.contextmanager
def report_lock(study_dir: Path) -> Iterator[None]:
    """Held while a report is written into `study_dir` (by `study` or `report`), so that the
    temporaries a killed report writer left (`figures/.x.png.XXXX.tmp`) can be told from a
    live writer's: they are removed once the lock is held."""
    from filelock import FileLock

    with FileLock(str(Path(study_dir) / REPORT_LOCK)):
        for folder in (Path(study_dir), Path(study_dir) / FIGURES_DIR):
            if folder.is_dir():
                remove_stale_temporaries(folder)
        yield
