"""A run's torch CPU thread count, set for the run and restored afterwards.

CPU kernels (convolutions, matmuls, sums) split a reduction into per-thread partial sums, so the
same run gives different floats with 1 or 2 threads, and training amplifies the difference. The
count is therefore part of a run's config, not of the machine or the executor that runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the body with `count` intra-op threads, then restore the caller's count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
