"""How far each probed layer's weights have moved from their initial values, once per epoch.

‖W_t − W_0‖ / ‖W_0‖ (Frobenius norms, float64) connects the gradient a layer receives to what it
learns: a layer whose gradient vanished barely leaves its initialisation. W_0 is a copy taken
when the model is built; a resumed run rebuilds the model under the same seed before loading its
checkpoint, so the copy is the same initialisation and nothing extra is stored for it. The rows
already computed travel in the checkpoint (`state_dict`), so a resumed run writes the same file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gradprobe.record import GRADIENT_COLUMNS, GradCol, empty_gradients

WEIGHT_DISTANCE = "weight_distance"  # its name in the metric catalog and in gradients.parquet


class WeightDistance:
    """Snapshots the probed layers' weights at construction; `record` adds one row per layer.

    Disabled (`enabled=False`, the metric was not chosen) it records nothing."""

    def __init__(self, model: nn.Module, *, enabled: bool = True) -> None:
        # (name, kind, depth, weight, initial weight) of every probed layer with a weight
        self._layers: list[tuple[str, str, int, torch.Tensor, torch.Tensor]] = []
        for point in getattr(model, "probe_points", []) if enabled else []:
            weight = getattr(model.get_submodule(point.name), "weight", None)
            if isinstance(weight, torch.Tensor):
                self._layers.append((point.name, point.kind, int(point.depth), weight,
                                     weight.detach().to(torch.float64, copy=True)))
        self._rows: list[list[Any]] = []  # [step, epoch, layer, depth, kind, value]

    @torch.no_grad()
    def record(self, step: int, epoch: int) -> None:
        """One row per layer: the relative distance after optimiser step `step` of `epoch`."""
        if not self._layers:
            return
        distances = torch.stack([  # (layers,)
            torch.linalg.vector_norm(weight.detach().double() - initial)
            / torch.linalg.vector_norm(initial)
            for _, _, _, weight, initial in self._layers
        ]).cpu().tolist()
        for (name, kind, depth, _, _), value in zip(self._layers, distances, strict=True):
            self._rows.append([step, epoch, name, depth, kind, float(value)])

    def to_frame(self) -> pd.DataFrame:
        """The rows in the tidy gradients.parquet layout (metric = "weight_distance")."""
        if not self._rows:
            return empty_gradients()
        step, epoch, layer, depth, kind, value = zip(*self._rows, strict=True)
        frame = pd.DataFrame({
            GradCol.step: np.asarray(step, dtype=np.int64),
            GradCol.epoch: np.asarray(epoch, dtype=np.int64),
            GradCol.layer: np.asarray(layer, dtype=object),
            GradCol.depth: np.asarray(depth, dtype=np.int64),
            GradCol.kind: np.asarray(kind, dtype=object), GradCol.metric: WEIGHT_DISTANCE,
            GradCol.value: np.asarray(value, dtype=np.float64),
        })
        return frame[list(GRADIENT_COLUMNS)]

    def state_dict(self) -> list[list[Any]]:
        """The rows so far (plain numbers and strings: loadable with weights_only=True)."""
        return [list(row) for row in self._rows]

    def load_state_dict(self, rows: list[list[Any]]) -> None:
        self._rows = [list(row) for row in rows]


def with_weight_distance(gradients: pd.DataFrame, distances: pd.DataFrame) -> pd.DataFrame:
    """The probe's records followed by the weight-distance rows (either may be empty)."""
    if distances.empty:
        return gradients
    if gradients.empty:
        return distances
    return pd.concat([gradients, distances], ignore_index=True)
