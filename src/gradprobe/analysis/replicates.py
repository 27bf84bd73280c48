"""Numbers over seeds: a mean with its 95% interval, and the rule that calls a difference.

A study runs each configuration with several seeds (initialisation and batch order change, the
data split does not), so every number the report compares is an estimate with a spread.

- Scores (accuracies, losses, decay rates in dB per layer) are summarised by their arithmetic
  mean and a Student-t 95% interval, mean ± t(0.975, n-1) · s / sqrt(n).
- Ratios (first-to-last gradient ratios, which span decades) by their geometric mean and the
  same interval computed on log10 and transformed back, so it is asymmetric around the mean.
- Two configurations differ when Welch's t-test (unequal variances; on log10 for ratios) gives
  p < 0.05 with at least two seeds on each side. Otherwise the difference is "within
  seed-to-seed variation"; with one seed on either side it cannot be separated from noise at
  all, and the report says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # the intervals' coverage
SIGNIFICANCE = 0.05  # Welch's test level for calling a difference
MIN_SEEDS_TO_COMPARE = 2  # per side: below this no variance can be estimated
ACCURACY_BOUNDS = (0.0, 1.0)  # an accuracy's interval is clipped to its range


@dataclass(frozen=True)
class Estimate:
    """A quantity over seeds: centre, 95% interval (NaN with one seed), number of seeds."""

    centre: float  # arithmetic mean, or geometric mean for ratios
    low: float
    high: float
    n: int
    log_scale: bool  # a ratio: centre is geometric, the interval was computed on log10
    values: tuple[float, ...]  # the finite per-seed values it summarises

    @property
    def has_interval(self) -> bool:
        return self.n >= MIN_SEEDS_TO_COMPARE and math.isfinite(self.low)


class Verdict(str, Enum):
    """What the significance rule says of a difference between two estimates."""

    HIGHER = "higher"  # the first is higher, beyond seed-to-seed variation
    LOWER = "lower"
    WITHIN_NOISE = "within seed-to-seed variation"
    TOO_FEW_SEEDS = "cannot be separated from noise (fewer than two seeds)"


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    p_value: float  # NaN when not testable
    factor: float  # first / second for ratios, first - second otherwise


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < MIN_SEEDS_TO_COMPARE:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * stats.sem(values)
    return mean, mean - half, mean + half


def estimate(values: Sequence[float | None],
             bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean and t-interval of the finite `values` (n = how many were finite).

    `bounds` clips the interval to a quantity's range (an accuracy's [0, 1]: the t-interval of
    three seeds can pass 100%); the mean and the test in `compare` use the values unclipped.
    """
    finite = _finite(values)
    if not finite:
        return Estimate(math.nan, math.nan, math.nan, 0, False, ())
    mean, low, high = _t_interval(finite)
    if bounds is not None and math.isfinite(low):
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Estimate(mean, low, high, len(finite), False, tuple(finite))


def ratio_estimate(values: Sequence[float | None]) -> Estimate:
    """Geometric mean and back-transformed log10 t-interval of the finite, positive `values`."""
    finite = [v for v in _finite(values) if v > 0]
    if not finite:
        return Estimate(math.nan, math.nan, math.nan, 0, True, ())
    mean, low, high = _t_interval([math.log10(v) for v in finite])
    return Estimate(10**mean, 10**low, 10**high, len(finite), True, tuple(finite))


def compare(first: Estimate, second: Estimate) -> Comparison:
    """Apply the significance rule (see the module docstring) to two estimates of one kind."""
    if first.log_scale != second.log_scale:
        raise ValueError("compare a ratio with a ratio and a score with a score")
    transform = math.log10 if first.log_scale else float
    a = [transform(v) for v in first.values]
    b = [transform(v) for v in second.values]
    factor = (first.centre / second.centre if first.log_scale
              else first.centre - second.centre)
    if min(len(a), len(b)) < MIN_SEEDS_TO_COMPARE:
        return Comparison(Verdict.TOO_FEW_SEEDS, math.nan, factor)
    if np.var(a) == 0 and np.var(b) == 0:  # identical seeds on both sides: exact comparison
        p_value = 0.0 if a[0] != b[0] else 1.0
    else:
        with warnings.catch_warnings():  # nearly equal seeds: scipy warns of precision loss
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        if math.isnan(p_value):  # no usable spread on either side: nothing to call
            p_value = 1.0
    if p_value >= SIGNIFICANCE:
        return Comparison(Verdict.WITHIN_NOISE, p_value, factor)
    higher = np.mean(a) > np.mean(b)
    return Comparison(Verdict.HIGHER if higher else Verdict.LOWER, p_value, factor)


def format_estimate(value: Estimate, digits: int = 3, percent: bool = False,
                    interval: bool = True) -> str:
    """'0.823 [0.79, 0.86]'; percentages as '82.3% [79.0, 85.6]'; one seed: '0.823'; no value:
    'n/a'. The number of seeds goes in the table header, not after each number."""
    if value.n == 0:
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")

    def number(x: float) -> str:
        return f"{x * scale:.1f}" if percent else f"{x:.{digits}g}"

    centre = f"{number(value.centre)}{unit}"
    if not (interval and value.has_interval):
        return centre
    return f"{centre} [{number(value.low)}, {number(value.high)}]"
