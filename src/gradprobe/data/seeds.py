"""Derived seeds: independent, reproducible random streams from one user seed.

Every random choice in the data layer (the split, the synthetic images, the shuffle of epoch e,
the augmentation of batch b) draws from its own generator, seeded by hashing the user seed with
the names and numbers that identify that choice. A stream is then a pure function of its inputs:
a run resumed mid-epoch redraws exactly the batches it would have seen, and adding a class to the
synthetic set does not change the images of the others.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple of ints and strings (negative ints allowed), stable across runs.

    sha256 rather than Python's `hash()`, which is salted per process for strings.
    """
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # >> 1: fits torch's and numpy's seed range


def torch_generator(*parts: int | str) -> torch.Generator:
    """A CPU `torch.Generator` seeded with `derive_seed(*parts)`."""
    return torch.Generator().manual_seed(derive_seed(*parts))
