"""Optimisers, learning-rate schedules and the optional linear warm-up from a `TrainConfig`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gradprobe.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. `none` is a constant schedule, so checkpoints look the same."""
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size,
                                               gamma=config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def warmup_factor(step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """The linear warm-up multiplier of the learning rate at optimiser step `step` (0-based).

    Ramps (step + 1) / W over the first W = ceil(warmup_epochs * steps_per_epoch) steps, then 1
    (Goyal et al. 2017). A pure function of the step, so a resumed run warms up identically.
    """
    total = math.ceil(warmup_epochs * steps_per_epoch)
    if total <= 0 or step >= total:
        return 1.0
    return (step + 1) / total


@contextmanager
def warmup_lr(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    steps_per_epoch: int,
    warmup_epochs: float,
) -> Iterator[None]:
    """Scale the scheduled learning rate by `warmup_factor` for the optimiser step inside.

    The scheduled rate is restored afterwards, so the epoch scheduler (whose chainable form reads
    the optimiser's current lr), the logged lr and the checkpoint never see a warmed value.
    """
    factor = warmup_factor(step, steps_per_epoch, warmup_epochs)
    if factor == 1.0:
        yield
        return
    scheduled = scheduler.get_last_lr()
    for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
        group["lr"] = lr * factor
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr
