"""Analysis numbers on run directories built by hand with known values.

The run directories come from `fakes.py`, which writes them through `gradprobe.record`, so these
tests need neither torch nor a trainer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import gradient_frame, resnet_layers, vgg_layers, write_run, write_study
from gradprobe import record
from gradprobe.analysis import (
    VERDICT_THRESHOLDS,
    decay_fit,
    epochs_to_target,
    layer_epoch_means,
    layer_ratio,
    load_run,
    load_study,
    summarize_run,
    verdict,
    write_report,
)
from gradprobe.errors import InputError


# ---------------------------------------------------------------------------- exact numbers
def test_halving_norms_give_exact_ratio_decay_db_and_vanishing(tmp_path: Path) -> None:
    # linear layers get huge norms: they are drawn but must not enter the ratio or the fit
    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        return 1e6 if kind == "linear" else 2.0 ** (depth - 4)

    run = load_run(write_run(tmp_path, "halving", layers=vgg_layers(5), norm_of=norm_of))
    summary = summarize_run(run)
    assert summary.first_layer == "features.0" and summary.last_layer == "features.8"
    assert summary.first.ratio == 2.0 ** -4  # exact: powers of two
    assert summary.last.ratio == 2.0 ** -4
    assert summary.first.decay_per_layer == pytest.approx(0.5, rel=1e-12)
    assert summary.first.db_per_layer == pytest.approx(10 * math.log10(0.5), rel=1e-12)
    assert round(summary.first.db_per_layer, 2) == -3.01
    assert summary.first.r2 == pytest.approx(1.0, abs=1e-12)
    assert summary.first.layers == 5
    assert summary.first.verdict == summary.last.verdict == "vanishing"
    assert (summary.first.epoch, summary.last.epoch) == (1, 3)
    assert summary.ratio_first_step == 2.0 ** -4
    json.dumps(summary.as_dict(), allow_nan=False)  # JSON-friendly


def test_doubling_towards_input_is_exploding(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "doubling", layers=vgg_layers(6),
                             norm_of=lambda d, k, e, s, m: 2.0 ** -d))
    summary = summarize_run(run)
    assert summary.first.ratio == 32.0
    assert summary.first.decay_per_layer == pytest.approx(2.0, rel=1e-12)
    assert summary.first.db_per_layer == pytest.approx(3.0103, abs=1e-4)
    assert summary.first.verdict == "exploding"


def test_equal_norms_are_healthy_with_a_perfect_flat_fit(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "flat", norm_of=lambda d, k, e, s, m: 0.25))
    summary = summarize_run(run)
    assert summary.first.ratio == 1.0
    assert summary.first.decay_per_layer == pytest.approx(1.0)
    assert summary.first.db_per_layer == pytest.approx(0.0, abs=1e-12)
    assert summary.first.r2 == 1.0
    assert summary.first.verdict == "healthy"


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, "vanishing"), (0.0999, "vanishing"), (0.1, "healthy"), (1.0, "healthy"),
     (10.0, "healthy"), (10.01, "exploding"), (math.inf, "exploding"),
     (math.nan, "no verdict"), (None, "no verdict")],
)
def test_verdict_thresholds(ratio: float | None, expected: str) -> None:
    assert (VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above) == (0.1, 10.0)
    assert verdict(ratio) == expected


def test_shortcuts_are_left_out_of_ratio_and_fit(tmp_path: Path) -> None:
    layers = resnet_layers()
    conv_depths = [d for _, k, d in layers if k == "conv"]

    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        return 1e-9 if kind == "shortcut" else 0.9 ** (max(conv_depths) - depth)

    summary = summarize_run(load_run(write_run(tmp_path, "resnet", layers=layers,
                                               norm_of=norm_of)))
    assert (summary.first_layer, summary.last_layer) == ("conv1", "layer4.1.conv2")
    assert summary.first.ratio == pytest.approx(0.9 ** max(conv_depths), rel=1e-12)
    assert summary.first.decay_per_layer == pytest.approx(0.9, rel=1e-12)
    assert summary.first.layers == 17


def test_net_without_convs_uses_its_linear_layers(tmp_path: Path) -> None:
    layers = [(f"net.{i}", "linear", i) for i in range(4)]
    summary = summarize_run(load_run(write_run(tmp_path, "mlp", layers=layers,
                                               norm_of=lambda d, k, e, s, m: 4.0 ** (d - 3))))
    assert summary.fit_kind == "linear"
    assert summary.first.ratio == 4.0 ** -3
    assert summary.first.decay_per_layer == pytest.approx(0.25, rel=1e-12)


# ---------------------------------------------------------------------------- against naive code
def _noisy_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = gradient_frame(vgg_layers(4), lambda d, k, e, s, m: float(rng.lognormal(d, 1.0)),
                           epochs=3, steps_per_epoch=5)
    values = frame["value"].to_numpy(copy=True)
    values[[3, 17, 40]] = [math.nan, math.inf, -math.inf]  # a divergence's debris
    return frame.assign(value=values)


def test_layer_epoch_means_match_a_naive_loop() -> None:
    frame = _noisy_frame()
    means = layer_epoch_means(frame, "weight_grad_norm").set_index(["layer", "epoch"])
    rows = frame.loc[frame["metric"] == "weight_grad_norm"].to_dict("records")
    for (layer, epoch), got in means.iterrows():
        values = [r["value"] for r in rows if r["layer"] == layer and r["epoch"] == epoch]
        finite = [v for v in values if math.isfinite(v)]
        assert got["mean"] == pytest.approx(sum(finite) / len(finite), rel=1e-12)
        assert got["rms"] == pytest.approx(math.sqrt(sum(v * v for v in finite) / len(finite)),
                                           rel=1e-12)
        assert (got["steps"], got["nonfinite"]) == (len(finite), len(values) - len(finite))
    assert len(means) == 6 * 3  # 4 conv + 2 linear layers, 3 epochs
    assert means["nonfinite"].sum() == sum(
        not math.isfinite(r["value"]) for r in rows)


def test_layer_ratio_any_pair_matches_naive_means() -> None:
    frame = _noisy_frame(1)
    rows = frame.loc[(frame["metric"] == "output_grad_norm") & (frame["epoch"] == 2)]

    def naive_mean(layer: str) -> float:
        values = [v for v in rows.loc[rows["layer"] == layer, "value"] if math.isfinite(v)]
        return sum(values) / len(values)

    got = layer_ratio(frame, "features.2", "classifier.3", 2, "output_grad_norm")
    assert got == pytest.approx(naive_mean("features.2") / naive_mean("classifier.3"), rel=1e-12)
    with pytest.raises(InputError, match=r"features\.99"):
        layer_ratio(frame, "features.99", "features.0", 1, "weight_grad_norm")
    with pytest.raises(InputError, match="epoch 7"):
        layer_ratio(frame, "features.0", "features.2", 7, "weight_grad_norm")
    with pytest.raises(InputError, match="weight_grad_norm"):
        layer_ratio(frame, "features.0", "features.2", 1, "activation_mean")


def test_decay_fit_matches_closed_form_least_squares() -> None:
    rng = np.random.default_rng(3)
    depth = np.arange(12, dtype=float)
    value = 10 ** (0.07 * depth + rng.normal(0, 0.2, depth.size))
    value[5] = math.nan  # left out, as are zeros and infinities
    value[8] = 0.0
    fit = decay_fit(pd.DataFrame({"depth": depth, "value": value}))
    keep = [i for i in range(12) if i not in (5, 8)]
    x, y = depth[keep], np.log10(value[keep])
    slope = sum((a - x.mean()) * (b - y.mean()) for a, b in zip(x, y, strict=True)) / sum(
        (a - x.mean()) ** 2 for a in x)
    correlation = np.corrcoef(x, y)[0, 1]
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.factor_per_layer == pytest.approx(10 ** -slope, rel=1e-10)
    assert fit.db_per_layer == pytest.approx(10 * math.log10(10 ** -slope), rel=1e-10)
    assert fit.r2 == pytest.approx(correlation**2, rel=1e-10)
    assert fit.layers == 10


def test_decay_fit_needs_two_depths() -> None:
    fit = decay_fit(pd.DataFrame({"depth": [3.0, 4.0], "value": [1.0, math.nan]}))
    assert math.isnan(fit.factor_per_layer) and fit.layers == 0


def test_epochs_to_target() -> None:
    metrics = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_acc": [0.5, 0.79, 0.8, 0.9]})
    assert epochs_to_target(metrics, 0.8) == 3
    assert epochs_to_target(metrics, 0.5) == 1
    assert epochs_to_target(metrics, 0.95) is None


def test_summary_accuracies_come_from_the_metrics(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "acc", epochs=4, val_acc=[0.4, 0.85, 0.7, 0.75]))
    summary = summarize_run(run, target_acc=0.8)
    assert (summary.best_val_acc, summary.best_epoch) == (0.85, 2)
    assert summary.final_val_acc == 0.75
    assert summary.test_acc == 0.75
    assert summary.epochs_to_target == 2
    assert summary.state == "completed" and summary.diverged_step is None


def test_first_step_ratio_is_the_initialisation(tmp_path: Path) -> None:
    # at step 0 the input side is 8x the output side; afterwards they are equal
    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        return 8.0 if step == 0 and depth == 0 else 1.0

    summary = summarize_run(load_run(write_run(tmp_path, "init", norm_of=norm_of)))
    assert (summary.first_step, summary.ratio_first_step) == (0, 8.0)
    assert summary.first.ratio == pytest.approx((8.0 + 3.0) / 4.0)  # epoch-1 mean


# ---------------------------------------------------------------------------- tolerant loading
def test_diverged_run_loads_and_summarises(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "boom", epochs=3, steps_per_epoch=4, state="diverged",
                             diverged_step=9, message="loss became NaN at step 9"))
    assert run.state == "diverged" and run.diverged_step == 9 and run.diverged_epoch == 3
    assert math.isnan(run.metrics["train_loss"].iloc[-1])
    summary = summarize_run(run)
    assert summary.diverged_step == 9 and summary.test_acc is None
    assert summary.last.epoch == 3  # epoch 3's finite steps (8) still count
    assert summary.last.ratio == 2.0 ** -4
    assert summary.best_val_acc == pytest.approx(0.6)  # NaN accuracy of the last row ignored
    json.dumps(summary.as_dict(), allow_nan=False)


def test_load_run_tolerates_missing_and_broken_files(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "young", files=("config",))
    (run_dir / "status.json").write_text("{not json", encoding="utf-8")
    run = load_run(run_dir)
    assert run.name == "young" and run.state == "running"
    assert run.metrics.empty and list(run.metrics.columns)[:2] == ["epoch", "train_loss"]
    assert run.gradients.empty and "value" in run.gradients.columns
    assert run.summary is None
    assert any("status.json" in problem for problem in run.problems)
    summary = summarize_run(run)
    assert summary.first.verdict == "no verdict" and summary.first.ratio is None
    assert summary.best_val_acc is None and summary.epochs_to_target is None

    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_run(empty).config == {}
    with pytest.raises(InputError, match="No run directory"):
        load_run(tmp_path / "nowhere")


def test_load_study_keeps_spec_order_and_notes_strays(tmp_path: Path) -> None:
    for name in ("b", "a", "stray"):
        write_run(tmp_path / "runs", name)
    write_study(tmp_path, ["b", "never-started", "a"])
    study = load_study(tmp_path)
    assert list(study.runs) == ["b", "never-started", "a", "stray"]
    assert study.runs["never-started"].state == "missing"
    assert any("stray" in problem for problem in study.problems)

    lone = load_study(tmp_path / "runs" / "a")  # a run directory is a one-run study
    assert list(lone.runs) == ["a"]
    with pytest.raises(InputError, match=r"study\.yaml"):
        load_study(tmp_path / "runs")


# ---------------------------------------------------------------------------- damaged files
_RUN_FILES = (record.CONFIG_FILE, record.STATUS_FILE, record.SUMMARY_FILE, record.METRICS_FILE,
              record.GRADIENTS_FILE)


def _damaged_versions(original: bytes, seed: int) -> list[bytes]:
    """Random bytes, truncations, non-UTF-8 and JSON values of the wrong type."""
    rng = np.random.default_rng(seed)
    versions = [b"", b"\xff\xfe\x00garbage", rng.bytes(64), b"[1, 2, 3]", b'"text"', b"null",
                b'{"state": 7}', b'{"state": "exploded"}', b'{"epoch": "one", "state": "running"}',
                b'{"run": [1], "model_info": "x"}', b'{"test_acc": true, "state": "completed"}']
    versions += [original[:cut] for cut in rng.integers(1, max(len(original), 2), size=4)]
    return versions


@pytest.mark.parametrize("name", _RUN_FILES)
def test_any_damage_is_a_named_run_file_error(tmp_path: Path, name: str) -> None:
    """Every reader goes through read_run_file: damage raises RunFileError naming the file and
    the fix, and load_run and the report turn it into a note, never a traceback."""
    run_dir = write_run(tmp_path / "runs", "hurt")
    write_study(tmp_path, ["hurt"])
    original = (run_dir / name).read_bytes()
    assert record.read_run_file(run_dir / name) is not None
    refused = 0
    for index, damaged in enumerate(_damaged_versions(original, seed=len(name))):
        (run_dir / name).write_bytes(damaged)
        try:
            record.read_run_file(run_dir / name)
        except record.RunFileError as error:
            assert name in str(error) and record.FIXES[name] in str(error), index
            refused += 1
            run = load_run(run_dir)
            assert any(name in problem for problem in run.problems), index
            summarize_run(run)  # never a traceback
    assert refused >= 8  # the damage was seen, not read as data
    write_report(tmp_path)  # the last damaged version: the report still renders


def test_text_garbage_in_metrics_is_an_error_not_nan(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "junk")
    path = run_dir / record.METRICS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[2].split(",")
    cells[record.METRIC_COLUMNS.index("val_acc")] = "oops"  # epoch 2's validation accuracy
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(record.RunFileError, match=r"metrics\.csv is damaged \(row 2 holds 'oops' "
                                                  r"in the numeric column 'val_acc'\)"):
        record.read_run_file(path)
    assert any("'oops'" in problem for problem in load_run(run_dir).problems)


def test_nan_cells_of_a_diverged_run_are_not_damage(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "boom", state="diverged", diverged_step=9)
    metrics = record.read_run_file(run_dir / record.METRICS_FILE)
    assert math.isnan(metrics[record.Col.val_acc].iloc[-1])
    assert load_run(run_dir).problems == []


def test_damaged_study_spec_names_the_file_and_the_fix(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "a")
    (tmp_path / record.STUDY_FILE).write_bytes(b"\xff\xfe: [")
    with pytest.raises(record.RunFileError, match=r"study\.yaml is damaged .*gradprobe study"):
        load_study(tmp_path)
    (tmp_path / record.STUDY_FILE).write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(record.RunFileError, match="not a mapping"):
        load_study(tmp_path)


def test_best_validation_is_defined_once() -> None:
    assert record.best_validation([(1, 0.5), (2, 0.8), (3, math.nan), (4, 0.8)]) == (0.8, 2)
    assert record.best_validation([(1, math.nan)]) is None
