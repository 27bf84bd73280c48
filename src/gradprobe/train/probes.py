"""The trainer's probes: the gradient metrics on the probe's schedule, the diagnostic metrics
(dead units, activations, update size) on a sparser one.

Measured on the quick preset's models (CPU, 1 thread; README, Benchmarks): recording the
diagnostic metrics at every step costs 40-50% of a vgg_deep step, the gradient metrics 9%.
A GradientProbe has one schedule, so the trainer runs two on the same model, each with its own
`every`, and merges their tables; each probe's hooks are idle on the steps it skips.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from gradprobe.config import ProbeConfig
from gradprobe.metrics import metric_info
from gradprobe.probe import GradientProbe
from gradprobe.record import GradCol, empty_gradients


class TrainerProbes:
    """Zero, one or two GradientProbes behind one probe-like interface.

    `gradients`: the metrics recorded every `config.every` steps; `diagnostics`: the catalog's
    diagnostic metrics, recorded every `config.every * config.diagnostic_every` steps (a subset
    of the gradient steps). The trainer's `weight_distance` is neither (it reads the weights).
    """

    def __init__(self, model: nn.Module, config: ProbeConfig) -> None:
        probed = [name for name in config.metrics if metric_info(name).source != "weights"]
        sparse = config.diagnostic_every > 1
        slow = tuple(name for name in probed if sparse and metric_info(name).diagnostic)
        fast = tuple(name for name in probed if name not in slow)
        self.gradients = GradientProbe(model, metrics=fast, every=config.every) if fast else None
        self.diagnostics = (GradientProbe(model, metrics=slow,
                                          every=config.every * config.diagnostic_every)
                            if slow else None)

    @property
    def _probes(self) -> list[GradientProbe]:
        return [probe for probe in (self.gradients, self.diagnostics) if probe is not None]

    def __enter__(self) -> TrainerProbes:
        for probe in self._probes:
            probe.attach()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for probe in self._probes:
            probe.detach()

    def watch_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Let the probes that measure the optimiser's step (update_ratio) see it."""
        for probe in self._probes:
            if any(metric_info(name).needs_optimizer for name in probe.metrics):
                probe.watch_optimizer(optimizer)

    def record(self, step: int, epoch: int, *, scaler: Any = None) -> None:
        for probe in self._probes:
            probe.record(step, epoch, scaler=scaler)

    def flush(self) -> None:
        for probe in self._probes:
            probe.flush()

    def to_frame(self) -> pd.DataFrame:
        """One tidy table, ordered by step, then depth, then the metric's catalog order."""
        frames = [probe.to_frame() for probe in self._probes]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return empty_gradients()
        if len(frames) == 1:
            return frames[0]
        # the gradient probe's metrics come before the diagnostic ones in the catalog, so a
        # stable sort on (step, depth) keeps the order one probe recording all would give
        merged = pd.concat(frames, ignore_index=True)
        return merged.sort_values([GradCol.step, GradCol.depth], kind="stable",
                                  ignore_index=True)

    def state_dict(self) -> dict[str, Any]:
        return {"gradients": self.gradients.state_dict() if self.gradients else None,
                "diagnostics": self.diagnostics.state_dict() if self.diagnostics else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "gradients" not in state and "diagnostics" not in state:
            state = {"gradients": state or None}  # a checkpoint from before the split
        for probe, saved in ((self.gradients, state.get("gradients")),
                             (self.diagnostics, state.get("diagnostics"))):
            if probe is not None and saved:
                probe.load_state_dict(saved)
