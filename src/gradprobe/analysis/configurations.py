"""Configurations: the runs that differ only by seed, and their numbers over the seeds.

This is the one place that decides "the same configuration but for the seed": two runs belong
together when their resolved configs agree in everything but `train.seed` (and study.yaml gave
them the same `configuration` name, when it gave one). A configuration's name is that
`configuration` name, else an experiment's label or the run name without its `seed=N` part.
Its numbers are `replicates.Estimate`s over its seeds (see `gradprobe.analysis.replicates`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradprobe.analysis.chance import Chance, run_at_chance
from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.replicates import ACCURACY_BOUNDS, Estimate, estimate, ratio_estimate
from gradprobe.analysis.summary import NO_VERDICT, RunAnalysis, verdict
from gradprobe.record import RunState

POINTS = ("step0", "first", "last")  # where the flow is judged: initialisation, epochs
GRADIENT_METRICS = ("weight_grad_norm", "output_grad_norm")  # the two the verdicts combine
METRIC_WORDS = {"weight_grad_norm": "weight gradient", "output_grad_norm": "output gradient"}

# `seed=N` at the start or after a separator, with the comma that follows it
_SEED_PART = re.compile(r"(?:^|(?<=[.,]))seed=-?\d+(?:,|$)")


def strip_seed(name: str) -> str:
    """A run name or label without its `seed=N` part: `e.norm=batch,seed=1` -> `e.norm=batch`,
    `vgg_deep,seed=2` -> `vgg_deep`; a label that is only a seed becomes "all seeds"."""
    return _SEED_PART.sub("", name).rstrip(".,") or "all seeds"


def config_key(run: RunData) -> str:
    """The run's resolved config as canonical JSON without `train.seed`."""
    config = json.loads(json.dumps(run.run_config, default=str))
    (config.get("train") or {}).pop("seed", None)
    return json.dumps(config, sort_keys=True)


def group_runs(study: StudyData) -> list[tuple[str, tuple[str, ...]]]:
    """(name, run names) of every configuration of the study, in the order runs are listed."""
    spec_names = {str(entry["name"]): str(entry["configuration"])
                  for entry in study.spec.get("runs") or []
                  if isinstance(entry, dict) and entry.get("name") and entry.get("configuration")}
    groups: dict[str, list[str]] = {}
    for name, run in study.runs.items():
        key = f"{spec_names.get(name, '')}\n{config_key(run)}" if run.run_config else f"-{name}"
        groups.setdefault(key, []).append(name)
    result: list[tuple[str, tuple[str, ...]]] = []
    for names in groups.values():
        seeds = [study.runs[n].section("train").get("seed") for n in names]
        if len(set(seeds)) < len(seeds):  # one config trained twice with one seed: not replicates
            result += [(strip_seed(n), (n,)) for n in names]
        else:
            result.append((spec_names.get(names[0]) or strip_seed(names[0]), tuple(names)))
    prefixes = tuple(f"{entry.get('name')}." for entry in study.spec.get("experiments") or []
                     if isinstance(entry, dict) and entry.get("name"))
    short = [(_without_prefix(name, prefixes), runs) for name, runs in result]
    if len({name for name, _ in short}) == len(short):  # "depth=8,residual=false", if unique
        result = short
    taken: dict[str, int] = {}
    for name, _ in result:
        taken[name] = taken.get(name, 0) + 1
    return [(name if taken[name] == 1 else runs[0], runs) for name, runs in result]


def _without_prefix(name: str, prefixes: tuple[str, ...]) -> str:
    """"depth.depth=8,residual=false" -> "depth=8,residual=false": the experiment's name
    prefixes every run the spec makes for it, and says nothing the label does not."""
    for prefix in prefixes:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):]
    return name


@dataclass(frozen=True, eq=False)  # identity: one object per configuration
class Configuration:
    """A configuration's numbers over its seeds (runs without a value are left out of n)."""

    name: str
    runs: tuple[str, ...]
    seeds: tuple[Any, ...]
    states: tuple[RunState, ...]
    model: dict[str, Any]  # model_info of its first run (family, residual, norm, ...)
    best_val_acc: Estimate
    final_val_acc: Estimate
    test_acc: Estimate
    at_chance_runs: int  # runs at chance (gradprobe.analysis.chance)
    judged_runs: int  # runs with an epoch to judge
    # metric -> point ("step0", "first", "last") -> first-to-last ratio over seeds
    ratios: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    first_epoch: int | None = None  # when every seed agrees on it
    last_epoch: int | None = None

    @property
    def at_chance(self) -> bool:
        """Every judged seed at chance."""
        return self.judged_runs > 0 and self.at_chance_runs == self.judged_runs

    def ratio(self, metric: str, point: str) -> Estimate | None:
        return self.ratios.get(metric, {}).get(point)

    def point_verdict(self, point: str, metric: str | None = None) -> str:
        """`metric`'s verdict at `point`; without a metric: vanishing if either gradient metric
        says so, else exploding if either does, else healthy; NO_VERDICT without a ratio."""
        metrics = [metric] if metric else list(GRADIENT_METRICS)
        found = [verdict(value.centre) for name in metrics
                 if (value := self.ratio(name, point)) is not None and value.n]
        for name in ("vanishing", "exploding", "healthy"):
            if name in found:
                return name
        return NO_VERDICT

    @property
    def verdicts(self) -> dict[str, str]:
        return {point: self.point_verdict(point) for point in POINTS}

    def _sequence(self, metric: str | None) -> str:
        where = {"step0": "step 0", "first": f"epoch {self.first_epoch or 'one'}",
                 "last": f"epoch {self.last_epoch}" if self.last_epoch else "the end"}
        known = [(point, self.point_verdict(point, metric)) for point in POINTS]
        known = [(point, value) for point, value in known if value != NO_VERDICT]
        if not known:
            return NO_VERDICT
        if len({v for _, v in known}) == 1:
            return f"{known[0][1]} throughout" if len(known) > 1 else known[0][1]
        runs: list[tuple[str, list[str]]] = []  # consecutive points with one verdict
        for point, value in known:
            if runs and runs[-1][0] == value:
                runs[-1][1].append(where[point])
            else:
                runs.append((value, [where[point]]))
        parts = []
        for index, (value, points) in enumerate(runs):
            preposition = "by" if index and points == [where["last"]] else "at"
            parts.append(f"{value} {preposition} {' and '.join(points)}")
        return ", ".join(parts)

    def verdict_text(self) -> str:
        """"vanishing throughout", "healthy at epoch 1, vanishing by epoch 7", ...: each change
        between step 0, the first and the last epoch said where it happens; the two gradient
        metrics named apart when they disagree."""
        texts = {metric: self._sequence(metric) for metric in GRADIENT_METRICS
                 if metric in self.ratios}
        distinct = {t for t in texts.values() if t != NO_VERDICT}
        if len(distinct) <= 1:
            return distinct.pop() if distinct else NO_VERDICT
        return "; ".join(f"{METRIC_WORDS[m]} {t}" for m, t in texts.items())

    def outcome(self) -> str:
        """"at chance", "at chance in 2 of 3 seeds" or ""."""
        if self.at_chance:
            return "at chance"
        if self.at_chance_runs:
            return f"at chance in {self.at_chance_runs} of {self.judged_runs} seeds"
        return ""


def _same(values: Sequence[int | None]) -> int | None:
    distinct = {v for v in values if v is not None}
    return distinct.pop() if len(distinct) == 1 else None


def summarize(name: str, runs: tuple[str, ...], study: StudyData,
              summaries: Mapping[str, Mapping[str, RunAnalysis]],
              chance: Chance | None) -> Configuration:
    """A configuration's estimates; `summaries`: metric -> run name -> RunAnalysis."""
    main = next(iter(summaries.values()))
    items = [main[n] for n in runs]
    judged = [run_at_chance(study.runs[n], chance) for n in runs]
    ratios: dict[str, dict[str, Estimate]] = {}
    for metric, by_run in summaries.items():
        points = {"step0": [by_run[n].ratio_first_step for n in runs],
                  "first": [by_run[n].first.ratio for n in runs],
                  "last": [by_run[n].last.ratio for n in runs]}
        ratios[metric] = {point: ratio_estimate(values) for point, values in points.items()}
    return Configuration(
        name=name, runs=runs,
        seeds=tuple(study.runs[n].section("train").get("seed") for n in runs),
        states=tuple(s.state for s in items), model=study.runs[runs[0]].model_info,
        best_val_acc=estimate([s.best_val_acc for s in items], bounds=ACCURACY_BOUNDS),
        final_val_acc=estimate([s.final_val_acc for s in items], bounds=ACCURACY_BOUNDS),
        test_acc=estimate([s.test_acc for s in items], bounds=ACCURACY_BOUNDS),
        at_chance_runs=sum(bool(j) for j in judged), judged_runs=sum(j is not None for j in judged),
        ratios=ratios,
        first_epoch=_same([s.first.epoch for s in items]),
        last_epoch=_same([s.last.epoch for s in items]),
    )
