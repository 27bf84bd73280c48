"""Streaming the probe's history to Parquet: same table as in memory, bounded memory, crash-safe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from checkout import checkout_env
from gradprobe.errors import InputError
from gradprobe.probe import GradientProbe
from gradprobe.probe.stream import PARTS_SUFFIX, read_streamed

METRICS = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm", "update_ratio")


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


def train(probe: GradientProbe, model: nn.Module, steps: int, flush_every: int = 0,
          flush_before_step: bool = False) -> None:
    """`steps` SGD steps on fixed random data, two epochs, recording every step; flush every
    `flush_every` steps, after the optimiser step or between record() and it."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe.watch_optimizer(optimizer)
    data = torch.randn(steps, 4, 6, generator=torch.Generator().manual_seed(1))
    with probe:
        for step in range(steps):
            optimizer.zero_grad()
            model(data[step]).pow(2).mean().backward()
            probe.record(step, epoch=1 + 2 * step // steps)
            if flush_before_step and flush_every and step % flush_every == 0:
                probe.flush()  # the row still waits for update_ratio: it must stay in memory
            optimizer.step()
            if not flush_before_step and flush_every and step % flush_every == 0:
                probe.flush()


def reference_frame(steps: int) -> pd.DataFrame:
    model = make_model()
    probe = GradientProbe(model, metrics=METRICS)
    train(probe, model, steps)
    return probe.to_frame()


def assert_same_table(streamed: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(streamed) == len(expected) > 0
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True).astype(expected.dtypes),
                                  expected.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize(("rows_per_flush", "flush_before_step"),
                         [(1, False), (7, False), (1000, False), (1000, True)])
def test_streamed_file_equals_in_memory_frame(tmp_path: Path, rows_per_flush: int,
                                              flush_before_step: bool):
    path = tmp_path / "history.parquet"
    model = make_model()
    probe = GradientProbe(model, metrics=METRICS)
    probe.stream_to(path, rows_per_flush=rows_per_flush)
    train(probe, model, steps=23, flush_every=5, flush_before_step=flush_before_step)
    expected = reference_frame(23)
    assert path.is_file() and not (tmp_path / f"history.parquet{PARTS_SUFFIX}").exists()
    assert_same_table(pd.read_parquet(path), expected)
    assert_same_table(probe.to_frame(), expected)  # to_frame reads the file back
    # update_ratio is known only after the optimiser step: still streamed for every step
    assert expected.loc[expected["metric"] == "update_ratio", "step"].nunique() == 23


def test_memory_holds_at_most_rows_per_flush(tmp_path: Path):
    model = make_model()
    probe = GradientProbe(model, metrics=METRICS)
    probe.stream_to(tmp_path / "h.parquet", rows_per_flush=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe.watch_optimizer(optimizer)
    held = []
    with probe:
        for _step in range(95):
            optimizer.zero_grad()
            model(torch.ones(2, 6)).sum().backward()
            probe.record()
            optimizer.step()
            held.append(probe._history.held)
    assert max(held) == 10 and len(probe._history) == 95
    assert pd.read_parquet(tmp_path / "h.parquet")["step"].nunique() == 95


def test_crash_leaves_readable_parts(tmp_path: Path):
    path = tmp_path / "history.parquet"
    model = make_model()
    probe = GradientProbe(model, metrics=METRICS[:3], stream_to=path)
    probe.attach()  # never detached: a crash mid-run
    for step in range(12):
        model(torch.ones(2, 6)).sum().backward()
        probe.record(step)
        if step in (4, 9):
            probe.flush()
    assert not path.exists()
    parts = pd.read_parquet(tmp_path / f"history.parquet{PARTS_SUFFIX}")
    assert sorted(parts["step"].unique()) == list(range(10))  # up to the last flush
    assert_same_table(read_streamed(path), parts)
    with pytest.raises(InputError, match=r"parts of an unfinished stream"):
        GradientProbe(model, stream_to=path)


def test_streaming_refuses_what_it_cannot_do(tmp_path: Path):
    model = make_model()
    probe = GradientProbe(model, stream_to=tmp_path / "h.parquet")
    with pytest.raises(InputError, match=r"finish_stream\(\) first"):
        probe.state_dict()
    with pytest.raises(InputError, match="rows_per_flush must be at least 1"):
        probe.stream_to(tmp_path / "other.parquet", rows_per_flush=0)
    with pytest.raises(InputError, match="already streamed to"):
        probe.stream_to(tmp_path / "h.parquet")
    with pytest.raises(InputError, match="No streamed history"):
        read_streamed(tmp_path / "absent.parquet")


def test_truncate_keeps_what_is_on_disk(tmp_path: Path):
    model = make_model()
    probe = GradientProbe(model, stream_to=tmp_path / "h.parquet")
    with probe:
        for step in range(6):
            model(torch.ones(2, 6)).sum().backward()
            probe.record(step)
            if step == 3:
                probe.flush()  # steps 0-3 go to disk
            if step == 4:
                with pytest.raises(ValueError, match="already streamed to disk"):
                    probe.truncate_after(2)
                probe.truncate_after(3)  # rows in memory can still be dropped
    assert sorted(pd.read_parquet(tmp_path / "h.parquet")["step"].unique()) == [0, 1, 2, 3, 5]


@pytest.mark.slow
def test_importing_the_probe_loads_neither_plots_nor_parquet_nor_analysis():
    # probe.summary() and streaming import what they need when called
    code = ("import sys, gradprobe.probe; print(sorted(m for m in ('matplotlib', "
            "'pyarrow.parquet', 'gradprobe.analysis') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=checkout_env())
    assert done.stdout.strip() == "[]"


def test_rows_recorded_before_streaming_starts_go_to_the_file(tmp_path: Path):
    model = make_model()
    probe = GradientProbe(model)
    with probe:
        for step in range(5):
            if step == 3:
                probe.stream_to(tmp_path / "h.parquet")
            model(torch.ones(2, 6)).sum().backward()
            probe.record(step)
    assert sorted(pd.read_parquet(tmp_path / "h.parquet")["step"].unique()) == list(range(5))
    assert probe.to_frame()["step"].nunique() == 5  # the file is read back, nothing twice
