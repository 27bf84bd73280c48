"""Optional TensorBoard event files: per-epoch scalars and per-layer gradient norms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradprobe.errors import InputError


class TensorBoardLogger:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise InputError("--tensorboard needs the tensorboard package: "
                             'pip install "gradprobe[tensorboard]".') from error
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log_epoch(self, row: dict[str, float], gradients: pd.DataFrame) -> None:
        epoch = int(row["epoch"])
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            self._writer.add_scalar(f"epoch/{key}", row[key], epoch)
        this_epoch = gradients[(gradients["epoch"] == epoch)
                               & (gradients["metric"] == "weight_grad_norm")]
        for layer, mean in this_epoch.groupby("layer", sort=False)["value"].mean().items():
            self._writer.add_scalar(f"weight_grad_norm/{layer}", mean, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
