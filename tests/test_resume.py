"""Resume that follows the user: settings that do not change results may change on resume, more
epochs continue a finished run exactly (where the schedule allows it), and status.json keeps up
with every checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from fakes import RecordingProgress
from gradprobe import record
from gradprobe.cli import main
from gradprobe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from gradprobe.errors import InputError
from gradprobe.study import run_study
from gradprobe.train import loop as train_loop
from gradprobe.train import train
from gradprobe.train.checkpoint import CHECKPOINT
from gradprobe.train.rundir import RESULT_NEUTRAL, resume_changes


def tiny(**train_options: object) -> RunConfig:
    """3 classes x 16 synthetic 16x16 images, a 3-conv stack: 6 steps of batch 8 per epoch."""
    return RunConfig(model=ModelConfig(name="plain_stack", depth=3, width=0.25),
                     data=DataConfig(image_size=16, images_per_class=16),
                     train=TrainConfig(**{"epochs": 3, "batch_size": 8, **train_options}))



def assert_same_run(a: Path, b: Path) -> None:
    """Same numbers, bit for bit: weights, metrics (but wall-clock seconds), gradients, summary."""
    weights = [torch.load(run / CHECKPOINT, weights_only=True)["model"] for run in (a, b)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    metrics = [pd.read_csv(run / record.METRICS_FILE).drop(columns="seconds") for run in (a, b)]
    pd.testing.assert_frame_equal(*metrics)
    gradients = [pd.read_parquet(run / record.GRADIENTS_FILE) for run in (a, b)]
    pd.testing.assert_frame_equal(*gradients)
    summaries = [json.loads((run / record.SUMMARY_FILE).read_text()) for run in (a, b)]
    for summary in summaries:
        summary.pop("seconds")
    assert summaries[0] == summaries[1]


# -- which changes a run may resume with (a pure function) ----------------------------------------


def test_only_settings_that_cannot_change_results_and_longer_schedules_are_allowed() -> None:
    base = tiny().model_dump(mode="json")

    def changes(**train_options: object) -> tuple[list[str], list[str]]:
        return resume_changes(base, tiny(**train_options).model_dump(mode="json"))

    assert set(RESULT_NEUTRAL) == {"train.checkpoint_every", "train.tensorboard"}
    allowed, refused = changes(checkpoint_every=5, tensorboard=True)
    assert len(allowed) == 2 and refused == []
    allowed, refused = changes(epochs=5)
    assert refused == [] and allowed[0].startswith("train.epochs: 3 -> 5")
    for refused_change in ({"threads": 2}, {"lr": 0.02}, {"max_steps_per_epoch": 2},
                           {"device": "cpu", "seed": 1}):
        allowed, refused = changes(**refused_change)
        assert allowed == [] and len(refused) == len(refused_change), refused_change
    cosine = tiny(scheduler="cosine").model_dump(mode="json")
    allowed, refused = resume_changes(cosine, tiny(scheduler="cosine", epochs=5).model_dump(
        mode="json"))
    assert allowed == [] and "depends on the total epochs" in refused[0]


# -- more epochs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [
    {"scheduler": "step", "step_size": 1, "gamma": 0.5},  # the rate changes every epoch
    {"scheduler": "none", "warmup_epochs": 1.5, "momentum": 0.9},  # a warm-up by steps
])
def test_more_epochs_continue_a_finished_run_as_if_trained_that_long(
        tmp_path: Path, schedule: dict[str, object]) -> None:
    progress = RecordingProgress()
    first = train(tiny(epochs=2, **schedule), tmp_path / "run")
    assert first.state == "completed"
    longer = train(tiny(epochs=4, **schedule), tmp_path / "run", progress=progress)
    assert longer.state == "completed" and not longer.skipped
    assert any("train.epochs: 2 -> 4 (continues the run" in line for line in progress.lines)
    assert any("resuming at epoch 3" in line for line in progress.lines)
    train(tiny(epochs=4, **schedule), tmp_path / "reference")
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    config = json.loads((tmp_path / "run" / record.CONFIG_FILE).read_text())
    assert config["run"]["train"]["epochs"] == 4  # the run's identity is now the longer run


def test_a_cosine_run_cannot_change_length(tmp_path: Path) -> None:
    train(tiny(epochs=2, scheduler="cosine"), tmp_path / "run")
    with pytest.raises(InputError, match="cosine schedule's learning rate at every epoch "
                                         "depends on the total epochs"):
        train(tiny(epochs=3, scheduler="cosine"), tmp_path / "run")


def test_a_run_cannot_be_shortened(tmp_path: Path) -> None:
    train(tiny(epochs=3), tmp_path / "run")
    with pytest.raises(InputError, match="has trained 3 epochs, more than --epochs 2"):
        train(tiny(epochs=2), tmp_path / "run")


def test_a_diverged_run_stays_a_result(tmp_path: Path) -> None:
    diverged = train(tiny(epochs=2, lr=1e12, momentum=0.9), tmp_path / "run")
    assert diverged.state == "diverged"
    again = train(tiny(epochs=4, lr=1e12, momentum=0.9), tmp_path / "run")
    assert again.state == "diverged" and again.skipped


def test_a_study_whose_spec_asks_for_more_epochs_continues_its_runs(tmp_path: Path) -> None:
    spec = {"name": "one", "data": {"image_size": 16, "images_per_class": 16},
            "train": {"epochs": 1, "batch_size": 8}, "model": {"width": 0.25},
            "runs": [{"model": "plain_stack", "options": {"depth": 3}}]}
    run_study(spec, tmp_path / "s", preset="smoke", write_report=False)
    spec["train"]["epochs"] = 2
    result = run_study(spec, tmp_path / "s", preset="smoke", write_report=False)
    assert [outcome.state for outcome in result.outcomes] == ["completed"]
    rows = record.read_run_file(tmp_path / "s" / "runs" / "plain_stack" / record.METRICS_FILE)
    assert list(rows["epoch"]) == [1, 2]


# -- settings that do not change results ----------------------------------------------------------


class Interrupted(BaseException):
    """Stands for Ctrl-C at a chosen step (not an Exception: the trainer must not catch it)."""


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    def maybe_crash(done: int) -> None:
        if done == step:
            raise Interrupted

    monkeypatch.setattr(train_loop.faults, "maybe_crash", maybe_crash)


def test_changing_only_checkpoint_every_resumes_to_the_same_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_at(monkeypatch, 9)  # in epoch 2, after the checkpoint at step 8
    with pytest.raises(Interrupted):
        train(tiny(checkpoint_every=4), tmp_path / "run")
    monkeypatch.undo()
    progress = RecordingProgress()
    resumed = train(tiny(checkpoint_every=5), tmp_path / "run", progress=progress)
    assert resumed.state == "completed"
    assert any("train.checkpoint_every: 4 -> 5" in line and "does not change results" in line
               for line in progress.lines)
    assert any("resuming at epoch 2, step 8" in line for line in progress.lines)
    train(tiny(), tmp_path / "reference")
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_train_leaves_a_finished_run_alone_when_only_checkpoint_every_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--model", "plain_stack", "--depth", "3", "--width", "0.25", "--preset",
            "smoke", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    before = (tmp_path / "run" / record.METRICS_FILE).stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--checkpoint-every", "2"]) == 0
    err = capsys.readouterr().err
    assert "does not change results" in err and "already completed" in err
    assert (tmp_path / "run" / record.METRICS_FILE).stat().st_mtime_ns == before


def test_status_json_is_written_with_each_mid_epoch_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_at(monkeypatch, 10)  # right after the checkpoint at step 10, inside epoch 2
    with pytest.raises(Interrupted):
        train(tiny(checkpoint_every=5), tmp_path / "run")
    status = record.read_run_file(tmp_path / "run" / record.STATUS_FILE)
    position = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["position"]
    assert (status.state, status.epoch, status.step) == ("running", 1, 10)
    assert (position["epoch"], position["step"]) == (1, 10)
