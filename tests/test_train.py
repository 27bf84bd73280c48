"""The trainer and the run directory: contract, determinism, resume, divergence, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from gradprobe import record
from gradprobe.cli import main
from gradprobe.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from gradprobe.errors import InputError
from gradprobe.train import train
from gradprobe.train.checkpoint import CHECKPOINT, PREVIOUS_CHECKPOINT, load_latest_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

# A tiny run: 3 classes x 16 synthetic images at 16x16, a 4-layer conv stack, 3 epochs of 3 steps.
TINY_ARGS = ["--model", "plain_stack", "--depth", "4", "--width", "0.25", "--image-size", "16",
             "--images-per-class", "16", "--batch-size", "8", "--epochs", "3", "--quiet"]


def tiny_config(**train_overrides: object) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="plain_stack", depth=4, width=0.25),
        data=DataConfig(image_size=16, images_per_class=16),
        train=TrainConfig(**{"epochs": 3, "batch_size": 8, **train_overrides}),
    )


def metrics_without_time(run_dir: Path) -> str:
    """metrics.csv minus its wall-clock column, which no two runs share."""
    return pd.read_csv(run_dir / record.METRICS_FILE).drop(columns="seconds").to_csv(index=False)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / CHECKPOINT, weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def run_cli_subprocess(args: list[str], env_extra: dict[str, str] | None = None,
                       ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gradprobe", "train", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_run_directory_matches_the_contract(tmp_path: Path) -> None:
    result = train(tiny_config(), tmp_path / "run")
    run_dir = result.run_dir
    assert result.state == "completed"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["model"]["name"] == "plain_stack"
    assert {"python", "torch", "gradprobe", "git_commit"} <= config["versions"].keys()
    assert config["data_info"]["fingerprint"]
    assert config["model_info"]["conv_layers"] == 4
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["epoch"] == 3
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                                     "lr", "seconds"]
    assert metrics["epoch"].tolist() == [1, 2, 3]
    gradients = pd.read_parquet(run_dir / "gradients.parquet")
    assert list(gradients.columns) == ["step", "epoch", "layer", "depth", "kind", "metric",
                                       "value"]
    steps_per_epoch = status["step"] // 3
    assert sorted(gradients["step"].unique()) == list(range(status["step"]))
    assert gradients.groupby("step")["epoch"].first().tolist() == [
        1 + step // steps_per_epoch for step in range(status["step"])]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 <= summary["test_acc"] <= 1 and summary["state"] == "completed"
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert checkpoint["position"]["epoch"] == 3
    # the record module spells exactly the contract written out above (DESIGN.md)
    assert (record.CONFIG_FILE, record.STATUS_FILE, record.METRICS_FILE, record.GRADIENTS_FILE,
            record.SUMMARY_FILE) == ("config.json", "status.json", "metrics.csv",
                                     "gradients.parquet", "summary.json")
    assert tuple(metrics.columns) == record.METRIC_COLUMNS
    assert tuple(gradients.columns) == record.GRADIENT_COLUMNS
    steps = pd.read_csv(run_dir / "steps.csv")
    assert record.STEPS_FILE == "steps.csv"
    assert tuple(steps.columns) == record.STEP_COLUMNS == (
        "step", "epoch", "train_loss", "lr", "global_grad_norm")
    assert steps["step"].tolist() == list(range(status["step"]))
    assert steps["epoch"].tolist() == [1 + step // steps_per_epoch
                                       for step in range(status["step"])]
    # the diagnostic metrics are recorded by default, after every probed ReLU
    assert {"dead_fraction", "activation_mean", "activation_std", "update_ratio"} <= set(
        gradients["metric"])
    dead = gradients.loc[gradients["metric"] == "dead_fraction", "value"]
    assert ((dead >= 0) & (dead <= 1)).all()


def test_steps_file_agrees_with_the_epochs_and_the_weights(tmp_path: Path) -> None:
    """steps.csv checked against what it must match: metrics.csv's epoch means (batch-weighted
    step losses) and lr, and plain SGD's update, ||W_2 - W_1|| = lr x ||g_1||, in float64."""
    config = tiny_config(epochs=2, max_steps_per_epoch=1, lr=0.05, scheduler="none")
    run_dir = train(config, tmp_path / "run").run_dir
    steps = record.read_run_file(run_dir / record.STEPS_FILE)
    metrics = record.read_run_file(run_dir / record.METRICS_FILE)
    assert steps["step"].tolist() == [0, 1]
    assert steps["train_loss"].tolist() == pytest.approx(metrics["train_loss"].tolist(), rel=1e-12)
    assert steps["lr"].tolist() == [0.05, 0.05]
    after_first = torch.load(run_dir / PREVIOUS_CHECKPOINT, weights_only=True)["model"]
    after_second = final_weights(run_dir)
    moved = torch.stack([(after_second[key].double() - after_first[key].double()).norm()
                         for key in after_second if after_second[key].is_floating_point()])
    assert float(moved.norm()) / 0.05 == pytest.approx(steps["global_grad_norm"][1], rel=1e-4)


def test_dead_fraction_is_the_share_of_zeros_after_each_relu(tmp_path: Path) -> None:
    """The trainer's dead_fraction at step 0 against an independent count on every ReLU's
    output for the same first batch (same seed, data, weights and loader as the trainer)."""
    import random

    import numpy as np

    from gradprobe.data import BatchLoader, load_dataset_from_config
    from gradprobe.models import build_model

    config = tiny_config(epochs=1, max_steps_per_epoch=1)
    run_dir = train(config, tmp_path / "run").run_dir
    gradients = record.read_run_file(run_dir / record.GRADIENTS_FILE)
    recorded = gradients.loc[(gradients["metric"] == "dead_fraction") & (gradients["step"] == 0)]
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    splits = load_dataset_from_config(config.data)
    model = build_model("plain_stack", num_classes=splits.num_classes,
                        in_channels=splits.in_channels, **config.model.builder_options())
    images, _ = next(iter(BatchLoader(
        splits.train, shuffle=True, augment=False, max_batches=1, mean=splits.mean,
        std=splits.std, device=torch.device("cpu"), batch_size=8, seed=0).epoch(0)))
    shares: list[float] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.register_forward_hook(
                lambda _m, _i, out: shares.append(float((out == 0).double().mean())))
    model(images)
    assert len(shares) == len(recorded) == 4
    assert sorted(recorded["value"]) == pytest.approx(sorted(shares), abs=1e-6)
    assert min(shares) > 0.2  # after the ReLU: a pre-activation has (almost) no exact zeros


def test_gradient_clipping_happens_after_the_probe(tmp_path: Path) -> None:
    """grad_clip bounds the update (||dW|| = lr x clip for plain SGD) while the probe and
    steps.csv keep the unclipped norms."""
    config = tiny_config(epochs=2, max_steps_per_epoch=1, lr=0.05, scheduler="none",
                         grad_clip=1e-3)
    run_dir = train(config, tmp_path / "run").run_dir
    steps = record.read_run_file(run_dir / record.STEPS_FILE)
    assert (steps["global_grad_norm"] > 1e-2).all()  # unclipped: far above the clip
    after_first = torch.load(run_dir / PREVIOUS_CHECKPOINT, weights_only=True)["model"]
    after_second = final_weights(run_dir)
    moved = torch.stack([(after_second[key].double() - after_first[key].double()).norm()
                         for key in after_second if after_second[key].is_floating_point()])
    assert float(moved.norm()) == pytest.approx(0.05 * 1e-3, rel=1e-3)
    gradients = record.read_run_file(run_dir / record.GRADIENTS_FILE)
    weight_norms = gradients.loc[(gradients["metric"] == "weight_grad_norm")
                                 & (gradients["step"] == 1), "value"]
    assert float((weight_norms ** 2).sum() ** 0.5) > 1e-2  # the probe saw unclipped gradients


def test_warm_up_reaches_the_steps_file(tmp_path: Path) -> None:
    run_dir = train(tiny_config(epochs=2, warmup_epochs=1, scheduler="none"),
                    tmp_path / "run").run_dir
    steps = record.read_run_file(run_dir / record.STEPS_FILE)
    per_epoch = int((steps["epoch"] == 1).sum())
    ramp = [0.01 * (step + 1) / per_epoch for step in range(per_epoch)]
    assert steps["lr"].tolist() == pytest.approx(ramp + [0.01] * per_epoch, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "damage"),
    [(record.STATUS_FILE, b"{not json"),
     (record.STEPS_FILE, b"step,epoch,train_loss,lr,global_grad_norm\n0,1,oops,0.1,1\n"),
     (record.STATUS_FILE, b"\xff\xfe garbage"),
     (record.SUMMARY_FILE, b'{"state": "completed", "test_acc": "high"}'),
     (record.METRICS_FILE, b"epoch,train_loss\n1,0.5"),
     (record.CONFIG_FILE, b'{"run": 3}')],
)
def test_damaged_run_files_are_rebuilt_or_named_with_the_fix(
        tmp_path: Path, name: str, damage: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    """Recovery policy: what the checkpoint rebuilds is rebuilt, saying so; config.json, the run's
    identity, is refused (exit 2) naming the file and the fix."""
    out = tmp_path / "run"
    args = ["train", *TINY_ARGS[:-3], "--epochs", "1", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    summary = (out / record.SUMMARY_FILE).read_bytes()
    (out / name).write_bytes(damage)
    capsys.readouterr()
    if name == record.CONFIG_FILE:
        assert main(args) == 2
        error = capsys.readouterr().err
        assert f"{out / name} is damaged" in error and "delete the whole run directory" in error
        return
    assert main(args) == 0
    said = capsys.readouterr().err  # progress goes to stderr, results to stdout
    assert f"{name} is damaged" in said and "rebuilding it by resuming the run" in said
    assert (out / record.SUMMARY_FILE).read_bytes() == summary  # the same numbers
    for rebuilt in (record.STATUS_FILE, record.SUMMARY_FILE, record.METRICS_FILE,
                    record.STEPS_FILE):
        assert record.read_run_file(out / rebuilt) is not None
    assert record.read_run_file(out / record.STATUS_FILE).state is record.RunState.COMPLETED


def test_damaged_history_is_noted_by_the_report_and_rebuilt_by_the_fix(tmp_path: Path) -> None:
    from gradprobe.analysis import write_report

    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS[:-3], "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    original = record.read_run_file(out / record.METRICS_FILE)
    (out / record.METRICS_FILE).write_text("epoch,train_loss\n1,oops\n", encoding="utf-8")
    text = write_report(out)["md"].read_text(encoding="utf-8")
    assert "metrics.csv is damaged" in text and "resumes the run from its checkpoint" in text
    # the fix the note gives: run the same command again
    assert main(["train", *TINY_ARGS[:-3], "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    rebuilt = record.read_run_file(out / record.METRICS_FILE)
    pd.testing.assert_frame_equal(rebuilt, original)
    assert "is damaged" not in write_report(out)["md"].read_text(encoding="utf-8")


def test_same_command_twice_is_bit_identical(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["train", *TINY_ARGS, "--out", str(tmp_path / name)]) == 0
    assert metrics_without_time(tmp_path / "a") == metrics_without_time(tmp_path / "b")
    assert_same_weights(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))
    gradients = [pd.read_parquet(tmp_path / name / record.GRADIENTS_FILE) for name in "ab"]
    pd.testing.assert_frame_equal(*gradients)
    assert (tmp_path / "a" / record.STEPS_FILE).read_bytes() == \
        (tmp_path / "b" / record.STEPS_FILE).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every", [0, 2])
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path: Path, checkpoint_every: int) -> None:
    """Kill the run hard in the middle of epoch 2 (after epoch 1's checkpoint), run the same
    command again, and get what an uninterrupted run gets, bit for bit."""
    args = [*TINY_ARGS, "--checkpoint-every", str(checkpoint_every)]
    reference = run_cli_subprocess([*args, "--out", str(tmp_path / "reference")])
    assert reference.returncode == 0, reference.stderr
    reference_status = record.read_run_file(tmp_path / "reference" / record.STATUS_FILE)
    steps_per_epoch = reference_status.step // 3
    crash_step = steps_per_epoch + 3  # inside epoch 2
    crashed = run_cli_subprocess([*args, "--out", str(tmp_path / "run")],
                                 {"GRADPROBE_CRASH_AFTER_STEP": str(crash_step)})
    assert crashed.returncode == -9, crashed.stderr
    status = json.loads((tmp_path / "run" / record.STATUS_FILE).read_text())
    assert status["state"] == "running"
    resumed = run_cli_subprocess([*args, "--out", str(tmp_path / "run")])
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_without_time(tmp_path / "run") == metrics_without_time(tmp_path / "reference")
    assert_same_weights(final_weights(tmp_path / "run"), final_weights(tmp_path / "reference"))
    gradients = [pd.read_parquet(tmp_path / name / record.GRADIENTS_FILE)
                 for name in ("run", "reference")]
    pd.testing.assert_frame_equal(*gradients)  # no duplicated or missing steps
    assert (tmp_path / "run" / record.STEPS_FILE).read_bytes() == \
        (tmp_path / "reference" / record.STEPS_FILE).read_bytes()


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path / "run")
    newest = tmp_path / "run" / CHECKPOINT
    assert (tmp_path / "run" / PREVIOUS_CHECKPOINT).exists()
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        state = load_latest_checkpoint(tmp_path / "run")
    assert state is not None and state["position"]["epoch"] == 2


def test_crash_then_resume_from_the_fallback_checkpoint(tmp_path: Path) -> None:
    """A run whose newest checkpoint is corrupt still finishes, from the generation before."""
    reference = train(tiny_config(), tmp_path / "reference")
    run_dir = tmp_path / "run"
    train(tiny_config(epochs=2), tmp_path / "short")
    run_dir.mkdir()
    for name in (record.CONFIG_FILE, CHECKPOINT, PREVIOUS_CHECKPOINT):
        (run_dir / name).write_bytes((tmp_path / "short" / name).read_bytes())
    config = json.loads((run_dir / record.CONFIG_FILE).read_text())
    config["run"]["train"]["epochs"] = 3
    (run_dir / record.CONFIG_FILE).write_text(json.dumps(config))
    (run_dir / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        result = train(tiny_config(), run_dir)
    assert result.state == "completed"
    assert metrics_without_time(run_dir) == metrics_without_time(reference.run_dir)
    assert_same_weights(final_weights(run_dir), final_weights(reference.run_dir))
    assert (run_dir / record.STEPS_FILE).read_bytes() == \
        (reference.run_dir / record.STEPS_FILE).read_bytes()


def test_completed_run_is_left_alone_unless_forced(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0
    before = (out / record.METRICS_FILE).stat().st_mtime_ns
    assert main(["train", *TINY_ARGS[:-1], "--out", str(out)]) == 0
    assert "already completed" in capsys.readouterr().err
    assert (out / record.METRICS_FILE).stat().st_mtime_ns == before
    assert main(["train", *TINY_ARGS, "--out", str(out), "--force"]) == 0
    assert (out / record.METRICS_FILE).stat().st_mtime_ns != before


def test_divergence_is_a_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["train", *TINY_ARGS, "--lr", "1e12", "--momentum", "0.9", "--out", str(out)])
    assert code == 0
    assert "diverged at step" in capsys.readouterr().out
    status = json.loads((out / record.STATUS_FILE).read_text())
    assert status["state"] == "diverged"
    summary = json.loads((out / record.SUMMARY_FILE).read_text())
    assert summary["diverged_step"] == status["step"] >= 1
    assert summary["test_acc"] is None
    gradients = pd.read_parquet(out / record.GRADIENTS_FILE)
    assert gradients["step"].max() == status["step"] - 1  # history kept up to the divergence
    assert len(pd.read_csv(out / record.METRICS_FILE)) >= 1
    steps = record.read_run_file(out / record.STEPS_FILE)
    assert steps["step"].tolist() == list(range(status["step"] + 1))  # the diverged one too
    last = steps.iloc[-1]
    assert not math.isfinite(last["train_loss"]) and math.isnan(last["global_grad_norm"])


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:  # the attack under test: runs a shell command on load
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path, force_unsafe_env: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out = tmp_path / "run"
    train(tiny_config(epochs=1), out)
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, out / CHECKPOINT)
    (out / record.STATUS_FILE).write_text(json.dumps({"state": "running", "epoch": 0, "step": 0}))
    with pytest.raises(InputError, match="objects other than tensors"):
        train(tiny_config(epochs=1), out)
    assert not marker.exists()
    assert main(["train", *TINY_ARGS[:-3], "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    assert not marker.exists()


def test_every_torch_load_in_the_code_base_is_weights_only() -> None:
    calls = [(path, call) for path in SRC.rglob("*.py")
             for call in re.findall(r"torch\.load\([^)]*\)", path.read_text())]
    assert calls, "found no torch.load call: the scan no longer sees the checkpoint loader"
    for path, call in calls:
        assert "weights_only=True" in call, f"{path}: {call}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "vgg99"], "known models: "),
        (["--model", "vgg11", "--norm", "layer"], "invalid choice: 'layer'"),
        (["--model", "vgg11", "--optimizer", "lion"], "choose from"),
        (["--model", "vgg11", "--dataset", "imagenet-21k"], "synthetic"),
    ],
)
def test_bad_input_exits_2_with_the_valid_values(tmp_path: Path, args: list[str], expected: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        code = main(["train", *args, "--out", str(tmp_path / "run"), "--quiet"])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("keep me")
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_out_holding_a_different_run_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0
    before = (out / record.METRICS_FILE).read_bytes()
    assert main(["train", *TINY_ARGS, "--lr", "0.5", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "train.lr: 0.01 -> 0.5" in error and "--force" in error
    assert (out / record.METRICS_FILE).read_bytes() == before


def test_probe_settings_reach_the_history(tmp_path: Path) -> None:
    config = tiny_config().model_copy(
        update={"probe": ProbeConfig(metrics=("output_grad_norm",), every=2)})
    run_dir = train(config, tmp_path / "run").run_dir
    gradients = pd.read_parquet(run_dir / record.GRADIENTS_FILE)
    assert set(gradients["metric"]) == {"output_grad_norm"}
    assert (gradients["step"] % 2 == 0).all()


def test_diagnostic_metrics_have_their_own_sparser_schedule(tmp_path: Path) -> None:
    """Gradient metrics every `every` steps, the diagnostic ones every `every x
    diagnostic_every`, in one table ordered by step and depth; 1 records them every step."""
    config = tiny_config(epochs=2).model_copy(
        update={"probe": ProbeConfig(every=2, diagnostic_every=2)})
    run_dir = train(config, tmp_path / "sparse").run_dir
    gradients = record.read_run_file(run_dir / record.GRADIENTS_FILE)
    steps = int(record.read_run_file(run_dir / record.STATUS_FILE).step)
    diagnostic = {"dead_fraction", "activation_mean", "activation_std", "update_ratio"}
    probed = gradients.loc[gradients["metric"] != "weight_distance"]  # the trainer's, per epoch
    by_metric = probed.groupby("metric")["step"].agg(lambda s: sorted(set(s)))
    for metric, recorded in by_metric.items():
        every = 4 if metric in diagnostic else 2
        assert recorded == list(range(0, steps, every)), metric
    assert diagnostic <= set(by_metric.index)
    order = probed[["step", "depth"]].to_numpy().tolist()
    assert order == sorted(order)
    dense = tiny_config(epochs=1).model_copy(
        update={"probe": ProbeConfig(metrics=("dead_fraction",), diagnostic_every=1)})
    run_dir = train(dense, tmp_path / "dense").run_dir
    gradients = record.read_run_file(run_dir / record.GRADIENTS_FILE)
    steps = int(record.read_run_file(run_dir / record.STATUS_FILE).step)
    assert sorted(set(gradients["step"])) == list(range(steps))


def test_probe_off_and_update_ratio(tmp_path: Path) -> None:
    """No metrics: no probe and an empty history; update_ratio: the optimiser is watched."""
    off = tiny_config().model_copy(update={"probe": ProbeConfig(metrics=())})
    assert pd.read_parquet(train(off, tmp_path / "off").run_dir / record.GRADIENTS_FILE).empty
    ratio = tiny_config().model_copy(update={"probe": ProbeConfig(metrics=("update_ratio",))})
    gradients = pd.read_parquet(train(ratio, tmp_path / "ratio").run_dir / record.GRADIENTS_FILE)
    assert set(gradients["metric"]) == {"update_ratio"}
    assert (gradients["value"] > 0).all()


def test_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional extra gradprobe[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_config(epochs=2, tensorboard=True), tmp_path / "run").run_dir
    events = EventAccumulator(str(run_dir / record.TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    metrics = record.read_run_file(run_dir / record.METRICS_FILE)
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        logged = events.Scalars(f"epoch/{column}")
        assert [event.step for event in logged] == metrics["epoch"].tolist()
        assert [event.value for event in logged] == pytest.approx(metrics[column].tolist(),
                                                                   rel=1e-6)
    gradients = record.read_run_file(run_dir / record.GRADIENTS_FILE)
    norms = gradients.loc[gradients["metric"] == "weight_grad_norm"]
    layers = sorted(norms["layer"].unique())
    assert {f"weight_grad_norm/{layer}" for layer in layers} <= tags
    expected = norms.loc[norms["epoch"] == 2].groupby("layer")["value"].mean()
    for layer in layers:
        (last,) = [e for e in events.Scalars(f"weight_grad_norm/{layer}") if e.step == 2]
        assert last.value == pytest.approx(expected[layer], rel=1e-6)  # float32 in the file
