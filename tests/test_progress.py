"""What a person sees while runs train: in-epoch lines without a terminal, no `nan` in a bar,
a study's runs done / elapsed / time left, each run's end once, and a warning for a long run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fakes import RecordingProgress
from gradprobe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from gradprobe.progress import (
    LONG_RUN_SECONDS,
    ConsoleProgress,
    RunPace,
    StudyClock,
    format_duration,
)
from gradprobe.study import run_study
from gradprobe.train import train


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now



def test_durations_read_as_a_person_reads_them() -> None:
    assert [format_duration(s) for s in (0, 42.4, 245, 4200, float("nan"))] == \
        ["0s", "42s", "4m05s", "1h10m", "?"]


def test_without_a_terminal_an_epoch_prints_a_line_every_interval() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = ConsoleProgress(stream, bars=False, interval=20, clock=clock).epoch_bar(
        "vgg_deep epoch 1/15", total=100)
    for _ in range(10):  # 10 steps of 5 s: a line at 20 s and at 40 s
        clock.now += 5
        bar.update(0.5, None)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "vgg_deep epoch 1/15: step 4/100 (4%), loss 0.5000, 20s in, about 8m00s left in the epoch",
        "vgg_deep epoch 1/15: step 8/100 (8%), loss 0.5000, 40s in, about 7m40s left in the epoch",
    ]


def test_a_resumed_epoch_counts_its_pace_from_the_steps_it_did() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = ConsoleProgress(stream, bars=False, interval=10, clock=clock).epoch_bar(
        "r epoch 2/3", total=100, initial=90)
    clock.now += 10
    bar.update(1.0, 0.25)
    assert stream.getvalue().strip() == \
        "r epoch 2/3: step 91/100 (91%), loss 1.0000, acc 0.250, 10s in, about 1m30s left in " \
        "the epoch"


def test_a_terminal_bar_shows_no_accuracy_before_it_is_measured() -> None:
    bar = ConsoleProgress(io.StringIO(), bars=True).epoch_bar("r epoch 1/1", total=40)
    postfixes = []
    for step in range(40):
        bar.update(0.7, 0.5 if step == 19 else None)
        postfixes.append(bar._bar.postfix)  # what the bar draws after the counts
    bar.close()
    assert postfixes[0] == "loss=0.7000"  # no acc=nan before the first measurement
    assert postfixes[19] == postfixes[39] == "loss=0.7000, acc=0.500"


def test_study_clock_says_runs_done_elapsed_and_time_left() -> None:
    lines, clock = RecordingProgress(), FakeClock()
    study = StudyClock(lines, runs=4, clock=clock)
    study.run_ended(trained=False)  # left as it was: it said so itself
    clock.now = 30
    study.run_ended(trained=True)
    clock.now = 60
    study.run_ended(trained=True)
    clock.now = 61
    study.run_ended(trained=False)  # the last run: always a line
    assert lines.lines == [
        "study: 2 of 4 runs done, 30s elapsed, about 1m00s left",
        "study: 3 of 4 runs done, 1m00s elapsed, about 30s left",
        "study: 4 of 4 runs done, 1m01s elapsed",
    ]


@pytest.mark.parametrize(("seconds_per_step", "warned"), [(0.01, False), (1.0, True)])
def test_a_long_run_says_how_long_after_its_first_timed_steps(seconds_per_step: float,
                                                              warned: bool) -> None:
    lines, clock = RecordingProgress(), FakeClock()
    pace = RunPace(lines, "vgg_deep", train_steps=4000, eval_batches=1200, clock=clock)
    clock.now += 30  # the first step's one-off costs are not timed
    pace.step_done()
    for _ in range(10):
        clock.now += seconds_per_step
        pace.step_done()
    if not warned:
        assert lines.lines == []
        return
    expected = 1.0 * (4000 + 1200 / 3)
    assert expected > LONG_RUN_SECONDS
    assert lines.lines == [
        f"vgg_deep: this run will take about {format_duration(expected)} here (4000 steps at 1 "
        "s each, timed on its first steps); fewer epochs, a smaller width or image size, or a "
        "smaller preset shorten it"]


def tiny(epochs: int = 2) -> RunConfig:
    return RunConfig(model=ModelConfig(name="plain_stack", depth=3, width=0.25),
                     data=DataConfig(image_size=16, images_per_class=16),
                     train=TrainConfig(epochs=epochs, batch_size=8))


def test_a_run_reports_inside_its_epochs_and_its_end_once(tmp_path: Path) -> None:
    stream = io.StringIO()
    train(tiny(), tmp_path / "run", progress=ConsoleProgress(stream, bars=False, interval=0))
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("run epoch 1/2: step 1/") for line in lines)
    assert sum(": completed" in line for line in lines) == 1
    assert "nan" not in stream.getvalue()


def test_a_local_study_prints_runs_done_and_each_end_once(tmp_path: Path) -> None:
    stream = io.StringIO()
    spec = {"name": "two", "data": {"image_size": 16, "images_per_class": 16},
            "train": {"epochs": 1, "batch_size": 8}, "model": {"width": 0.25},
            "runs": [{"model": "plain_stack", "options": {"depth": 3}},
                     {"model": "residual_stack", "options": {"depth": 5}}]}
    progress = ConsoleProgress(stream, bars=False)
    run_study(spec, tmp_path / "s", preset="smoke", write_report=False, progress=progress)
    text = stream.getvalue()
    assert "study: 1 of 2 runs done" in text and "study: 2 of 2 runs done" in text
    for run in ("plain_stack", "residual_stack"):
        assert text.count(f"{run}: completed") == 1
    stream.truncate(0)
    run_study(spec, tmp_path / "s", preset="smoke", write_report=False, progress=progress)
    assert stream.getvalue().count("runs done") == 1  # both left as they were: one line


@pytest.mark.slow
def test_a_pool_study_prints_each_end_once_and_the_study_clock(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec = {"name": "two", "data": {"image_size": 16, "images_per_class": 16},
            "train": {"epochs": 1, "batch_size": 8}, "model": {"width": 0.25},
            "runs": [{"model": "plain_stack", "options": {"depth": 3}},
                     {"model": "residual_stack", "options": {"depth": 5}}]}
    run_study(spec, tmp_path / "s", preset="smoke", write_report=False, jobs=2,
              progress=ConsoleProgress(bars=False))
    err = capfd.readouterr().err  # the workers write to the same stderr
    for run in ("plain_stack", "residual_stack"):
        assert err.count(f"{run}: completed") == 1, err
        assert f"{run} epoch 1/1" in err  # the workers' lines name their run
    assert "study: 2 of 2 runs done" in err
