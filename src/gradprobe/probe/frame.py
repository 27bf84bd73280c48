"""The probe's host rows as the tidy table: step, epoch, layer, depth, kind, metric, value.

Shared by `GradientProbe.to_frame()` and the Parquet stream, so a streamed file and an
in-memory frame of the same steps are the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import Tensor

from gradprobe.metrics import MODEL_LAYER
from gradprobe.record import GradCol


@dataclass(frozen=True)
class LayerTable:
    """What a (layers, metrics) block's axes mean."""

    names: Sequence[str]  # layer names, in the probe's column order
    kinds: Sequence[str]  # conv | linear | ..., per layer
    metrics: Sequence[str]  # metric names, in column order
    per_layer: Sequence[bool]  # False: a whole-model metric stored in one layer's cell


def tidy_frame(
    table: LayerTable, depths: Sequence[int], steps: Sequence[int], epochs: Sequence[int],
    values: Tensor, defined: Tensor,
) -> pd.DataFrame:
    """One row per defined value of (rows, layers, metrics) `values`; ordered by step, then
    depth, then metric column. Undefined values are left out (a frozen layer has no
    weight_grad_norm), defined NaN/inf values are kept."""
    # Order layers by depth (layers that never ran last) so rows read input to output.
    order = sorted(range(len(table.names)), key=lambda i: (depths[i] < 0, depths[i]))
    values, defined = values[:, order], defined[:, order]
    rows, layers, metrics = (axis.numpy() for axis in defined.nonzero(as_tuple=True))
    names = np.array(list(table.names), dtype=object)
    kinds = np.array(list(table.kinds), dtype=object)
    layer_names, layer_kinds = names[order][layers], kinds[order][layers]
    layer_depths = np.array(depths, dtype=np.int64)[order][layers]
    # A whole-model metric is stored in one layer's cell; it is reported as MODEL_LAYER.
    model_wide = ~np.array(table.per_layer, dtype=bool)[metrics]
    layer_names[model_wide], layer_kinds[model_wide] = MODEL_LAYER, "model"
    layer_depths[model_wide] = -1
    return pd.DataFrame(
        {
            GradCol.step: np.asarray(steps, dtype=np.int64)[rows],
            GradCol.epoch: np.asarray(epochs, dtype=np.int64)[rows],
            GradCol.layer: layer_names,
            GradCol.depth: layer_depths,
            GradCol.kind: layer_kinds,
            GradCol.metric: np.array(list(table.metrics), dtype=object)[metrics],
            GradCol.value: values[defined].double().numpy(),
        }
    )
