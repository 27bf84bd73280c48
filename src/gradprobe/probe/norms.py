"""L2 norms that neither underflow nor overflow, at the cost of a float32 pass where possible.

Gradient norms span hundreds of orders of magnitude in a collapsing network (a deep sigmoid
stack's first layer sees ~1e-23): squaring float32 entries below ~1e-19 underflows, so a float32
sum of squares reports 0 for a gradient that is small but representable. Summing in float64
avoids that, but costs differently per device:

- On CUDA, `vector_norm(x, dtype=float64)` upcasts inside one reduction kernel: exact and
  nearly free (the reduction is memory-bound). No host synchronisation.
- On CPU the same call first copies the tensor to float64: 5-10x the time of a float32 norm
  (measured 1.0 ms against 0.09 ms for 0.5M entries on one core). And the float32 norm alone
  is not exact enough on long tensors: it accumulates without cascading, 4e-6 relative error
  at 0.5M entries and 1e-4 at 5M. So a tensor longer than `_SHORT` is viewed as rows of at
  least `_ROW` entries (its trailing dimensions, so the view is free), each row's norm taken
  in float32 and the rows combined in float64: 1e-8 measured, at 1.2x the cost of the plain
  float32 norm. When the result cannot be trusted (too small for its size: squares
  underflowed; or not finite: they overflowed) it is recomputed in float64; reading a CPU
  scalar to decide that is not a device synchronisation.
- Apple's MPS has no float64: float32 throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# A float32 sum of squares loses at most ~1.2e-38 per entry to underflow; with this floor,
# the loss stays below 1e-6 of the norm's square (so < 1e-6 relative on the norm).
_FLOAT32_TRUST = math.sqrt(1.2e-38 / 1e-6)
_SHORT = 1 << 16  # a float32 norm of up to this many entries is accurate to ~1e-6 on CPU
_ROW = 4096  # on CPU, longer tensors get float32 norms per row of at least this many entries


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for norms and partial sums, float32 where the device has no float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _float32_is_exact(norm: float, numel: int) -> bool:
    """Whether a float32-accumulated norm of `numel` entries is free of under/overflow."""
    return math.isfinite(norm) and norm >= _FLOAT32_TRUST * math.sqrt(numel)


def norms(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The L2 norm of each tensor, as 0-d tensors in `accumulator_dtype`.

    One `torch._foreach_norm` over the list on an accelerator (one fused kernel on CUDA); on
    CPU one over the short tensors and a row-wise norm for each long one. All tensors are
    expected on one device.
    """
    if not tensors:
        return []
    device = tensors[0].device
    if device.type != "cpu":
        return list(torch._foreach_norm(tensors, 2, dtype=accumulator_dtype(device)))
    result: list[Tensor | None] = [None] * len(tensors)
    short = [i for i, tensor in enumerate(tensors) if tensor.numel() <= _SHORT]
    if short:
        fast = torch._foreach_norm([_at_least_float32(tensors[i]) for i in short], 2)
        values = torch.stack(fast).tolist()
        for i, norm, value in zip(short, fast, values, strict=True):
            result[i] = _checked(norm, value, tensors[i])
    return [norm if norm is not None else _cpu_norm(tensors[i]) for i, norm in enumerate(result)]


def squared_norm(tensor: Tensor) -> Tensor:
    """||tensor||^2 as a 0-d tensor in `accumulator_dtype`, exact for any input dtype.

    Branch-free (no host read), so it is safe inside hooks under torch.compile: on CPU it pays
    for a float64 copy. `norms()` is the fast guarded path, used at `record()`.
    """
    return torch.linalg.vector_norm(tensor, dtype=accumulator_dtype(tensor.device)).square()


def _cpu_norm(tensor: Tensor) -> Tensor:
    """A CPU tensor's norm in float64, from float32 row norms unless that loses precision."""
    if tensor.dtype == torch.float64:
        return torch.linalg.vector_norm(tensor)
    values = _at_least_float32(tensor)
    if values.numel() <= _SHORT:
        norm = torch.linalg.vector_norm(values)
    else:
        row_norms = torch.linalg.vector_norm(_rows(values), dim=1)  # (rows,) float32
        norm = torch.linalg.vector_norm(row_norms, dtype=torch.float64)
    return _checked(norm, norm.item(), tensor)


def _rows(tensor: Tensor) -> Tensor:
    """A (rows, >= _ROW entries) 2-d view of the tensor's entries, or a copy if need be."""
    width = 1
    for size in reversed(tensor.shape):
        width *= size
        if width >= _ROW:
            break
    if width == tensor.numel():  # e.g. a (N, 1) tensor: cut its entries instead
        flat = tensor.reshape(-1)
        rows = flat.numel() // _ROW
        head = flat[: rows * _ROW].view(rows, _ROW)
        tail = torch.nn.functional.pad(
            flat[rows * _ROW :], (0, _ROW - (flat.numel() - rows * _ROW))
        )
        return torch.cat([head, tail.view(1, _ROW)])
    return tensor.reshape(-1, width)


def _checked(norm: Tensor, value: float, tensor: Tensor) -> Tensor:
    """`norm` in float64 if its float32 accumulation was exact, else a float64 recomputation."""
    if tensor.dtype == torch.float64 or _float32_is_exact(value, tensor.numel()):
        return norm.to(torch.float64)
    return torch.linalg.vector_norm(tensor, dtype=torch.float64)


def _at_least_float32(tensor: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (their sums of squares overflow); others unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
