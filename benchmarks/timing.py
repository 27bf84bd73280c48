"""Ratios measured the only way that holds on a shared, noisy machine.

A candidate and its baseline run in the same process, interleaved in rounds (A B A B ...), and
each round gives one ratio; we report the median ratio with its min-max across rounds. Absolute
times vary with the machine's load; ratios of neighbours in time hold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float
    candidate_seconds: float  # median seconds of one candidate call
    baseline_seconds: float  # median seconds of one baseline call
    rounds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def interleaved_ratio(candidate: Callable[[], Any], baseline: Callable[[], Any], *,
                      rounds: int, warmup: int = 1,
                      timer: Callable[[Callable[[], Any]], float] | None = None) -> Ratio:
    """Time `candidate` against `baseline`, alternating which goes first in each round."""
    timer = timer or wall_seconds
    for _ in range(warmup):
        candidate()
        baseline()
    ratios, cand_times, base_times = [], [], []
    for index in range(rounds):
        if index % 2 == 0:
            cand, base = timer(candidate), timer(baseline)
        else:
            base, cand = timer(baseline), timer(candidate)
        ratios.append(cand / base)
        cand_times.append(cand)
        base_times.append(base)
    return Ratio(statistics.median(ratios), min(ratios), max(ratios),
                 statistics.median(cand_times), statistics.median(base_times), rounds)


def wall_seconds(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started
