"""Read run and study directories into tidy pandas frames.

Analysis reads only what the trainer wrote (records), never a model, and reads it through
`gradprobe.record`. A run that is still running, diverged or failed may lack some of its files,
so loading a run is tolerant: a missing or damaged file gives an empty frame or dict and a note
in `RunData.problems` that names the file and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.errors import InputError
from gradprobe.record import (
    CONFIG_FILE,
    GRADIENT_COLUMNS,
    GRADIENTS_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUNS_DIR,
    STATUS_FILE,
    STEPS_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    Col,
    ConfigKey,
    GradCol,
    RunFileError,
    RunState,
    RunStatus,
    RunSummary,
    empty_gradients,
    empty_metrics,
    empty_steps,
    read_run_file,
)


@dataclass
class RunData:
    """Everything one run directory holds: typed records, the config as a dict, tidy frames."""

    path: Path
    name: str
    config: dict[str, Any]  # the resolved run config, model_info, data_info, versions
    status: RunStatus | None  # None when the file is missing or damaged (see problems)
    metrics: pd.DataFrame  # one row per epoch (record.METRIC_COLUMNS)
    gradients: pd.DataFrame  # tidy probe records (record.GRADIENT_COLUMNS)
    summary: RunSummary | None  # None before the run finished
    problems: list[str] = field(default_factory=list)  # files that were missing or unreadable
    # one row per optimiser step (record.STEP_COLUMNS); empty for runs recorded before it existed
    steps: pd.DataFrame = field(default_factory=empty_steps)
    # derived frames (per-epoch means) keyed by what they were computed from; RunData is read-only
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> RunState:
        """running | completed | diverged | failed | missing (never started)."""
        if self.status is not None:
            return self.status.state
        return self.summary.state if self.summary is not None else RunState.RUNNING

    @property
    def message(self) -> str:
        return self.status.message if self.status is not None else ""

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self.config.get(ConfigKey.model_info) or {})

    @property
    def data_info(self) -> dict[str, Any]:
        return dict(self.config.get(ConfigKey.data_info) or {})

    @property
    def num_classes(self) -> int | None:
        """The classes of the run's data: data_info's count, else its class names (torchvision
        sets record only those); None when the run does not say."""
        info = self.data_info
        return int(info.get("num_classes") or len(info.get("class_to_idx") or {})) or None

    @property
    def run_config(self) -> dict[str, Any]:
        """The resolved `RunConfig` (model, data, train, probe) as a dict."""
        return dict(self.config.get(ConfigKey.run) or {})

    @property
    def diverged_step(self) -> int | None:
        """The optimiser step at which the loss became non-finite, if the run diverged."""
        step = self.summary.diverged_step if self.summary is not None else None
        if step is None and self.state is RunState.DIVERGED and self.status is not None:
            step = self.status.step
        return step

    @property
    def diverged_epoch(self) -> int | None:
        """The epoch holding `diverged_step` (from the gradient records, else the status)."""
        step = self.diverged_step
        if step is None:
            return None
        grads = self.gradients
        if not grads.empty:
            at_or_before = grads.loc[grads[GradCol.step] <= step, GradCol.epoch]
            if not at_or_before.empty:
                return int(at_or_before.max())
        return self.status.epoch if self.status is not None else None

    @property
    def versions(self) -> dict[str, Any]:
        return dict(self.config.get(ConfigKey.versions) or {})

    def section(self, name: str) -> dict[str, Any]:
        """One section of the resolved config: "model", "data", "train" or "probe"."""
        return dict(self.run_config.get(name) or {})

    @classmethod
    def from_frame(
        cls, gradients: pd.DataFrame, *, name: str = "probe", metrics: pd.DataFrame | None = None,
        state: RunState = RunState.RUNNING,
    ) -> RunData:
        """An in-memory run from a probe's tidy frame (`GradientProbe.to_frame()`) and, if
        given, per-epoch metrics rows (record.METRIC_COLUMNS), so the report's summaries and
        figures apply to a probe without a run directory. `state` defaults to running: a probe
        does not know how its training ended."""
        missing = [column for column in GRADIENT_COLUMNS if column not in gradients.columns]
        if missing:
            raise InputError(
                f"The gradient frame lacks the columns {missing}. Pass `probe.to_frame()` or a "
                f"frame with the columns {list(GRADIENT_COLUMNS)}."
            )
        if metrics is not None and Col.epoch not in metrics.columns:
            raise InputError(
                f"The metrics frame lacks the {Col.epoch!r} column. Pass one row per epoch with "
                f"the columns {list(METRIC_COLUMNS)} (missing ones are left empty)."
            )
        if metrics is not None:  # absent columns (no validation in a notebook loop) stay NaN
            metrics = metrics.reindex(columns=list(METRIC_COLUMNS))
        return cls(
            path=Path("."), name=name, config={}, status=RunStatus(state),
            metrics=empty_metrics() if metrics is None else metrics,
            gradients=gradients, summary=None,
        )


def as_run(data: RunData | pd.DataFrame, name: str = "probe") -> RunData:
    """`data` itself, or a tidy gradient frame wrapped by `RunData.from_frame`."""
    return data if isinstance(data, RunData) else RunData.from_frame(data, name=name)


@dataclass
class StudyData:
    """A study directory: its resolved spec and its runs in spec order."""

    path: Path
    spec: dict[str, Any]
    runs: dict[str, RunData]
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.path.name)

    @property
    def title(self) -> str:
        return str(self.spec.get("title") or self.name)


def _read(path: Path, problems: list[str], *, required: bool = True) -> Any:
    """A run file through `read_run_file`; absence or damage becomes a note, never an error."""
    try:
        data = read_run_file(path)
    except RunFileError as error:
        problems.append(str(error))
        return None
    if data is None and required:
        problems.append(f"{path.name} is missing")
    return data


def load_run(run_dir: str | Path) -> RunData:
    """Load one run directory; missing or unreadable files give empty frames, never an error.

    Raises `InputError` only when `run_dir` is not a directory at all.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(
            f"No run directory at {str(path)!r}. Pass the directory `gradprobe train --out` "
            f"wrote (it holds {CONFIG_FILE} and {METRICS_FILE})."
        )
    problems: list[str] = []
    config = _read(path / CONFIG_FILE, problems) or {}
    status = _read(path / STATUS_FILE, problems)
    summary = _read(path / SUMMARY_FILE, problems, required=False)  # absent until the run ends
    metrics = _read(path / METRICS_FILE, problems)
    gradients = _read(path / GRADIENTS_FILE, problems)
    steps = _read(path / STEPS_FILE, problems, required=False)  # absent in older runs
    return RunData(
        path=path,
        name=str(config.get(ConfigKey.name) or path.name),
        config=config,
        status=status,
        metrics=empty_metrics() if metrics is None else metrics,
        gradients=empty_gradients() if gradients is None else gradients,
        summary=summary,
        problems=problems,
        steps=empty_steps() if steps is None else steps,
    )


def _missing_run(path: Path, name: str) -> RunData:
    """A run the study lists whose directory does not exist (never started)."""
    return RunData(
        path=path,
        name=name,
        config={},
        status=RunStatus(RunState.MISSING, message="the run directory does not exist"),
        metrics=empty_metrics(),
        gradients=empty_gradients(),
        summary=None,
        problems=["the run directory does not exist"],
    )


def _spec_run_names(spec: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in spec.get("runs") or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if name is not None and str(name) not in names:
            names.append(str(name))
    return names


def load_study(study_dir: str | Path) -> StudyData:
    """Load a study directory (its spec + one directory per run) with its runs in spec order.

    Run directories the spec does not list are appended after the listed ones. A lone run
    directory (a config, no study spec) loads as a one-run study, so `gradprobe report` works on
    the output of `gradprobe train` too. A damaged study spec raises `RunFileError`.
    """
    path = Path(study_dir)
    spec = read_run_file(path / STUDY_FILE)
    if spec is None:
        if (path / CONFIG_FILE).is_file():
            run = load_run(path)
            spec = {"name": run.name, "runs": [{"name": run.name}]}
            return StudyData(path=path, spec=spec, runs={run.name: run})
        raise InputError(
            f"{str(path)!r} is not a study directory: it has no {STUDY_FILE}. Pass the --out "
            "directory of `gradprobe study` (or of `gradprobe train` for a single run)."
        )
    runs_dir = path / RUNS_DIR
    runs: dict[str, RunData] = {}
    for name in _spec_run_names(spec):
        run_path = runs_dir / name
        runs[name] = load_run(run_path) if run_path.is_dir() else _missing_run(run_path, name)
        runs[name].name = name  # the spec's name is the key everything else refers to
    problems: list[str] = []
    if runs_dir.is_dir():
        for run_path in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            if run_path.name not in runs:
                runs[run_path.name] = load_run(run_path)
                runs[run_path.name].name = run_path.name
                problems.append(f"{RUNS_DIR}/{run_path.name} is not listed in {STUDY_FILE}")
    return StudyData(path=path, spec=spec, runs=runs, problems=problems)


def finite_or_none(value: Any) -> Any:
    """A JSON-friendly number: NaN and +-inf become None, numpy scalars become Python ones."""
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
