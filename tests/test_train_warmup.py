"""Tests of the linear learning-rate warm-up (`train.warmup_epochs`)."""

from __future__ import annotations

import pytest
import torch

from gradprobe.config import TrainConfig
from gradprobe.train.optim import build_optimizer, build_scheduler, warmup_factor, warmup_lr


def test_warmup_factor_ramps_linearly_then_stays_at_one() -> None:
    assert [warmup_factor(s, 4, 1.0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_factor(s, 4, 0.5) for s in range(3)] == [0.5, 1.0, 1.0]
    assert warmup_factor(0, 4, 0.0) == 1.0  # off by default


def test_warmup_is_off_by_default() -> None:
    assert TrainConfig().warmup_epochs == 0.0
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        TrainConfig(warmup_epochs=-1)


def test_warmup_scales_each_step_and_leaves_the_schedule_alone() -> None:
    """SGD without momentum on a unit gradient moves the weight by exactly the lr it used.

    Two warm-up epochs of 3 steps under StepLR(step_size=2, gamma=0.5): the steps use
    0.1 * (1/6 .. 6/6), then 0.05 from epoch 3 (the schedule as if there were no warm-up).
    """
    weight = torch.nn.Parameter(torch.zeros(()))
    model = torch.nn.Module()
    model.weight = weight
    config = TrainConfig(lr=0.1, scheduler="step", step_size=2, gamma=0.5, warmup_epochs=2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    used: list[float] = []
    step = 0
    for _epoch in range(3):
        for _batch in range(3):
            before = float(weight)
            weight.grad = torch.ones(())
            with warmup_lr(optimizer, scheduler, step, 3, config.warmup_epochs):
                optimizer.step()
            used.append(before - float(weight))
            assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0]  # restored
            step += 1
        scheduler.step()
    expected = [0.1 * k / 6 for k in range(1, 7)] + [0.05] * 3
    assert used == pytest.approx(expected, rel=1e-6)
