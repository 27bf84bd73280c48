"""Optional TensorBoard event files: per-epoch scalars and per-layer gradient norms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradprobe.errors import InputError
from gradprobe.record import Col, EpochRow, GradCol

# epoch scalars: every epoch-metrics column but the epoch itself and its wall time
_EPOCH_SCALARS = (Col.train_loss, Col.train_acc, Col.val_loss, Col.val_acc, Col.lr)


class TensorBoardLogger:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise InputError("--tensorboard needs the tensorboard package: "
                             'pip install "gradprobe[tensorboard]".') from error
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, row: EpochRow, gradients: pd.DataFrame) -> None:
        epoch = row.epoch
        for key, value in row.as_dict().items():
            if key in _EPOCH_SCALARS:
                self._writer.add_scalar(f"epoch/{key}", value, epoch)
        this_epoch = gradients[(gradients[GradCol.epoch] == epoch)
                               & (gradients[GradCol.metric] == "weight_grad_norm")]
        means = this_epoch.groupby(GradCol.layer, sort=False)[GradCol.value].mean()
        for name, mean in means.items():
            self._writer.add_scalar(f"weight_grad_norm/{name}", mean, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
