"""Replicates: runs that differ only by seed form a configuration, summarised over its seeds.

A study trains each configuration with several seeds (`TrainConfig.seed`: initialisation and
batch order); the split (`DataConfig.seed`) stays fixed. Two runs belong to one configuration
when their resolved configs agree in everything but `train.seed`. A configuration's name is the
one the study spec wrote for it (`configuration` in study.yaml), else the run's name without its
seed suffix (`vgg_deep,seed=1` -> `vgg_deep`). Its numbers are `replicates.Estimate`s: means with
95% t-intervals for scores, geometric means for ratios (see `gradprobe.analysis.replicates`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.replicates import ACCURACY_BOUNDS, Estimate, estimate, ratio_estimate
from gradprobe.analysis.summary import RunAnalysis, run_epoch_means
from gradprobe.record import GradCol, RunState

# `seed=N` at the start or after a separator, with the comma that follows it
_SEED_PART = re.compile(r"(?:^|(?<=[.,]))seed=-?\d+(?:,|$)")


def strip_seed(name: str) -> str:
    """A run name or label without its `seed=N` part: `e.norm=batch,seed=1` -> `e.norm=batch`,
    `vgg_deep,seed=2` -> `vgg_deep`; a label that is only a seed becomes "all seeds"."""
    stripped = _SEED_PART.sub("", name).rstrip(".,")
    return stripped or "all seeds"


@dataclass(frozen=True)
class Configuration:
    """Runs that differ only by seed, in the order the study lists them."""

    name: str  # the label shown in tables, figures and sentences
    runs: tuple[str, ...]
    seeds: tuple[int | None, ...]  # each run's TrainConfig.seed (None when not recorded)


def _key(run: RunData) -> str:
    """The run's config as canonical JSON without `train.seed`: equal keys, one configuration."""
    config = json.loads(json.dumps(run.run_config, default=str))
    (config.get("train") or {}).pop("seed", None)
    return json.dumps(config, sort_keys=True)


def _spec_configurations(study: StudyData) -> dict[str, str]:
    """Run name -> the configuration name study.yaml recorded for it."""
    names = {}
    for entry in study.spec.get("runs") or []:
        if isinstance(entry, dict) and entry.get("name") and entry.get("configuration"):
            names[str(entry["name"])] = str(entry["configuration"])
    return names


def group_configurations(study: StudyData, names: Sequence[str] | None = None,
                         labels: Mapping[str, str] | None = None) -> list[Configuration]:
    """Group `names` (default: every run of the study) into configurations, first-seen order.

    `labels` (run name -> label, as an experiment's variants) names the groups; the seed part
    of a label is dropped. A run with no recorded config (never started) is its own group.
    """
    names = list(study.runs) if names is None else [n for n in names if n in study.runs]
    spec_names = _spec_configurations(study)
    groups: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    def title_of(name: str) -> str:
        if labels is not None and name in labels:
            return strip_seed(str(labels[name]))
        return spec_names.get(name) or strip_seed(name)

    for name in names:
        run = study.runs[name]
        key = (f"{spec_names.get(name, '')}\n{_key(run)}" if run.run_config
               else f"missing:{name}")
        groups.setdefault(key, []).append(name)
        titles.setdefault(key, title_of(name))
    result = []
    for key, runs in groups.items():
        runs = list(dict.fromkeys(runs))
        seeds = [study.runs[n].run_config.get("train", {}).get("seed") for n in runs]
        if len(set(seeds)) < len(seeds):  # same config, same seed: not replicates of each other
            result += [Configuration(title_of(n), (n,), (seed,))
                       for n, seed in zip(runs, seeds, strict=True)]
        else:
            result.append(Configuration(titles[key], tuple(runs), tuple(seeds)))
    return _unique_titles(result)


def _unique_titles(groups: list[Configuration]) -> list[Configuration]:
    """Two configurations may share a title (two runs of one label): name them by their runs."""
    seen: dict[str, int] = {}
    for group in groups:
        seen[group.name] = seen.get(group.name, 0) + 1
    return [group if seen[group.name] == 1
            else Configuration(strip_seed(group.runs[0]), group.runs, group.seeds)
            for group in groups]


@dataclass(frozen=True)
class ConfigurationSummary:
    """A configuration's numbers over its seeds (runs without a value are left out of n)."""

    name: str
    runs: tuple[str, ...]
    states: tuple[RunState, ...]
    best_val_acc: Estimate
    test_acc: Estimate
    ratio_first: Estimate  # first-to-last ratio at the first epoch (geometric)
    ratio_last: Estimate  # at the last epoch with finite values
    factor_first: Estimate  # decay factor per layer at the first epoch (geometric)
    db_first: Estimate  # the same in dB per layer (arithmetic)
    first_epoch: int | None  # the first epoch, when every seed agrees on it
    last_epoch: int | None

    @property
    def seeds(self) -> int:
        return len(self.runs)


def _same(values: Sequence[int | None]) -> int | None:
    distinct = {v for v in values if v is not None}
    return distinct.pop() if len(distinct) == 1 else None


def summarize_configuration(group: Configuration,
                            summaries: Mapping[str, RunAnalysis]) -> ConfigurationSummary:
    """Estimates of accuracy, ratios and decay over the group's runs."""
    items = [summaries[name] for name in group.runs]
    return ConfigurationSummary(
        name=group.name, runs=group.runs, states=tuple(s.state for s in items),
        best_val_acc=estimate([s.best_val_acc for s in items], bounds=ACCURACY_BOUNDS),
        test_acc=estimate([s.test_acc for s in items], bounds=ACCURACY_BOUNDS),
        ratio_first=ratio_estimate([s.first.ratio for s in items]),
        ratio_last=ratio_estimate([s.last.ratio for s in items]),
        factor_first=ratio_estimate([s.first.decay_per_layer for s in items]),
        db_first=estimate([s.first.db_per_layer for s in items]),
        first_epoch=_same([s.first.epoch for s in items]),
        last_epoch=_same([s.last.epoch for s in items]),
    )


def summarize_configurations(study: StudyData, summaries: Mapping[str, RunAnalysis],
                             names: Sequence[str] | None = None,
                             labels: Mapping[str, str] | None = None
                             ) -> list[ConfigurationSummary]:
    """`group_configurations`, each summarised."""
    return [summarize_configuration(group, summaries)
            for group in group_configurations(study, names, labels)]


def group_runs(study: StudyData, groups: Sequence[ConfigurationSummary | Configuration]
               ) -> dict[str, list[RunData]]:
    """Configuration name -> its runs' records, as the figures take them."""
    return {group.name: [study.runs[name] for name in group.runs] for group in groups}


def max_seeds(groups: Sequence[ConfigurationSummary | Configuration]) -> int:
    """The most runs any of `groups` holds (1: no configuration has replicates)."""
    return max((len(group.runs) for group in groups), default=0)


# ---------------------------------------------------------------------------- per-layer bands
def profile_band(runs: Sequence[RunData], metric: str, which: str) -> pd.DataFrame:
    """Per layer at the runs' first (`which="first"`) or last epoch with finite values: the
    geometric mean of the epoch-mean `metric` over the runs and its min and max.

    Columns: layer, depth, kind, centre, low, high, n. Layers are matched by name.
    """
    rows = []
    for run in runs:
        means = run_epoch_means(run, metric)
        finite = means.loc[np.isfinite(means["mean"]) & (means["mean"] > 0)]
        if finite.empty:
            continue
        epoch = finite[GradCol.epoch].min() if which == "first" else finite[GradCol.epoch].max()
        rows.append(finite.loc[finite[GradCol.epoch] == epoch,
                               [GradCol.layer, GradCol.depth, GradCol.kind, "mean"]])
    columns = [GradCol.layer, GradCol.depth, GradCol.kind, "centre", "low", "high", "n"]
    if not rows:
        return pd.DataFrame({column: pd.Series(dtype="float64") for column in columns})
    joined = pd.concat(rows, ignore_index=True)
    joined["log"] = np.log10(joined["mean"].to_numpy(dtype="float64"))
    band = joined.groupby([GradCol.layer, GradCol.depth, GradCol.kind], sort=False).agg(
        centre=("log", "mean"), low=("mean", "min"), high=("mean", "max"),
        n=("mean", "count")).reset_index()
    band["centre"] = 10.0 ** band["centre"]
    band = band.sort_values([GradCol.depth, GradCol.layer], kind="stable")
    return band[columns].reset_index(drop=True)


def curve_band(runs: Sequence[RunData], column: str) -> pd.DataFrame:
    """Per epoch: the mean of metrics.csv `column` over the runs with a finite value, its min
    and max. Columns: epoch, centre, low, high, n."""
    frames = [run.metrics[["epoch", column]] for run in runs if not run.metrics.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64")
                             for c in ("epoch", "centre", "low", "high", "n")})
    joined = pd.concat(frames, ignore_index=True)
    joined = joined.loc[np.isfinite(joined[column].to_numpy(dtype="float64"))]
    band = joined.groupby("epoch").agg(centre=(column, "mean"), low=(column, "min"),
                                       high=(column, "max"), n=(column, "count")).reset_index()
    return band.sort_values("epoch").reset_index(drop=True)


def end_layer_values(run: RunData, metric: str, first: str, last: str
                     ) -> tuple[float, float] | None:
    """`metric` of layers `first` and `last` at the run's last recorded step (None if absent)."""
    rows = run.gradients.loc[run.gradients[GradCol.metric] == metric]
    if rows.empty:
        return None
    at = rows.loc[rows[GradCol.step] == rows[GradCol.step].max()].set_index(GradCol.layer)
    if first not in at.index or last not in at.index:
        return None
    values = float(at.at[first, GradCol.value]), float(at.at[last, GradCol.value])
    return values if all(math.isfinite(v) for v in values) else None
