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
_ROW = 4096  # on CPU, longer tensors get float32 norms per row of this many entries


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for norms and partial sums, float32 where the device has no float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _float32_is_exact(norm: float, numel: int) -> bool:
    """Whether a float32-accumulated norm of `numel` entries is free of under/overflow."""
    return math.isfinite(norm) and norm >= _FLOAT32_TRUST * math.sqrt(numel)


def norms(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The L2 norm of each tensor, as 0-d tensors in `accumulator_dtype`.

    One `torch._foreach_norm` over the list on an accelerator (one fused kernel on CUDA); on
    CPU `fast_norm` of each, then `guard`. All tensors are expected on one device.
    """
    if not tensors:
        return []
    device = tensors[0].device
    if device.type != "cpu":
        return list(torch._foreach_norm(tensors, 2, dtype=accumulator_dtype(device)))
    short = [i for i, tensor in enumerate(tensors) if tensor.numel() <= _SHORT]
    fast: list[Tensor | None] = [None] * len(tensors)
    if short:  # one kernel call for every short tensor
        for i, norm in zip(
            short, torch._foreach_norm([_at_least_float32(tensors[i]) for i in short], 2),
            strict=True,
        ):
            fast[i] = norm
    found = [norm if norm is not None else fast_norm(tensors[i]) for i, norm in enumerate(fast)]
    return guard(found, tensors)


def cpu_norm_values(tensors: Sequence[Tensor]) -> list[float]:
    """CPU tensors' norms as Python floats, float32 passes guarded as in `norms`.

    The cheapest exact path on a CPU: one kernel per tensor (one for all short ones) and one
    host read, no tensor arithmetic to combine results afterwards.
    """
    short = [tensor for tensor in tensors if tensor.numel() <= _SHORT]
    fast = iter(torch._foreach_norm([_at_least_float32(t) for t in short], 2) if short else [])
    found = [next(fast) if t.numel() <= _SHORT else fast_norm(t) for t in tensors]
    values = [norm.item() for norm in found]  # CPU scalars: cheaper than stack + tolist
    return [
        value if tensor.dtype == torch.float64 or _float32_is_exact(value, tensor.numel())
        else float(torch.linalg.vector_norm(tensor, dtype=torch.float64))
        for value, tensor in zip(values, tensors, strict=True)
    ]


def cpu_norm_value(tensor: Tensor) -> float:
    """One CPU tensor's norm as a Python float (see `cpu_norm_values`)."""
    if tensor.dtype == torch.float64:
        return float(torch.linalg.vector_norm(tensor))
    values = _at_least_float32(tensor)
    norm = torch.linalg.vector_norm(values) if values.numel() <= _SHORT else fast_norm(values)
    value = float(norm)
    if _float32_is_exact(value, tensor.numel()):
        return value
    return float(torch.linalg.vector_norm(tensor, dtype=torch.float64))


def fast_norm(tensor: Tensor) -> Tensor:
    """A CPU tensor's norm accumulated in float32 (per row of a long tensor), unchecked.

    Branch-free and cheap (one pass, ~1.2x a plain float32 norm): hooks call it while the
    tensor is still in cache; `guard` later replaces the results that under/overflowed.
    """
    if tensor.dtype == torch.float64:
        return torch.linalg.vector_norm(tensor)
    values = _at_least_float32(tensor)
    if values.numel() <= _SHORT:
        return torch.linalg.vector_norm(values)
    flat = _flat(values)
    rows = flat.numel() // _ROW
    row_norms = torch.linalg.vector_norm(flat[: rows * _ROW].view(rows, _ROW), dim=1)
    if rows * _ROW < flat.numel():  # the ragged tail as one more "row"
        tail = torch.linalg.vector_norm(flat[rows * _ROW :]).reshape(1)
        row_norms = torch.cat([row_norms, tail])
    return torch.linalg.vector_norm(row_norms, dtype=torch.float64)


def guard(fast: Sequence[Tensor], tensors: Sequence[Tensor]) -> list[Tensor]:
    """`fast` norms in float64, each recomputed in float64 where float32 lost it (CPU only).

    One host read for the whole list: on a CPU that is not a device synchronisation.
    """
    if not fast:
        return []
    values = [norm.item() for norm in fast]
    return [
        _checked(norm, value, tensor) for norm, value, tensor in zip(fast, values, tensors,
                                                                    strict=True)
    ]


def squared_norm(tensor: Tensor) -> Tensor:
    """||tensor||^2 as a 0-d tensor in `accumulator_dtype`, exact for any input dtype.

    Branch-free (no host read), so it is safe inside hooks under torch.compile: on CPU it pays
    for a float64 copy. `norms()` is the fast guarded path, used at `record()`.
    """
    return torch.linalg.vector_norm(tensor, dtype=accumulator_dtype(tensor.device)).square()


def _flat(tensor: Tensor) -> Tensor:
    """The entries as a 1-d tensor: a view for contiguous and channels_last tensors."""
    if tensor.is_contiguous():
        return tensor.view(-1)
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor.permute(0, 2, 3, 1).reshape(-1)  # a view: the order norms ignore
    return tensor.reshape(-1)


def _checked(norm: Tensor, value: float, tensor: Tensor) -> Tensor:
    """`norm` in float64 if its float32 accumulation was exact, else a float64 recomputation."""
    if tensor.dtype == torch.float64 or _float32_is_exact(value, tensor.numel()):
        return norm.to(torch.float64)
    return torch.linalg.vector_norm(tensor, dtype=torch.float64)


def _at_least_float32(tensor: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (their sums of squares overflow); others unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
