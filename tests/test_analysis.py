"""Analysis numbers on run directories built by hand with known values.

The builders below write the run-directory contract (config.json, status.json, metrics.csv,
gradients.parquet, summary.json) directly, so these tests need neither torch nor a trainer;
test_report.py reuses them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

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
)
from gradprobe.errors import InputError

Layer = tuple[str, str, int]  # (name, kind, depth)
NormOf = Callable[[int, str, int, int, str], float]  # (depth, kind, epoch, step, metric) -> value


# ---------------------------------------------------------------------------- builders
def vgg_layers(convs: int, linears: int = 2) -> list[Layer]:
    """Conv layers at depths 0..convs-1 named like torchvision's VGG, then linear layers."""
    layers = [(f"features.{2 * i}", "conv", i) for i in range(convs)]
    return layers + [(f"classifier.{3 * j}", "linear", convs + j) for j in range(linears)]


def resnet_layers() -> list[Layer]:
    """ResNet-18's probe points: 17 convs, 3 projection shortcuts, 1 linear, in forward order."""
    names = ["conv1"]
    for stage in range(1, 5):
        for block in range(2):
            names += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
            if block == 0 and stage > 1:
                names.append(f"layer{stage}.0.downsample.0")
    layers = [(n, "shortcut" if "downsample" in n else "conv", d) for d, n in enumerate(names)]
    return [*layers, ("fc", "linear", len(names))]


def halving_towards_input(top: int) -> NormOf:
    """Norm 1 at depth `top`, halving at every layer on the way back to depth 0."""
    return lambda depth, kind, epoch, step, metric: 2.0 ** (depth - top)


def gradient_frame(
    layers: Sequence[Layer], norm_of: NormOf, epochs: int, steps_per_epoch: int,
    metrics: Sequence[str] = ("weight_grad_norm", "output_grad_norm"),
    last_step: int | None = None,
) -> pd.DataFrame:
    rows = []
    for epoch in range(1, epochs + 1):
        for local in range(steps_per_epoch):
            step = (epoch - 1) * steps_per_epoch + local
            if last_step is not None and step > last_step:
                break
            for name, kind, depth in layers:
                for metric in metrics:
                    rows.append((step, epoch, name, depth, kind, metric,
                                 norm_of(depth, kind, epoch, step, metric)))
    columns = ["step", "epoch", "layer", "depth", "kind", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def write_run(
    root: Path, name: str, *, layers: Sequence[Layer] | None = None,
    norm_of: NormOf | None = None, epochs: int = 3, steps_per_epoch: int = 4,
    val_acc: Sequence[float] | None = None, state: str = "completed",
    diverged_step: int | None = None, message: str = "",
    classes: Sequence[str] = ("circles", "squares", "stripes"),
    model: dict | None = None, model_info: dict | None = None,
    metrics: Sequence[str] = ("weight_grad_norm", "output_grad_norm"),
    files: Sequence[str] = ("config", "status", "metrics", "gradients", "summary"),
) -> Path:
    """Write one run directory. A diverged run's gradients stop at `diverged_step` (NaN there)
    and its last metrics row holds NaN losses, as the trainer writes them."""
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    layers = list(layers if layers is not None else vgg_layers(5))
    convs = [layer for layer in layers if layer[1] == "conv"]
    base = norm_of or halving_towards_input(max((d for _, _, d in convs), default=0))
    if diverged_step is not None:
        def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
            return math.nan if step == diverged_step else base(depth, kind, epoch, step, metric)
    else:
        norm_of = base
    val_acc = list(val_acc if val_acc is not None else [0.5 + 0.1 * e for e in range(epochs)])
    model = {"name": "vgg_deep", "depth": None, "width": 0.25, "norm": None,
             "activation": "relu", "init": "kaiming", "stem": None, **(model or {})}
    info = {"family": "vgg", "residual": False, "norm": model["norm"] or "none",
            "activation": model["activation"], "init": model["init"], "parameters": 12345,
            "conv_layers": len(convs), "linear_layers": sum(k == "linear" for _, k, _ in layers),
            "probe_points": [list(layer) for layer in layers], **(model_info or {})}
    config = {
        "name": name,
        "run": {"model": model,
                "data": {"dataset": "synthetic", "image_size": 32, "split": [0.7, 0.15, 0.15],
                         "seed": 0},
                "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "momentum": 0.0,
                          "optimizer": "sgd", "scheduler": "step", "step_size": 5, "gamma": 0.5,
                          "seed": 0, "device": "cpu"},
                "probe": {"metrics": list(metrics), "every": 1}},
        "model_info": info,
        # as the trainer writes it: the class -> index mapping and images per class and split
        "data_info": {"kind": "synthetic", "class_to_idx": {c: i for i, c in enumerate(classes)},
                      "class_counts": {"train": [70] * len(classes), "val": [15] * len(classes),
                                       "test": [15] * len(classes)},
                      "counts": {"train": 70 * len(classes), "val": 15 * len(classes),
                                 "test": 15 * len(classes)}, "fingerprint": "abc123"},
        "versions": {"python": "3.11", "torch": "2.4", "gradprobe": "0.1.0", "git_commit": "0"},
        "device": "cpu",
    }
    epochs_done = epochs if diverged_step is None else diverged_step // steps_per_epoch + 1
    metric_rows = []
    for epoch in range(1, epochs_done + 1):
        loss, acc = 1.0 / epoch, val_acc[epoch - 1]
        if diverged_step is not None and epoch == epochs_done:
            loss, acc = math.nan, math.nan
        metric_rows.append({"epoch": epoch, "train_loss": loss, "train_acc": acc,
                            "val_loss": 1.1 * loss, "val_acc": acc, "lr": 0.01, "seconds": 1.0})
    tested = state == "completed"
    summary = {"state": state, "test_loss": 0.5 if tested else None,
               "test_acc": val_acc[epochs_done - 1] if tested else None,
               "best_val_acc": None, "best_epoch": None, "final_val_acc": None,
               "final_train_loss": None, "epochs_completed": epochs_done,
               "steps": epochs_done * steps_per_epoch, "diverged_step": diverged_step,
               "seconds": 3.0}
    status = {"state": state, "epoch": epochs_done, "step": diverged_step or 0,
              "message": message, "traceback": None}
    if "config" in files:
        (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if "status" in files:
        (run_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    if "metrics" in files:
        pd.DataFrame(metric_rows).to_csv(run_dir / "metrics.csv", index=False)
    if "gradients" in files:
        gradient_frame(layers, norm_of, epochs, steps_per_epoch, metrics,
                       diverged_step).to_parquet(run_dir / "gradients.parquet", index=False)
    if "summary" in files:
        (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def write_study(root: Path, run_names: Sequence[str], *, comparison: Sequence[str] = (),
                experiments: Sequence[dict] = (), title: str | None = None) -> Path:
    spec: dict = {"name": "hand-built", "preset": "smoke",
                  "data": {"dataset": "synthetic", "image_size": 32}, "train": {"epochs": 3},
                  "experiments": list(experiments),
                  "runs": [{"name": name} for name in run_names]}
    if title:
        spec["title"] = title
    if comparison:
        spec["comparison"] = {"title": "Compared models", "runs": list(comparison)}
    (root / "study.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------- exact numbers
def test_halving_norms_give_exact_ratio_decay_db_and_vanishing(tmp_path: Path) -> None:
    # linear layers get huge norms: they are drawn but must not enter the ratio or the fit
    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        return 1e6 if kind == "linear" else 2.0 ** (depth - 4)

    run = load_run(write_run(tmp_path, "halving", layers=vgg_layers(5), norm_of=norm_of))
    summary = summarize_run(run)
    assert summary["first_layer"] == "features.0" and summary["last_layer"] == "features.8"
    assert summary["first_to_last_ratio"] == 2.0 ** -4  # exact: powers of two
    assert summary["first_to_last_ratio_last_epoch"] == 2.0 ** -4
    assert summary["decay_per_layer"] == pytest.approx(0.5, rel=1e-12)
    assert summary["db_per_layer"] == pytest.approx(10 * math.log10(0.5), rel=1e-12)
    assert round(summary["db_per_layer"], 2) == -3.01
    assert summary["r2"] == pytest.approx(1.0, abs=1e-12)
    assert summary["layers_in_fit"] == 5
    assert summary["verdict"] == summary["verdict_last_epoch"] == "vanishing"
    assert (summary["first_epoch"], summary["last_epoch"]) == (1, 3)
    assert summary["first_to_last_ratio_first_step"] == 2.0 ** -4
    json.dumps(summary, allow_nan=False)  # JSON-friendly


def test_doubling_towards_input_is_exploding(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "doubling", layers=vgg_layers(6),
                             norm_of=lambda d, k, e, s, m: 2.0 ** -d))
    summary = summarize_run(run)
    assert summary["first_to_last_ratio"] == 32.0
    assert summary["decay_per_layer"] == pytest.approx(2.0, rel=1e-12)
    assert summary["db_per_layer"] == pytest.approx(3.0103, abs=1e-4)
    assert summary["verdict"] == "exploding"


def test_equal_norms_are_healthy_with_a_perfect_flat_fit(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "flat", norm_of=lambda d, k, e, s, m: 0.25))
    summary = summarize_run(run)
    assert summary["first_to_last_ratio"] == 1.0
    assert summary["decay_per_layer"] == pytest.approx(1.0)
    assert summary["db_per_layer"] == pytest.approx(0.0, abs=1e-12)
    assert summary["r2"] == 1.0
    assert summary["verdict"] == "healthy"


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, "vanishing"), (0.0999, "vanishing"), (0.1, "healthy"), (1.0, "healthy"),
     (10.0, "healthy"), (10.01, "exploding"), (math.inf, "exploding"),
     (math.nan, "undetermined"), (None, "undetermined")],
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
    assert (summary["first_layer"], summary["last_layer"]) == ("conv1", "layer4.1.conv2")
    assert summary["first_to_last_ratio"] == pytest.approx(0.9 ** max(conv_depths), rel=1e-12)
    assert summary["decay_per_layer"] == pytest.approx(0.9, rel=1e-12)
    assert summary["layers_in_fit"] == 17


def test_net_without_convs_uses_its_linear_layers(tmp_path: Path) -> None:
    layers = [(f"net.{i}", "linear", i) for i in range(4)]
    summary = summarize_run(load_run(write_run(tmp_path, "mlp", layers=layers,
                                               norm_of=lambda d, k, e, s, m: 4.0 ** (d - 3))))
    assert summary["fit_kind"] == "linear"
    assert summary["first_to_last_ratio"] == 4.0 ** -3
    assert summary["decay_per_layer"] == pytest.approx(0.25, rel=1e-12)


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
    assert (summary["best_val_acc"], summary["best_epoch"]) == (0.85, 2)
    assert summary["final_val_acc"] == 0.75
    assert summary["test_acc"] == 0.75
    assert summary["epochs_to_target"] == 2
    assert summary["state"] == "completed" and summary["diverged_step"] is None


def test_first_step_ratio_is_the_initialisation(tmp_path: Path) -> None:
    # at step 0 the input side is 8x the output side; afterwards they are equal
    def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
        return 8.0 if step == 0 and depth == 0 else 1.0

    summary = summarize_run(load_run(write_run(tmp_path, "init", norm_of=norm_of)))
    assert (summary["first_step"], summary["first_to_last_ratio_first_step"]) == (0, 8.0)
    assert summary["first_to_last_ratio"] == pytest.approx((8.0 + 3.0) / 4.0)  # epoch-1 mean


# ---------------------------------------------------------------------------- tolerant loading
def test_diverged_run_loads_and_summarises(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "boom", epochs=3, steps_per_epoch=4, state="diverged",
                             diverged_step=9, message="loss became NaN at step 9"))
    assert run.state == "diverged" and run.diverged_step == 9 and run.diverged_epoch == 3
    assert math.isnan(run.metrics["train_loss"].iloc[-1])
    summary = summarize_run(run)
    assert summary["diverged_step"] == 9 and summary["test_acc"] is None
    assert summary["last_epoch"] == 3  # epoch 3's finite steps (8) still count
    assert summary["first_to_last_ratio_last_epoch"] == 2.0 ** -4
    assert summary["best_val_acc"] == pytest.approx(0.6)  # NaN accuracy of the last row ignored
    json.dumps(summary, allow_nan=False)


def test_load_run_tolerates_missing_and_broken_files(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "young", files=("config",))
    (run_dir / "status.json").write_text("{not json", encoding="utf-8")
    run = load_run(run_dir)
    assert run.name == "young" and run.state == "running"
    assert run.metrics.empty and list(run.metrics.columns)[:2] == ["epoch", "train_loss"]
    assert run.gradients.empty and "value" in run.gradients.columns
    assert run.summary == {}
    assert any("status.json" in problem for problem in run.problems)
    summary = summarize_run(run)
    assert summary["verdict"] == "undetermined" and summary["first_to_last_ratio"] is None
    assert summary["best_val_acc"] is None and summary["epochs_to_target"] is None

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
