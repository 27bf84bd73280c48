"""The arithmetic over seeds, on numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from fakes import vgg_layers, write_run, write_study
from gradprobe import record
from gradprobe.analysis import load_study, write_report
from gradprobe.analysis.configurations import group_runs, strip_seed
from gradprobe.analysis.figures import compare as compare_figures
from gradprobe.analysis.questions.common import accuracy_difference
from gradprobe.analysis.replicates import (
    Verdict,
    compare,
    estimate,
    format_estimate,
    ratio_estimate,
)
from gradprobe.analysis.study import build

T_975_DF2 = 4.302652729911275  # Student t quantile, 0.975, 2 degrees of freedom (tables)


def test_mean_and_t_interval() -> None:
    value = estimate([0.8, 0.9, 1.0, None, float("nan")])
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # s = 0.1
    assert value.n == 3 and value.centre == pytest.approx(0.9)
    assert (value.low, value.high) == pytest.approx((0.9 - half, 0.9 + half))
    assert format_estimate(value, percent=True) == "90.0% [65.2, 114.8]"


def test_geometric_mean_and_log_interval() -> None:
    value = ratio_estimate([0.01, 0.1, 1.0, 0.0])  # the 0 has no logarithm: left out
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # log10 values -2, -1, 0: s = 1
    assert value.n == 3 and value.centre == pytest.approx(0.1)
    assert value.low == pytest.approx(10 ** (-1 - half))
    assert value.high == pytest.approx(10 ** (-1 + half))


def test_one_seed_has_no_interval() -> None:
    value = estimate([0.7])
    assert value.n == 1 and not value.has_interval and math.isnan(value.low)
    assert format_estimate(value, percent=True) == "70.0%"
    assert format_estimate(estimate([])) == "n/a"


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


# ---------------------------------------------------------------------------- configurations
# Two configurations x three seeds, written as the trainer would; every number below is worked
# out by hand from what the fakes write.
BEST_A = (0.60, 0.65, 0.70)  # vgg_deep's best validation accuracy per seed
BEST_B = (0.90, 0.92, 0.94)  # vgg_bn's
FACTOR_A = (0.5, 0.6, 0.7)  # vgg_deep's norms change by this factor per layer, per seed
METRICS = ("weight_grad_norm", "output_grad_norm", "weight_distance")


def _t_interval(values: tuple[float, ...]) -> tuple[float, float, float]:
    """Naive mean and 95% t-interval for three values (2 degrees of freedom)."""
    mean = sum(values) / len(values)
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = T_975_DF2 * s / math.sqrt(len(values))
    return mean, mean - half, mean + half


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replicated")
    names, spec_runs = [], []
    for seed, (best_a, best_b, factor) in enumerate(zip(BEST_A, BEST_B, FACTOR_A, strict=True)):
        a, b = f"vgg_deep,seed={seed}", f"vgg_bn,seed={seed}"
        write_run(root / "runs", a, layers=vgg_layers(5), seed=seed, metrics=METRICS,
                  val_acc=[0.3, 0.5, best_a],
                  norm_of=lambda d, k, e, s, m, f=factor: f ** (4 - d))
        write_run(root / "runs", b, layers=vgg_layers(5), seed=seed, metrics=METRICS,
                  val_acc=[0.3, 0.5, best_b], model={"norm": "batch"},
                  model_info={"norm": "batch"}, norm_of=lambda d, k, e, s, m: 1.0)
        names += [a, b]
        spec_runs += [{"name": a, "configuration": "vgg_deep"},
                      {"name": b, "configuration": "vgg_bn"}]
    experiment = {"name": "bn", "title": "Batch norm", "axes": {"norm": ["none", "batch"]},
                  "runs": names, "labels": {n: "norm=none" if n.startswith("vgg_deep")
                                            else "norm=batch" for n in names}}
    write_study(root, names, comparison=names, experiments=[experiment])
    spec = record.read_run_file(root / record.STUDY_FILE)
    record.write_study_file(root, {**spec, "runs": spec_runs, "seeds": [0, 1, 2]})
    write_report(root)
    return root


def test_runs_that_differ_only_by_seed_form_one_configuration(replicated: Path) -> None:
    study = load_study(replicated)
    assert [(name, len(runs)) for name, runs in group_runs(study)] == [("vgg_deep", 3),
                                                                      ("vgg_bn", 3)]
    assert [c.seeds for c in build(study).configurations] == [(0, 1, 2), (0, 1, 2)]
    # the same config under the same seed is not a replicate: each run stays its own
    for name in ("p", "q"):
        write_run(replicated / "other" / "runs", name)
    write_study(replicated / "other", ["p", "q"])
    assert [runs for _, runs in group_runs(load_study(replicated / "other"))] == [
        ("p",), ("q",)]


def test_configuration_numbers_match_a_naive_computation(replicated: Path) -> None:
    deep, bn = build(load_study(replicated)).configurations
    mean, low, high = _t_interval(BEST_A)
    assert (deep.best_val_acc.centre, deep.best_val_acc.low, deep.best_val_acc.high) == \
        pytest.approx((mean, low, high))
    assert deep.test_acc.centre == pytest.approx(mean)  # the fakes test at the last epoch
    logs = tuple(4 * math.log10(f) for f in FACTOR_A)  # ratio first/last conv = f ** 4
    log_mean, log_low, log_high = _t_interval(logs)
    first = deep.ratio("weight_grad_norm", "first")
    assert (first.centre, first.low, first.high) == \
        pytest.approx((10 ** log_mean, 10 ** log_low, 10 ** log_high))
    # every step has the same profile, so step 0 and the last epoch agree with the first
    for point in ("step0", "last"):
        assert deep.ratio("weight_grad_norm", point).centre == pytest.approx(10 ** log_mean)
    assert bn.ratio("weight_grad_norm", "first").centre == pytest.approx(1.0)
    assert bn.ratio("weight_grad_norm", "first").n == 3


def test_tables_give_intervals_and_differences_are_called_by_the_rule(replicated: Path) -> None:
    text = (replicated / "report.md").read_text(encoding="utf-8")
    mean, low, high = _t_interval(BEST_A)
    cell = f"{100 * mean:.1f}% \\[{100 * low:.1f}, {100 * high:.1f}\\]"  # escaped brackets
    assert f"| vgg\\_deep | 3 | {cell}" in text
    assert "(n=3)" not in text  # n goes in the table, not after every number
    deep, bn = build(load_study(replicated)).configurations
    # BEST_B against BEST_A: Welch's t = 8.4 on ~2.6 degrees of freedom, p ~ 0.005
    assert accuracy_difference(bn, deep) == "+27.0 points, beyond seed-to-seed variation"


def test_overlapping_seeds_are_within_seed_to_seed_variation() -> None:
    assert compare(estimate([0.60, 0.80, 0.70]), estimate([0.65, 0.75, 0.72])).verdict \
        is Verdict.WITHIN_NOISE
    assert compare(estimate([0.6]), estimate([0.9])).verdict is Verdict.TOO_FEW_SEEDS


def _captured_figure(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    captured: list[Figure] = []
    monkeypatch.setattr(compare_figures, "save_figure",
                        lambda fig, path: captured.append(fig) or path)
    return captured


@pytest.mark.parametrize("replicates", [True, False])
def test_figures_draw_a_band_only_for_replicates(replicated: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 replicates: bool) -> None:
    study = load_study(replicated)
    groups = {name: [study.runs[n] for n in runs] for name, runs in group_runs(study)}
    if not replicates:
        groups = {name: runs[:1] for name, runs in groups.items()}
    captured = _captured_figure(monkeypatch)
    compare_figures.plot_training_curves(groups, tmp_path / "curves.png", "curves")
    compare_figures.plot_depth_profiles(groups, ["weight_grad_norm", "weight_distance"],
                                        tmp_path / "profile.png", "profile")
    compare_figures.plot_experiment(groups, "weight_grad_norm", tmp_path / "exp.png", "exp")
    for fig in captured:
        bands = [artist for ax in fig.axes for artist in ax.collections
                 if isinstance(artist, PolyCollection)]
        lines = [line for ax in fig.axes for line in ax.lines]
        assert lines  # the mean lines are always drawn
        assert bool(bands) is replicates


def test_a_single_seed_study_never_calls_a_difference(tmp_path: Path) -> None:
    for name, best in (("a", 0.6), ("b", 0.9)):
        write_run(tmp_path / "runs", name, val_acc=[0.3, 0.5, best],
                  model={"name": name}, metrics=METRICS)
    write_study(tmp_path, ["a", "b"], comparison=["a", "b"])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    a, b = build(load_study(tmp_path)).configurations
    assert accuracy_difference(b, a) == "+30.0 points, one seed: not separable from noise"
    assert "beyond seed-to-seed variation" not in text


@pytest.mark.parametrize(("name", "stripped"), [
    ("e.norm=batch,seed=1", "e.norm=batch"), ("vgg_deep,seed=2", "vgg_deep"),
    ("e.seed=1,norm=batch", "e.norm=batch"), ("seed=1,norm=batch", "norm=batch"),
    ("seed=3", "all seeds"), ("myseed=1", "myseed=1"), ("vgg_deep", "vgg_deep")])
def test_strip_seed(name: str, stripped: str) -> None:
    assert strip_seed(name) == stripped


def test_bounds_clip_the_interval_not_the_mean() -> None:
    clipped = estimate([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    free = estimate([0.9, 1.0, 1.0])
    assert free.high > 1.0 and clipped.high == 1.0
    assert clipped.centre == pytest.approx(free.centre) and clipped.low == pytest.approx(free.low)
    assert clipped.values == free.values  # the test in compare() sees the raw seeds
