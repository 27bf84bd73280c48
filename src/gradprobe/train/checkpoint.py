"""Checkpoints that are safe to load and survive a crash at any instant.

A checkpoint holds only tensors and plain Python values, so it loads with
`torch.load(..., weights_only=True)`, which refuses pickled code objects. Two generations are kept
(`checkpoint.pt` and `checkpoint.prev.pt`): a newest one that is truncated or unreadable is
skipped with a warning and the previous one is used.
"""

from __future__ import annotations

import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprobe.errors import InputError
from gradprobe.util.atomic import atomic_path

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"

def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain numbers (weights_only-loadable)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically as the newest checkpoint, keeping the previous generation."""
    target = run_dir / CHECKPOINT
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
        if target.exists():
            # The old newest becomes the fallback only once the new one is fully on disk.
            target.replace(run_dir / PREVIOUS_CHECKPOINT)
    return target


def load_checkpoint_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file, refusing anything that is not plain data."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged
        raise ValueError(f"{path} is not a complete checkpoint archive (truncated or corrupt)")
    try:
        # weights_only=True is explicit, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off.
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{path} holds objects other than tensors and plain values, so it was not loaded "
            f"({str(error).splitlines()[0]}). Delete it, or rerun with --force to start over."
        ) from error


def load_latest_checkpoint(
    run_dir: Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The newest readable checkpoint of a run, or None when there is none."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return load_checkpoint_file(path, map_location)
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # truncated zip, bad header, ...: fall back a generation
            warnings.warn(f"skipping unreadable checkpoint {path}: {error}", stacklevel=2)
    return None


class UnsafeCheckpointError(InputError):
    """A checkpoint file carries pickled code; it is never loaded."""
