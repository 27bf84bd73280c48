"""The arithmetic over seeds, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from gradprobe.analysis.replicates import (
    Verdict,
    compare,
    estimate,
    format_estimate,
    ratio_estimate,
)

T_975_DF2 = 4.302652729911275  # Student t quantile, 0.975, 2 degrees of freedom (tables)


def test_mean_and_t_interval() -> None:
    value = estimate([0.8, 0.9, 1.0, None, float("nan")])
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # s = 0.1
    assert value.n == 3 and value.centre == pytest.approx(0.9)
    assert (value.low, value.high) == pytest.approx((0.9 - half, 0.9 + half))
    assert format_estimate(value, percent=True) == "90.0% [65.2, 114.8] (n=3)"


def test_geometric_mean_and_log_interval() -> None:
    value = ratio_estimate([0.01, 0.1, 1.0, 0.0])  # the 0 has no logarithm: left out
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # log10 values -2, -1, 0: s = 1
    assert value.n == 3 and value.centre == pytest.approx(0.1)
    assert value.low == pytest.approx(10 ** (-1 - half))
    assert value.high == pytest.approx(10 ** (-1 + half))


def test_one_seed_has_no_interval() -> None:
    value = estimate([0.7])
    assert value.n == 1 and not value.has_interval and math.isnan(value.low)
    assert format_estimate(value, percent=True) == "70.0% (n=1)"
    assert format_estimate(estimate([])) == "n/a (n=0)"


def test_welch_p_value_matches_a_worked_example() -> None:
    # t = -3 / sqrt(1/3 + 1/3) = -3.674, Welch df = 4: two-sided p = 0.02131 (R: t.test)
    result = compare(estimate([1, 2, 3]), estimate([4, 5, 6]))
    assert result.p_value == pytest.approx(0.021311641, rel=1e-6)
    assert result.verdict is Verdict.LOWER and result.factor == pytest.approx(-3.0)


def test_rule_separates_noise_from_differences() -> None:
    clear = compare(estimate([0.80, 0.81, 0.82]), estimate([0.60, 0.61, 0.62]))
    assert clear.verdict is Verdict.HIGHER
    noisy = compare(estimate([0.80, 0.60, 0.70]), estimate([0.72, 0.68, 0.75]))
    assert noisy.verdict is Verdict.WITHIN_NOISE and noisy.p_value > 0.05
    single = compare(estimate([0.9]), estimate([0.1, 0.2]))
    assert single.verdict is Verdict.TOO_FEW_SEEDS and math.isnan(single.p_value)
    exact = compare(estimate([0.5, 0.5]), estimate([0.4, 0.4]))
    assert exact.verdict is Verdict.HIGHER


def test_ratios_are_compared_on_log10() -> None:
    result = compare(ratio_estimate([1e-3, 2e-3, 4e-3]), ratio_estimate([0.5, 1.0, 2.0]))
    assert result.verdict is Verdict.LOWER
    assert result.factor == pytest.approx(2e-3 / 1.0)
    with pytest.raises(ValueError, match="ratio with a ratio"):
        compare(ratio_estimate([1.0, 2.0]), estimate([1.0, 2.0]))
