"""A float64 autograd reference for the probe's gradient metrics, written the obvious way.

A double-precision deep copy of the model runs each micro-batch; forward hooks keep every
call's output (the first tensor of a tuple output; an attention's out_proj gets its parent's
output, which is what out_proj produces), `torch.autograd.grad` gives dLoss/d(output), and
`.grad` of the named parameters gives the weight gradients, summed over micro-batches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def assert_same_frames(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Two tidy probe frames: the same rows, values equal to float32 precision."""
    pd.testing.assert_frame_equal(
        frame.drop(columns="value"), expected.drop(columns="value"), check_dtype=False
    )
    torch.testing.assert_close(
        torch.tensor(frame["value"].to_numpy()), torch.tensor(expected["value"].to_numpy()),
        rtol=1e-5, atol=1e-9,
    )


def first_tensor(output: object) -> Tensor:
    return output if isinstance(output, Tensor) else output[0]  # type: ignore[index]


def float64_reference(
    model: nn.Module,
    layers: dict[str, Sequence[str]],
    batches: Sequence[Batch],
    loss_fn=nn.functional.cross_entropy,
) -> dict[str, dict[str, float]]:
    """{layer: {output_grad_norm, weight_grad_norm}} plus {"(model)": {global_grad_norm}}.

    `layers` maps each layer name to the names of its measured parameters (relative to it).
    The loss of each of the `batches` is divided by their number (gradient accumulation).
    """
    reference = copy.deepcopy(model).double()
    for module in reference.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    reference.zero_grad(set_to_none=True)
    modules = dict(reference.named_modules())
    squares = {name: 0.0 for name in layers}
    for inputs, targets in batches:
        outputs: list[tuple[str, Tensor]] = []
        handles = []
        for name in layers:
            module = modules[name]
            source = module
            for parent in reference.modules():
                if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is module:
                    source = parent
            handles.append(source.register_forward_hook(
                lambda _m, _i, out, name=name, kept=outputs: kept.append((name, first_tensor(out)))
            ))
        x = inputs.double() if inputs.is_floating_point() else inputs
        loss = loss_fn(reference(x), targets) / len(batches)
        for handle in handles:
            handle.remove()
        grads = torch.autograd.grad(loss, [out for _, out in outputs], retain_graph=True)
        for (name, _), grad in zip(outputs, grads, strict=True):
            squares[name] += float((grad**2).sum())
        loss.backward()
    result: dict[str, dict[str, float]] = {}
    unique: dict[int, Tensor] = {}
    for name, params in layers.items():
        tensors = [getattr(modules[name], param) for param in params]
        result[name] = {"output_grad_norm": math.sqrt(squares[name])}
        grads = [t.grad for t in tensors if t.grad is not None]
        if grads:
            result[name]["weight_grad_norm"] = math.sqrt(sum(float((g**2).sum()) for g in grads))
        unique.update({id(t): t.grad for t in tensors if t.grad is not None})
    total = sum(float((g**2).sum()) for g in unique.values())
    result["(model)"] = {"global_grad_norm": math.sqrt(total)}
    return result


def frame_values(frame: pd.DataFrame, step: int) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for row in frame[frame.step == step].itertuples():
        values.setdefault(row.layer, {})[row.metric] = row.value
    return values


def assert_matches(
    frame: pd.DataFrame, step: int, expected: dict[str, dict[str, float]], rtol: float = 2e-5
) -> None:
    """Every expected metric present at `step` in the probe's frame, within `rtol`."""
    actual = frame_values(frame, step)
    for layer, metrics in expected.items():
        for metric, value in metrics.items():
            if metric in set(frame.metric):
                assert layer in actual and metric in actual[layer], (step, layer, metric)
                assert actual[layer][metric] == pytest.approx(value, rel=rtol), (layer, metric)
