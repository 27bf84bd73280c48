"""Theory beside measurement in the report (issue 16): the per-run check, its wording, one real
run, and the `residual` model option."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fakes import write_run, write_study
from gradprobe.analysis import load_run, write_report
from gradprobe.analysis.questions.why import theory_table
from gradprobe.analysis.theory_check import (
    AGREES,
    NO_PREDICTION,
    NOT_MEASURED,
    PARTS,
    TOLERANCE,
    border_fraction,
    check_run,
    predict_run,
    segment_fit,
)
from gradprobe.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from gradprobe.study import load_spec, plan_study
from gradprobe.theory.predict import NO_RESIDUAL_RESULT
from gradprobe.train import train

DEFAULT_RELU = math.sqrt(1.0 / 3.0 * 0.5)  # 0.408: Var(w) fan_in = 1/3, E[relu'^2] = 1/2
# plain_stack depth 5: a stem conv, 4 body convs, global average pool, the linear head
STACK = [("stem.conv", "conv", 0), ("body.0.conv1", "conv", 1), ("body.0.conv2", "conv", 2),
         ("body.1.conv1", "conv", 3), ("body.1.conv2", "conv", 4), ("fc", "linear", 5)]
STACK_MODEL = {"name": "plain_stack", "depth": 5, "width": 0.25, "init": "default",
               "activation": "relu"}


def geometric(first_step: float, later: float, head: float = 7.0):
    """output_grad_norm falling by `first_step` per layer toward the input at step 0 and by
    `later` afterwards; the head (across the global pool) off the line on purpose."""
    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        if kind == "linear":
            return head
        return (first_step if step == 0 else later) ** (4 - depth)
    return norm_of


# ---------------------------------------------------------------------------- the fit
def test_segment_fit_matches_least_squares_with_one_intercept_per_segment() -> None:
    rng = np.random.default_rng(0)
    log_norms = list(rng.normal(size=9))
    linked = [True, True, True, False, True, True, True, True]  # a pool between 3 and 4
    log_norms[6] = None  # a missing layer splits the second stretch too
    factor, r2, transitions = segment_fit(log_norms, linked)
    # naive reference: a design matrix with the index and one indicator column per segment
    segments = [[0, 1, 2, 3], [4, 5], [7, 8]]
    rows = [(index, segment) for segment, members in enumerate(segments) for index in members]
    design = np.zeros((len(rows), 1 + len(segments)))
    target = np.array([log_norms[index] for index, _ in rows])
    for row, (index, segment) in enumerate(rows):
        design[row, 0], design[row, 1 + segment] = index, 1.0
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = design @ coefficients
    centred = np.concatenate([target[[r for r, (_, s) in enumerate(rows) if s == k]]
                              - target[[r for r, (_, s) in enumerate(rows) if s == k]].mean()
                              for k in range(len(segments))])
    assert factor == pytest.approx(math.exp(-coefficients[0]), rel=1e-12)
    assert r2 == pytest.approx(1.0 - np.sum((target - fitted) ** 2) / np.sum(centred**2),
                               rel=1e-12)
    assert transitions == 3 + 1 + 1


def test_border_fraction_counts_the_taps_inside_the_map() -> None:
    for size in (1, 2, 4, 16):
        inside = sum(1 for y in range(size) for x in range(size) for dy in (-1, 0, 1)
                     for dx in (-1, 0, 1) if 0 <= y + dy < size and 0 <= x + dx < size)
        assert border_fraction(3, size, size) == pytest.approx(inside / (9 * size * size))


def test_border_correction_cancels_under_batch_norm(tmp_path: Path) -> None:
    """Without a norm the gain scales by sqrt(share); a batch norm divides by the std the same
    borders shrank, so on equal maps the correction cancels."""
    share = border_fraction(3, 32, 32)  # the fakes' 32x32 images, kept by every conv
    for norm, expected in (("none", math.sqrt(share)), ("batch", 1.0)):
        run_dir = write_run(tmp_path, norm, layers=STACK, model={**STACK_MODEL, "norm": norm})
        theory = predict_run(load_run(run_dir))
        pairs = [(border, gain) for border, gain
                 in zip(theory.border_gains, theory.prediction.gains, strict=True) if gain]
        assert len(pairs) == 4
        assert [border / gain for border, gain in pairs] == pytest.approx([expected] * 4)


# ---------------------------------------------------------------------------- fake runs
def test_first_step_profile_is_compared_not_the_epoch_mean(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "stack", layers=STACK, norm_of=geometric(0.42, 0.8),
                        model=STACK_MODEL, epochs=2, steps_per_epoch=3)
    check = check_run(load_run(run_dir))
    assert check.step == 0
    assert check.measured == pytest.approx(0.42, rel=1e-9)  # step 0 only: the later 0.8 ignored
    assert check.predicted == pytest.approx(DEFAULT_RELU, rel=1e-9)
    assert check.ratio == pytest.approx(0.42 / DEFAULT_RELU, rel=1e-9)
    assert check.agreement == AGREES  # 3% off, inside the tolerance
    assert (check.transitions, check.skipped) == (4, 1)  # conv -> fc crosses the global pool
    assert check.measured_last == pytest.approx(0.8, rel=1e-9)  # epoch 2's mean: all 0.8
    row = theory_table([check]).rows[0]
    assert (row[0], row[1], row[3], row[5]) == ("stack", "0.408", "0.42", "0.8")
    assert row[6].startswith(AGREES)


def test_a_profile_outside_the_tolerance_parts_with_its_facts(tmp_path: Path) -> None:
    factor = DEFAULT_RELU * (1.0 - 2 * TOLERANCE)
    run_dir = write_run(tmp_path, "steep", layers=STACK, norm_of=geometric(factor, factor),
                        model=STACK_MODEL, epochs=1)
    check = check_run(load_run(run_dir))
    assert check.agreement == PARTS
    assert check.narrowest == 8 and check.batch_size == 32  # 32 * 0.25 channels; the fake's
    assert check.ratio == pytest.approx(0.8, rel=1e-9)
    row = theory_table([check]).rows[0]
    assert (row[3], row[4]) == ("0.327", "0.8")
    assert row[6] == f"{PARTS}; 4 transitions, R² 1.000"


def test_no_prediction_shows_the_reason_and_no_numbers(tmp_path: Path) -> None:
    layers = [("stem.conv", "conv", 0), ("body.0.conv", "conv", 1), ("fc", "linear", 2)]
    residual = write_run(tmp_path / "runs", "residual", layers=layers,
                         model={"name": "residual_stack", "depth": 3, "init": "default"})
    unknown = write_run(tmp_path / "runs", "custom", model={"name": "my_net"})
    blind = write_run(tmp_path / "runs", "blind", layers=STACK, model=STACK_MODEL,
                      metrics=("weight_grad_norm",))
    study_dir = write_study(tmp_path, ["residual", "custom", "blind"])
    checks = [check_run(load_run(path)) for path in (residual, unknown, blind)]
    assert [check.agreement for check in checks] == [NO_PREDICTION, NO_PREDICTION, NOT_MEASURED]
    assert all(check.measured is None and check.predicted is None for check in checks)
    notes = [row[6] for row in theory_table(checks).rows]
    assert notes[0] == f"no prediction: {NO_RESIDUAL_RESULT}"
    assert notes[1].startswith("no prediction: model 'my_net'")
    assert notes[2].startswith("not measured: the run did not record output_grad_norm, the "
                               "quantity the theory predicts")
    report = write_report(study_dir)["md"].read_text(encoding="utf-8")
    assert NO_RESIDUAL_RESULT.split(":")[0].replace("_", "\\_") in report  # in the appendix
    assert [row[1:5] for row in theory_table(checks).rows] == [("n/a", "n/a", "n/a", "n/a")] * 3


# ---------------------------------------------------------------------------- a real run
def test_real_plain_relu_stack_measures_the_predicted_0408(tmp_path: Path) -> None:
    """PyTorch's default init, ReLU, 32 channels: the report's first-step factor is within
    TOLERANCE of 0.408 (16x16 maps: the borders alone predict 0.391)."""
    config = RunConfig(
        model=ModelConfig(name="plain_stack", depth=10, width=1.0, init="default"),
        data=DataConfig(image_size=16, images_per_class=16),
        train=TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=2),
        probe=ProbeConfig(metrics=("output_grad_norm", "weight_grad_norm")))
    run_dir = tmp_path / "plain"
    train(config, run_dir)
    report = write_report(run_dir)["md"].read_text()
    row = re.search(r"\| plain \| 0\.408 \| (0\.\d+) \| (0\.\d+) \| ([\d.]+) \|", report)
    assert row, report[report.find("Theory beside"):][:2000]
    border, measured, ratio = map(float, row.groups())
    assert border == pytest.approx(DEFAULT_RELU * math.sqrt(border_fraction(3, 16, 16)),
                                   abs=5e-4)
    assert abs(measured / DEFAULT_RELU - 1.0) <= TOLERANCE
    assert ratio == pytest.approx(measured / DEFAULT_RELU, abs=2e-3)


def test_analysis_import_stays_torch_free() -> None:
    code = "import gradprobe.analysis, sys; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- residual option
def test_residual_is_an_ordinary_model_option() -> None:
    assert ModelConfig(name="resnet", residual=False).builder_options()["residual"] is False
    assert "residual" not in ModelConfig(name="resnet").builder_options()  # family default
    spec = load_spec({"name": "r", "experiments": [
        {"name": "skip", "base": {"model": "resnet", "options": {"depth": 8}},
         "axes": {"residual": [False, True]}},
        {"name": "opt", "base": {"model": "resnet", "options": {"depth": 8}},
         "axes": {"init": ["default"]}}]})
    runs = {run.name: run.config.model for run in plan_study(spec, preset="smoke").runs}
    # the axis still swaps in the registered twin and leaves the option unset, as before
    assert runs["skip.residual=false"].name == "plain"
    assert runs["skip.residual=false"].residual is None
    assert runs["skip.residual=true"].residual is None
    assert ModelConfig(name="plain", residual=True).residual is True
