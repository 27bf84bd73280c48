"""`run_study`: resolve a spec, train its runs with an executor, summarise, write the report."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gradprobe import record
from gradprobe.config import ExecutionConfig
from gradprobe.errors import InputError
from gradprobe.progress import NullProgress, Progress
from gradprobe.study.executors import (
    RunOutcome,
    RunTask,
    execute_local,
)
from gradprobe.study.pool import execute_pool
from gradprobe.study.presets import BUILTIN_STUDIES, DEFAULT_STUDY, default_preset, get_preset
from gradprobe.study.ray_tasks import ray_cluster, run_ray
from gradprobe.study.spec import ResolvedStudy, StudySpec, describe_error, load_spec, resolve
from gradprobe.util.paths import child_path, prepare_output_dir


@dataclass
class StudyResult:
    study_dir: Path
    outcomes: list[RunOutcome]
    rows: list[dict[str, Any]] = field(default_factory=list)  # the end-of-study summary table
    report: dict[str, Path] = field(default_factory=dict)

    @property
    def unfinished(self) -> list[RunOutcome]:
        """Runs that neither completed nor diverged (failed, or busy in another process)."""
        return [outcome for outcome in self.outcomes
                if outcome.state not in record.FINISHED_STATES]


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


def plan_study(spec: StudySpec, *, preset: str | None = None, dataset: str | None = None,
               data_root: str | None = None) -> ResolvedStudy:
    preset_name = preset or default_preset()
    return resolve(spec, get_preset(preset_name), preset_name, dataset=dataset,
                   data_root=data_root)


def run_study(
    spec: str | Path | dict[str, Any] | StudySpec | None,
    out_dir: str | Path,
    *,
    preset: str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    execution: ExecutionConfig | None = None,
    progress: Progress | None = None,
    write_report: bool = True,
    force: bool = False,
    **execution_options: Any,
) -> StudyResult:
    """Run every run of a study into `out_dir/runs/`, then write its report.

    `spec` is a built-in study's name, a YAML path, a dict or a `StudySpec` (None: the built-in
    default); `preset` defaults to `full` with CUDA, else `quick`; `dataset` and `data_root`
    replace the spec's.
    Who trains the runs is `execution`, or its fields as keywords (`jobs=2`, `executor="ray"`,
    `ray_address=...`); it never changes a run's numbers. (`gradprobe study` without --jobs
    passes `presets.default_jobs(preset)`; here the default stays 1, so a script needs no
    `if __name__ == "__main__":` guard for the process pool's spawned workers.) Idempotent:
    finished runs are skipped, interrupted ones resume from their checkpoints, and the report
    is rendered again from whatever the run directories hold. `force` trains every run again
    from scratch, finished ones (and ones of a changed spec) included. SIGINT or SIGTERM stop it
    within seconds: `StudyInterrupted` (a KeyboardInterrupt) is raised with every run's outcome,
    the running runs marked "interrupted", and no report is written (see `study.executors`).
    """
    progress = progress or NullProgress()
    execution = _execution(execution, execution_options)
    study = plan_study(spec_from_argument(spec), preset=preset, dataset=dataset,
                       data_root=data_root)
    study_dir = Path(out_dir).resolve()
    runs_dir = study_dir / record.RUNS_DIR
    tasks = [RunTask(run.name, run.config, child_path(runs_dir, run.name, "run name"), force)
             for run in study.runs]
    # Everything that can be refused is refused before the first run starts or a file is written.
    _check_same_study(study_dir, study, progress)
    check_runs(tasks, here=execution.executor != "ray")
    with open_executor(execution, tasks) as execute:  # Ray: connected and checked here
        prepare_output_dir(study_dir)  # before the plan names the report's path in it
        with record.report_lock(study_dir):  # a killed report writer's temporaries go now
            pass
        for line in describe_plan(study, study_dir):
            progress.message(line)
        record.write_study_file(study_dir, study.to_yaml_dict())
        # SIGINT/SIGTERM: StudyInterrupted, once every run was stopped and recorded
        outcomes = execute(progress)
    result = StudyResult(study_dir, outcomes, rows=summary_rows(study_dir, study, outcomes))
    if write_report:
        from gradprobe.analysis import write_report as render

        result.report = render(study_dir)  # under the study directory's report lock
    return result


@contextlib.contextmanager
def open_executor(execution: ExecutionConfig,
                  tasks: list[RunTask]) -> Iterator[Callable[[Progress], list[RunOutcome]]]:
    """The function that trains `tasks`, given a Progress. For Ray, the cluster is connected
    to and checked on entering, so a bad address or cluster is refused before any file is
    written."""
    if execution.executor == "ray":
        with ray_cluster(tasks, execution.ray_address) as gpus_per_run:
            yield lambda progress: run_ray(tasks, progress, gpus_per_run)
    elif execution.jobs > 1:
        yield lambda progress: execute_pool(tasks, execution.jobs, progress)
    else:
        yield lambda progress: execute_local(tasks, progress)


def _execution(execution: ExecutionConfig | None, options: dict[str, Any]) -> ExecutionConfig:
    """`execution`, or one built from keywords, checked like every other config."""
    if execution is not None and options:
        raise TypeError("pass either execution= or its fields as keywords, not both")
    if execution is not None:
        return execution
    try:
        return ExecutionConfig(**options)
    except ValidationError as error:
        raise InputError(describe_error(error, "", what="execution options")) from None


def _check_same_study(study_dir: Path, study: ResolvedStudy, progress: Progress) -> None:
    """Refuse to mix two different studies in one directory (each run's config is checked too,
    by `check_runs`). A damaged study.yaml is rewritten from the spec: it holds nothing else."""
    if study_dir.exists() and not study_dir.is_dir():
        raise InputError(f"--out {study_dir} is a file; choose a directory for the study.")
    try:
        old = record.read_run_file(study_dir / record.STUDY_FILE)
    except record.RunFileError as error:
        progress.message(f"{record.STUDY_FILE} is damaged ({error.problem}); rewriting it from "
                         "the spec")
        return
    if old is None:
        return
    if old.get("name") not in (None, study.spec.name):
        raise InputError(f"{study_dir} holds the study {old.get('name')!r}, not "
                         f"{study.spec.name!r}; use another --out.")


def check_runs(tasks: list[RunTask], *, here: bool = True) -> None:
    """Refuse, before any run starts, every run that cannot train: an option its model rejects,
    an image its model shrinks to nothing, a model too large for memory (each distinct model set-up
    built once on the meta device), or a run directory holding another config (the spec changed)
    or a damaged config.json. One InputError lists every such run. `here=False` (Ray) leaves
    the device and memory checks to the machines the runs train on."""
    from gradprobe.train.preflight import check_run_config
    from gradprobe.train.rundir import resume_changes

    problems: list[str] = []
    refused: dict[str, list[str]] = {}  # a preflight message -> the runs it refuses
    checked: dict[tuple[Any, ...], str | None] = {}
    for task in tasks:
        config = task.config
        key = (config.model, config.data, config.train.batch_size, config.train.device,
               config.train.amp)
        if key not in checked:
            try:
                check_run_config(config, here=here)
                checked[key] = None
            except InputError as error:
                checked[key] = str(error)
        message = checked[key]
        if message is not None:
            refused.setdefault(message, []).append(task.name)
            continue
        if task.force:  # its directory is cleared: what it held does not matter
            continue
        try:
            existing = record.read_run_file(task.run_dir / record.CONFIG_FILE)
        except record.RunFileError as error:
            problems.append(f"run {task.name!r}: {error}")
            continue
        if existing is None:
            continue
        _, changes = resume_changes(existing.get("run", {}), config.model_dump(mode="json"))
        if changes:
            problems.append(f"run {task.name!r} in {task.run_dir} was trained with another "
                            "config (the spec changed):\n    " + "\n    ".join(changes))
    refusals = []
    for message, names in refused.items():  # a shared cause (the data) said once, not per run
        shown = ", ".join(repr(name) for name in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        refusals.append(f"run{'s' if len(names) > 1 else ''} {shown}{more}: {message}")
    problems = [*refusals, *problems]
    if problems:
        changed = any("the spec changed" in problem for problem in problems)
        fix = ("\nFix: restore the spec, use another --out, or delete the changed run "
               "directories to train them again." if changed else "")
        raise InputError("the study cannot start; nothing was trained or written:\n  "
                         + "\n  ".join(problems) + fix)


def summary_rows(study_dir: Path, study: ResolvedStudy,
                 outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """One row per run: model, state, best val acc, test acc, first-to-last gradient ratio."""
    from gradprobe.analysis import load_run, summarize_run

    by_name = {outcome.name: outcome for outcome in outcomes}
    rows = []
    for run in study.runs:
        outcome = by_name.get(run.name)
        row: dict[str, Any] = {"run": run.name, "model": run.config.model.name,
                               "state": str(outcome.state) if outcome else "?"}
        run_dir = study_dir / record.RUNS_DIR / run.name
        if (run_dir / record.CONFIG_FILE).exists():
            summary = summarize_run(load_run(run_dir))
            row.update({"best_val_acc": summary.best_val_acc, "test_acc": summary.test_acc,
                        "first_to_last_ratio": summary.first.ratio,
                        "verdict": summary.first.verdict})
        rows.append(row)
    return rows


def describe_plan(study: ResolvedStudy, study_dir: Path) -> list[str]:
    """The first lines a study reports: preset, dataset, device, runs, report path."""
    from gradprobe.train.device import resolve_device

    device = resolve_device("auto").type
    dataset = study.runs[0].config.data.dataset if study.runs else "?"
    return [
        f"study {study.spec.name!r}: preset {study.preset}, dataset {dataset}, device {device}, "
        f"{len(study.runs)} runs, {os.cpu_count()} CPU cores",
        f"report will be written to {study_dir / record.REPORT_HTML} (and {record.REPORT_MD})",
    ]
