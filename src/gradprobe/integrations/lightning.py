"""`GradProbeCallback`: a `GradientProbe` in a `lightning.Trainer` (extra `gradprobe[lightning]`).

    from gradprobe.integrations.lightning import GradProbeCallback
    callback = GradProbeCallback(save_path="gradients.parquet")
    lightning.Trainer(callbacks=[callback]).fit(module, loader)
    callback.frame  # tidy: step, epoch, layer, depth, kind, metric, value

Where it reads: Lightning calls `on_before_optimizer_step` once per optimiser step, after the
last accumulation micro-batch's backward, after AMP's `scaler.unscale_()` and before gradient
clipping (`Precision._after_closure`), which is the probe's named point. Steps are
`trainer.global_step` (0-based optimiser steps), epochs `trainer.current_epoch + 1` (1-based,
as in `gradprobe train`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradprobe.integrations._common import (
    check_names,
    name_tuple,
    require,
    save_frame,
    scalars_by_step,
)
from gradprobe.probe import DEFAULT_METRICS, GradientProbe
from gradprobe.probe.layers import LayerSelector

pl = require("lightning.pytorch", "lightning")


class GradProbeCallback(pl.Callback):
    """Probe the LightningModule's layers during `fit`, log them, and keep the tidy frame.

    `layers`, `metrics`, `every`: as `GradientProbe` (layer names are relative to the
    LightningModule, e.g. `model.features.0` for a net kept in `self.model`).
    `log_metrics`, `log_layers`: which recorded values become logger scalars, named
    `{prefix}/{metric}/{layer}`; None = all, `()` = log nothing. Logging happens at the end of
    each training epoch (one device-to-host copy per epoch), on global rank 0.
    `save_path`: where rank 0 writes the tidy frame as Parquet when fit ends (None = don't).
    """

    def __init__(
        self,
        layers: LayerSelector = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        every: int | Callable[[int], bool] = 1,
        *,
        log_metrics: Sequence[str] | None = ("weight_grad_norm",),
        log_layers: Sequence[str] | None = None,
        prefix: str = "gradprobe",
        save_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.layers, self.metrics, self.every = layers, tuple(metrics), every
        self.log_metrics = name_tuple(log_metrics, "metric", "log_metrics")
        self.log_layers = name_tuple(log_layers, "layer", "log_layers")
        self.prefix = prefix
        self.save_path = None if save_path is None else Path(save_path)
        self.probe: GradientProbe | None = None
        self.frame: pd.DataFrame | None = None  # the tidy frame, set when fit ends
        self._logged_through = -1  # last step already sent to the loggers

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        probe = GradientProbe(pl_module, self.layers, self.metrics, self.every)
        check_names("metric", self.log_metrics, probe.metrics, "log_metrics")
        check_names("layer", self.log_layers, [layer.name for layer in probe.layers], "log_layers")
        self.probe = probe.attach()
        self.frame, self._logged_through = None, -1

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        probe = self._probe()
        # Under 16-bit AMP the weight gradients are already unscaled here, the output gradients
        # the hooks saw are not: the scaler tells the probe both.
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        probe.record(trainer.global_step, trainer.current_epoch + 1, scaler=scaler)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer)
        self._finish(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.probe is not None:  # keep what was recorded, release the hooks
            self._finish(trainer)

    def _finish(self, trainer: pl.Trainer) -> None:
        probe = self._probe()
        probe.detach()
        self.frame = probe.to_frame()
        if self.save_path is not None and trainer.is_global_zero:
            save_frame(self.frame, self.save_path)

    def _log(self, trainer: pl.Trainer) -> None:
        if not trainer.loggers or self.log_metrics == () or self.log_layers == ():
            return
        probe = self._probe()
        frame = probe.to_frame()
        frame = frame[frame["step"] > self._logged_through]
        if frame.empty:
            return
        self._logged_through = int(frame["step"].max())
        if not trainer.is_global_zero:  # the probe's tables are identical on every rank
            return
        for step, scalars in scalars_by_step(
            frame, self.log_metrics, self.log_layers, self.prefix
        ).items():
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)

    def _probe(self) -> GradientProbe:
        if self.probe is None:
            raise RuntimeError("GradProbeCallback is used outside Trainer.fit (no probe yet)")
        return self.probe
