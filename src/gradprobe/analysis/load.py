"""Read run and study directories into tidy pandas frames.

Analysis reads only what the trainer wrote (records), never a model: a run directory holds
`config.json`, `status.json`, `metrics.csv`, `gradients.parquet` and `summary.json`. A run that
is still running, diverged or failed may lack some of them, so every reader here is tolerant: a
missing or unreadable file gives an empty frame or dict and a note in `RunData.problems`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from gradprobe.errors import InputError

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
GRADIENT_COLUMNS = ("step", "epoch", "layer", "depth", "kind", "metric", "value")


@dataclass
class RunData:
    """Everything one run directory holds, as plain dicts and tidy frames."""

    path: Path
    name: str
    config: dict[str, Any]  # config.json: the resolved run config, model_info, data_info, versions
    status: dict[str, Any]  # status.json: state, epoch, step, message, traceback
    metrics: pd.DataFrame  # metrics.csv: one row per epoch
    gradients: pd.DataFrame  # gradients.parquet: step, epoch, layer, depth, kind, metric, value
    summary: dict[str, Any]  # summary.json, or {} before the run finished
    problems: list[str] = field(default_factory=list)  # files that were missing or unreadable
    # derived frames (per-epoch means) keyed by what they were computed from; RunData is read-only
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> str:
        """running | completed | diverged | failed | missing (never started)."""
        state = self.status.get("state") or self.summary.get("state")
        return str(state) if state else "running"

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @property
    def model_info(self) -> dict[str, Any]:
        return dict(self.config.get("model_info") or {})

    @property
    def data_info(self) -> dict[str, Any]:
        return dict(self.config.get("data_info") or {})

    @property
    def run_config(self) -> dict[str, Any]:
        """The resolved `RunConfig` (model, data, train, probe) as a dict."""
        return dict(self.config.get("run") or {})

    @property
    def diverged_step(self) -> int | None:
        """The optimiser step at which the loss became non-finite, if the run diverged."""
        step = self.summary.get("diverged_step")
        if step is None and self.state == "diverged":
            step = self.status.get("step")
        return None if step is None else int(step)

    @property
    def diverged_epoch(self) -> int | None:
        """The epoch holding `diverged_step` (from the gradient records, else status.json)."""
        step = self.diverged_step
        if step is None:
            return None
        grads = self.gradients
        if not grads.empty:
            at_or_before = grads.loc[grads["step"] <= step, "epoch"]
            if not at_or_before.empty:
                return int(at_or_before.max())
        epoch = self.status.get("epoch")
        return None if epoch is None else int(epoch)


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


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} could not be read ({error})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} does not hold a JSON object")
        return {}
    return data


def _empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="float64") for column in columns})


def _read_metrics(path: Path, problems: list[str]) -> pd.DataFrame:
    if not path.is_file():
        problems.append("metrics.csv is missing")
        return _empty_frame(METRIC_COLUMNS)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:  # pandas' EmptyDataError and ParserError are ValueErrors
        problems.append(f"metrics.csv could not be read ({error})")
        return _empty_frame(METRIC_COLUMNS)
    for column in METRIC_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
        # "nan"/"inf" strings in a diverged run's last row become floats, junk becomes NaN
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=["epoch"]).astype({"epoch": "int64"})
    return frame.sort_values("epoch").reset_index(drop=True)


def _read_gradients(path: Path, problems: list[str]) -> pd.DataFrame:
    if not path.is_file():
        problems.append("gradients.parquet is missing")
        return _empty_gradients()
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        problems.append(f"gradients.parquet could not be read ({error})")
        return _empty_gradients()
    missing = [column for column in GRADIENT_COLUMNS if column not in frame.columns]
    if missing:
        problems.append(f"gradients.parquet lacks the columns {missing}")
        return _empty_gradients()
    frame = frame.loc[:, list(GRADIENT_COLUMNS)].copy()
    frame["step"] = frame["step"].astype("int64")
    frame["epoch"] = frame["epoch"].astype("int64")
    frame["depth"] = frame["depth"].astype("int64")
    for column in ("layer", "kind", "metric"):
        frame[column] = frame[column].astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame


def _empty_gradients() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": pd.Series(dtype="int64"),
            "epoch": pd.Series(dtype="int64"),
            "layer": pd.Series(dtype="object"),
            "depth": pd.Series(dtype="int64"),
            "kind": pd.Series(dtype="object"),
            "metric": pd.Series(dtype="object"),
            "value": pd.Series(dtype="float64"),
        }
    )


def load_run(run_dir: str | Path) -> RunData:
    """Load one run directory; missing or unreadable files give empty frames, never an error.

    Raises `InputError` only when `run_dir` is not a directory at all.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(
            f"No run directory at {str(path)!r}. Pass the directory `gradprobe train --out` "
            "wrote (it holds config.json and metrics.csv)."
        )
    problems: list[str] = []
    config = _read_json(path / "config.json", problems)
    status = _read_json(path / "status.json", problems)
    summary = _read_json(path / "summary.json", [])  # absent until the run ends: not a problem
    return RunData(
        path=path,
        name=str(config.get("name") or path.name),
        config=config,
        status=status,
        metrics=_read_metrics(path / "metrics.csv", problems),
        gradients=_read_gradients(path / "gradients.parquet", problems),
        summary=summary,
        problems=problems,
    )


def _missing_run(path: Path, name: str) -> RunData:
    """A run the study lists whose directory does not exist (never started)."""
    return RunData(
        path=path,
        name=name,
        config={},
        status={"state": "missing", "message": "the run directory does not exist"},
        metrics=_empty_frame(METRIC_COLUMNS),
        gradients=_empty_gradients(),
        summary={},
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
    """Load a study directory (study.yaml + runs/<name>/) with its runs in spec order.

    Run directories under runs/ that the spec does not list are appended after the listed ones.
    A lone run directory (config.json, no study.yaml) loads as a one-run study, so
    `gradprobe report` works on the output of `gradprobe train` too.
    """
    path = Path(study_dir)
    spec_path = path / "study.yaml"
    if not spec_path.is_file():
        if (path / "config.json").is_file():
            run = load_run(path)
            spec = {"name": run.name, "runs": [{"name": run.name}]}
            return StudyData(path=path, spec=spec, runs={run.name: run})
        raise InputError(
            f"{str(path)!r} is not a study directory: it has no study.yaml. Pass the --out "
            "directory of `gradprobe study` (or of `gradprobe train` for a single run)."
        )
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(
            f"study.yaml in {str(path)!r} could not be read ({error}). Rewrite it with "
            "`gradprobe study` or fix the YAML by hand."
        ) from error
    if not isinstance(spec, dict):
        raise InputError(
            f"study.yaml in {str(path)!r} does not hold a mapping. Rewrite it with "
            "`gradprobe study`."
        )
    runs_dir = path / "runs"
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
                problems.append(f"runs/{run_path.name} is not listed in study.yaml")
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
