"""The study analysis, built once per report: every number the questions answer from.

`build(study)` summarises each run once per gradient metric, groups runs into configurations
(`configurations.py`, the one place that decides what differs only by seed), resolves the Step 4
comparison and the Step 5 experiments against them, pairs plain and residual twins through the
model registry, checks the theory once and collects the detected events. The question modules
(`questions/`) only read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gradprobe.analysis.chance import Chance, study_chance
from gradprobe.analysis.configurations import (
    GRADIENT_METRICS,
    Configuration,
    config_key,
    group_runs,
    strip_seed,
    summarize,
)
from gradprobe.analysis.events import Diagnosis, Event, diagnose, events_for_run
from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.summary import (
    DEFAULT_TARGET_ACC,
    RunAnalysis,
    check_metric,
    summarize_run,
)
from gradprobe.analysis.theory_check import TheoryCheck, check_study
from gradprobe.errors import InputError
from gradprobe.record import GradCol


@dataclass(frozen=True)
class Experiment:
    """A Step 5 experiment: its variants are configurations under the experiment's labels."""

    name: str
    title: str
    question: str
    axes: dict[str, Any]
    variants: tuple[tuple[str, Configuration], ...]  # (label, configuration), spec order
    missing: tuple[str, ...]  # runs the spec lists that the study does not hold

    def axis_values(self, label: str) -> dict[str, str]:
        """"depth=8,residual=false" -> {"depth": "8", "residual": "false"}."""
        pairs = (part.partition("=") for part in label.split(","))
        return {key: value for key, sep, value in pairs if sep}


@dataclass
class StudyAnalysis:
    study: StudyData
    metric: str  # the report's gradient metric
    target_acc: float
    summaries: dict[str, dict[str, RunAnalysis]]  # metric -> run -> numbers
    chance: Chance | None
    configurations: list[Configuration]
    comparison_title: str
    comparison: list[Configuration]
    comparison_missing: list[str]
    experiments: list[Experiment]
    twins: list[tuple[Configuration, Configuration]]  # (plain, residual), same but the skips
    theory: list[TheoryCheck]
    diagnoses: dict[str, Diagnosis] = field(default_factory=dict)  # run -> its diagnosis

    def run(self, name: str) -> RunData:
        return self.study.runs[name]

    def summary(self, name: str, metric: str | None = None) -> RunAnalysis:
        return self.summaries[metric or self.metric][name]

    @property
    def events(self) -> list[Event]:
        """Every run's events, in run and step order (each diagnosis keeps its run's)."""
        return [event for diagnosis in self.diagnoses.values() for event in diagnosis.events]

    def events_of(self, configuration: Configuration) -> list[Event]:
        return [event for run in configuration.runs if run in self.diagnoses
                for event in self.diagnoses[run].events]

    @property
    def seeds(self) -> int:
        return max((len(c.runs) for c in self.configurations), default=0)


def recorded_metrics(study: StudyData) -> set[str]:
    return {str(m) for run in study.runs.values() for m in run.gradients[GradCol.metric].unique()}


def _comparison(study: StudyData) -> tuple[str, list[str], list[str]]:
    """Title, runs present and runs missing of the spec's comparison (else every plain run)."""
    comparison = study.spec.get("comparison") or {}
    listed = [str(name) for name in comparison.get("runs") or []]
    if listed:
        return (str(comparison.get("title") or "Comparison"),
                [n for n in listed if n in study.runs], [n for n in listed if n not in study.runs])
    in_experiments = {str(name) for entry in study.spec.get("experiments") or []
                      for name in entry.get("runs") or []}
    others = [name for name in study.runs if name not in in_experiments] or list(study.runs)
    return "Comparison of the runs", others, []


def _label(entry: Mapping[str, Any], name: str) -> str:
    """A run's variant label: the spec's `labels`, else the name without "<experiment>."."""
    written = entry.get("labels") or {}
    if isinstance(written, dict) and written.get(name) is not None:
        return strip_seed(str(written[name]))
    prefix = f"{entry.get('name')}."
    return strip_seed(name[len(prefix):] if name.startswith(prefix) else name)


def _experiments(study: StudyData, by_run: Mapping[str, Configuration]) -> list[Experiment]:
    resolved = []
    for entry in study.spec.get("experiments") or []:
        listed = [str(name) for name in entry.get("runs") or []]
        variants: dict[str, tuple[str, Configuration]] = {}
        for name in listed:
            if name in by_run:
                variants.setdefault(by_run[name].name, (_label(entry, name), by_run[name]))
        resolved.append(Experiment(
            name=str(entry.get("name", "experiment")),
            title=str(entry.get("title") or entry.get("name") or "Experiment"),
            question=" ".join(str(entry.get("question") or "").split()),
            axes=dict(entry.get("axes") or {}), variants=tuple(variants.values()),
            missing=tuple(n for n in listed if n not in study.runs)))
    return resolved


def _model_key(name: str, options: Mapping[str, Any]) -> str | None:
    from gradprobe.models.registry import resolve_options  # imports torch: only when asked

    try:
        resolved = resolve_options(name, **{k: v for k, v in options.items() if v is not None})
    except (InputError, ValueError, TypeError):
        return None
    return json.dumps({"name": name, **resolved}, sort_keys=True, default=str)


def _twins(study: StudyData, configurations: list[Configuration]
           ) -> list[tuple[Configuration, Configuration]]:
    """(plain, residual) pairs the registry calls twins, trained alike in everything else."""
    from gradprobe.models.registry import residual_twin

    keyed: dict[tuple[str, str], Configuration] = {}
    for configuration in configurations:
        run = study.runs[configuration.runs[0]]
        model = run.section("model")
        name = model.pop("name", None)
        if not name:
            continue
        rest = json.loads(config_key(run))
        rest.pop("model", None)
        key = _model_key(str(name), model)
        if key is not None:
            keyed[(key, json.dumps(rest, sort_keys=True))] = configuration
    pairs = []
    for (key, rest), configuration in keyed.items():
        if configuration.model.get("residual"):
            continue
        model = json.loads(key)
        name = model.pop("name")
        try:
            twin = residual_twin(name, model)
        except (InputError, ValueError):
            twin = None
        if twin is None:
            continue
        twin_key = _model_key(*twin)
        partner = keyed.get((twin_key, rest)) if twin_key else None
        if partner is not None:
            pairs.append((configuration, partner))
    return pairs


def _diagnoses(study: StudyData) -> dict[str, Diagnosis]:
    """Every run's diagnosis, holding its events (`gradprobe.analysis.events`). A run whose
    records cannot be read for events (none recorded yet) has none."""
    diagnoses: dict[str, Diagnosis] = {}
    for name, run in study.runs.items():
        if run.metrics.empty and run.gradients.empty:
            continue
        try:
            events = events_for_run(run)
        except ValueError:  # fewer than two classes recorded: nothing to compare with chance
            continue
        diagnoses[name] = diagnose(events, run=name)
    return diagnoses


def build(study: StudyData, metric: str = "weight_grad_norm",
          target_acc: float = DEFAULT_TARGET_ACC) -> StudyAnalysis:
    """Every number of the report, computed once. Raises `InputError` for a metric or target
    the study cannot answer with."""
    check_metric(metric)
    if not 0.0 < target_acc <= 1.0:
        raise InputError(f"target_acc must be a fraction in (0, 1], got {target_acc}. Pass e.g. "
                         "0.8 for 80% validation accuracy.")
    recorded = recorded_metrics(study)
    if recorded and metric not in recorded:
        raise InputError(f"No run of this study recorded {metric!r}. Pick one of the recorded "
                         f"metrics: {', '.join(sorted(recorded))}.")
    metrics = [metric, *(m for m in GRADIENT_METRICS if m != metric
                         and m in recorded)]
    summaries = {m: {name: summarize_run(run, m, target_acc=target_acc)
                     for name, run in study.runs.items()} for m in metrics}
    chance = study_chance(study)
    configurations = [summarize(name, runs, study, summaries, chance)
                      for name, runs in group_runs(study)]
    by_run = {run: c for c in configurations for run in c.runs}
    title, compared, missing = _comparison(study)
    comparison = list(dict.fromkeys(by_run[name] for name in compared))
    return StudyAnalysis(
        study=study, metric=metric, target_acc=target_acc, summaries=summaries, chance=chance,
        configurations=configurations, comparison_title=title, comparison=comparison,
        comparison_missing=missing, experiments=_experiments(study, by_run),
        twins=_twins(study, configurations), theory=check_study(study),
        diagnoses=_diagnoses(study))
