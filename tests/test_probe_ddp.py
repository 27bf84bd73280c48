"""GradientProbe under DistributedDataParallel: 2 CPU processes, gloo, against one process.

Each rank sees half of the batch. Weight gradients are read after DDP's all-reduce; output and
activation statistics are all-reduced by the probe. Both ranks must hold the same table, equal
to a single process probing the same model on the full batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from gradprobe.probe import GradientProbe

WORLD = 2
BATCH = 8
STEPS = 2
METRICS = (
    "weight_grad_norm",
    "weight_grad_rms",
    "output_grad_norm",
    "activation_mean",
    "dead_fraction",
    "update_ratio",
)


class SharedConvNet(nn.Module):
    """No batch norm (its batch statistics would differ per rank); one conv used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.shared(self.act(self.stem(x))))
        return self.head(self.act(self.shared(x)).mean(dim=(2, 3)))


def batches() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(BATCH, 3, 8, 8, generator=generator),
            torch.randint(0, 4, (BATCH,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def train(model: nn.Module, probe_model: nn.Module, part: slice) -> pd.DataFrame:
    """STEPS SGD steps on `part` of each batch, probed; the probe's table."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = GradientProbe(probe_model, metrics=METRICS)
    probe.watch_optimizer(optimizer)
    with probe:
        for step, (images, labels) in enumerate(batches()):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[part]), labels[part])
            loss.backward()
            probe.record(step, epoch=0)
            optimizer.step()
    return probe.to_frame()


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(SharedConvNet())
        share = BATCH // WORLD
        frame = train(model, model, slice(rank * share, (rank + 1) * share))
        frame.to_pickle(os.path.join(out_dir, f"rank{rank}.pkl"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_matches_single_process_full_batch(tmp_path: Path) -> None:
    mp.start_processes(
        worker,
        args=(str(tmp_path / "init"), str(tmp_path)),
        nprocs=WORLD,
        start_method="spawn",
    )
    ranks = [pd.read_pickle(tmp_path / f"rank{rank}.pkl") for rank in range(WORLD)]
    pd.testing.assert_frame_equal(ranks[0], ranks[1], check_exact=True)

    torch.manual_seed(0)
    model = SharedConvNet()
    reference = train(model, model, slice(0, BATCH))
    assert len(reference) == len(ranks[0]) > 0
    assert set(reference.metric) == set(METRICS)
    pd.testing.assert_frame_equal(ranks[0], reference, check_exact=False, rtol=1e-5)
