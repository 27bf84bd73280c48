"""`run_study`: resolve a spec, train its runs with an executor, summarise, write the report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gradprobe import record
from gradprobe.errors import InputError
from gradprobe.progress import NullProgress, Progress
from gradprobe.study.executors import (
    RunOutcome,
    RunTask,
    execute_local,
    execute_pool,
    execute_ray,
)
from gradprobe.study.presets import default_preset, get_preset
from gradprobe.study.spec import ResolvedStudy, StudySpec, load_spec, resolve

BUILTIN_STUDIES = ("vanishing-gradients",)
DEFAULT_STUDY = "vanishing-gradients"


@dataclass
class StudyResult:
    study_dir: Path
    outcomes: list[RunOutcome]
    rows: list[dict[str, Any]] = field(default_factory=list)  # the end-of-study summary table
    report: dict[str, Path] = field(default_factory=dict)


def load_builtin(name: str) -> StudySpec:
    if name not in BUILTIN_STUDIES:
        raise InputError(f"unknown built-in study {name!r}; built-in studies: "
                         f"{', '.join(BUILTIN_STUDIES)} (or pass a path to a YAML spec).")
    text = resources.files("gradprobe.study").joinpath(f"builtin/{name}.yaml").read_text("utf-8")
    return load_spec(yaml.safe_load(text))


def spec_from_argument(argument: str | Path | dict[str, Any] | StudySpec | None) -> StudySpec:
    """A spec from a built-in name, a YAML path, a dict or a `StudySpec` (None: the default)."""
    if argument is None:
        return load_builtin(DEFAULT_STUDY)
    if isinstance(argument, StudySpec):
        return argument
    if isinstance(argument, str) and argument in BUILTIN_STUDIES:
        return load_builtin(argument)
    return load_spec(argument)


def plan_study(spec: StudySpec, *, preset: str | None = None,
               dataset: str | None = None) -> ResolvedStudy:
    preset_name = preset or default_preset()
    return resolve(spec, get_preset(preset_name), preset_name, dataset=dataset)


def run_study(
    spec: str | Path | dict[str, Any] | StudySpec | None,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    dataset: str | None = None,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    progress: Progress | None = None,
    write_report: bool = True,
) -> StudyResult:
    """Run every run of a study into `out_dir/runs/`, then write its report.

    Idempotent: finished runs are skipped, interrupted ones resume from their checkpoints, and
    the report is rendered again from whatever the run directories hold.
    """
    progress = progress or NullProgress()
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}.")
    if executor not in ("local", "ray"):
        raise InputError(f"unknown executor {executor!r}; choose local or ray.")
    study = plan_study(spec_from_argument(spec), preset=preset, dataset=dataset)
    study_dir = Path(out_dir).resolve()
    if study_dir.exists() and not study_dir.is_dir():
        raise InputError(f"--out {study_dir} is a file; choose a directory for the study.")
    _check_same_study(study_dir, study)
    study_dir.mkdir(parents=True, exist_ok=True)
    record.write_study_file(study_dir, study.to_yaml_dict())
    tasks = [RunTask(run.name, run.config, study_dir / record.RUNS_DIR / run.name)
             for run in study.runs]
    if executor == "ray":
        outcomes = execute_ray(tasks, progress, address=ray_address)
    elif jobs > 1:
        outcomes = execute_pool(tasks, jobs, progress)
    else:
        outcomes = execute_local(tasks, progress)
    result = StudyResult(study_dir, outcomes, rows=summary_rows(study_dir, study, outcomes))
    if write_report:
        from gradprobe.analysis import write_report as render

        result.report = render(study_dir)
    return result


def _check_same_study(study_dir: Path, study: ResolvedStudy) -> None:
    """Refuse to mix two different studies in one directory (a run's own config is checked too)."""
    old = record.read_run_file(study_dir / record.STUDY_FILE)
    if old is None:
        return
    if old.get("name") not in (None, study.spec.name):
        raise InputError(f"{study_dir} holds the study {old.get('name')!r}, not "
                         f"{study.spec.name!r}; use another --out.")


def summary_rows(study_dir: Path, study: ResolvedStudy,
                 outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """One row per run: model, state, best val acc, test acc, first-to-last gradient ratio."""
    from gradprobe.analysis import load_run, summarize_run

    by_name = {outcome.name: outcome for outcome in outcomes}
    rows = []
    for run in study.runs:
        row: dict[str, Any] = {"run": run.name, "model": run.config.model.name,
                               "state": by_name[run.name].state if run.name in by_name else "?"}
        run_dir = study_dir / record.RUNS_DIR / run.name
        if (run_dir / record.CONFIG_FILE).exists():
            summary = summarize_run(load_run(run_dir))
            row.update({"best_val_acc": summary.best_val_acc, "test_acc": summary.test_acc,
                        "first_to_last_ratio": summary.first.ratio,
                        "verdict": summary.first.verdict})
        rows.append(row)
    return rows


def describe_plan(study: ResolvedStudy, study_dir: Path, device: str) -> list[str]:
    """The first lines `gradprobe study` prints: preset, dataset, device, runs, report path."""
    dataset = study.runs[0].config.data.dataset if study.runs else "?"
    return [
        f"study {study.spec.name!r}: preset {study.preset}, dataset {dataset}, device {device}, "
        f"{len(study.runs)} runs, {os.cpu_count()} CPU cores",
        f"report will be written to {study_dir / record.REPORT_HTML} (and {record.REPORT_MD})",
    ]
