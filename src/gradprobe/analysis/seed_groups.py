"""A configuration's seeds grouped by what their diagnoses say: one group per (outcome, cause),
failing seeds (at chance, diverged) first, so a configuration's story is told over every seed.

Pure: the caller passes each run's diagnosis and outcome; `group_seeds` only sorts and groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gradprobe.analysis.events import HEALTHY, ROOT_KINDS, SYMPTOM_KINDS, Diagnosis, Event

AT_CHANCE = "at chance"
DIVERGED = "diverged"
LEARNED = "learned"  # neither at chance nor diverged
OUTCOME_ORDER = (AT_CHANCE, DIVERGED, LEARNED)


@dataclass(frozen=True)
class SeedGroup:
    """Seeds of one configuration that end the same way for the same cause."""

    outcome: str  # one of OUTCOME_ORDER
    cause: str  # an event kind, or "healthy"
    runs: tuple[str, ...]
    seeds: tuple[str, ...]  # how the report names each run's seed ("0", or the run's name)
    diagnoses: tuple[Diagnosis, ...]

    @property
    def failing(self) -> bool:
        return self.outcome != LEARNED

    def cause_events(self) -> list[Event]:
        """Each seed's cause event (seeds without one left out)."""
        return [d.cause_event for d in self.diagnoses if d.cause_event is not None]

    def follow_on(self) -> list[tuple[str, list[tuple[str, Event]]]]:
        """Kinds that followed the cause, earliest first (at one step root kinds before
        symptoms; events known only by epoch last), each with the (seed, first event of that
        kind) of every seed that had it."""
        kinds = [*ROOT_KINDS, *SYMPTOM_KINDS]
        found: dict[str, list[tuple[str, Event]]] = {}
        for seed, diagnosis in zip(self.seeds, self.diagnoses, strict=True):
            for kind in kinds:
                if kind == diagnosis.cause:
                    continue
                first = next((e for e in diagnosis.events if e.kind == kind), None)
                if first is not None:
                    found.setdefault(kind, []).append((seed, first))
        ordered = sorted((kind for kind in kinds if kind in found),
                         key=lambda kind: (_earliest(found[kind]), kinds.index(kind)))
        return [(kind, found[kind]) for kind in ordered]


def _earliest(entries: list[tuple[str, Event]]) -> float:
    steps = [event.step for _, event in entries if event.step is not None]
    return float(min(steps)) if steps else math.inf


def outcome_of(at_chance: bool | None, diverged: bool) -> str:
    if diverged:
        return DIVERGED
    return AT_CHANCE if at_chance else LEARNED


def group_seeds(runs: Sequence[str], seeds: Sequence[str], diagnoses: Mapping[str, Diagnosis],
                outcomes: Mapping[str, str]) -> list[SeedGroup]:
    """Groups of seeds with a diagnosis, failing outcomes first, then larger groups first;
    healthy seeds form groups of their own (cause "healthy")."""
    keyed: dict[tuple[str, str], list[tuple[str, str, Diagnosis]]] = {}
    for run, seed in zip(runs, seeds, strict=True):
        if run in diagnoses:
            key = (outcomes.get(run, LEARNED), diagnoses[run].cause)
            keyed.setdefault(key, []).append((run, seed, diagnoses[run]))
    groups = [SeedGroup(outcome, cause, tuple(m[0] for m in members),
                        tuple(m[1] for m in members), tuple(m[2] for m in members))
              for (outcome, cause), members in keyed.items()]
    return sorted(groups, key=lambda g: (OUTCOME_ORDER.index(g.outcome), g.cause == HEALTHY,
                                         -len(g.runs)))
