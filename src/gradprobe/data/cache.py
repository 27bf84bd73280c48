"""On-disk cache of decoded datasets: atomic writes, corrupt files ignored.

A cache file is a `torch.save`d dict of tensors, strings and lists, read back with
`weights_only=True` (no arbitrary unpickling). Writes go to a temporary file in the same folder
followed by `os.replace`, so a reader never sees a half-written file, and concurrent writers of
the same key (a process pool decoding one folder) simply race to publish identical content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gradprobe.util.atomic import atomic_path

CACHE_ENV = "GRADPROBE_CACHE"


def default_cache_dir() -> Path:
    """$GRADPROBE_CACHE if set, else ~/.cache/gradprobe/images."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "gradprobe" / "images"


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The cache folder to use: the argument if given, else `default_cache_dir()`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write `payload` to `path` via a temporary file and `os.replace` (atomic on POSIX)."""
    with atomic_path(path) as temporary:  # a full disk: NoSpaceError, an OSError
        torch.save(payload, temporary)


def load_or_none(path: Path) -> dict[str, Any] | None:
    """The cached payload, or None when the file is missing or unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, garbage bytes, unpickling refused: all mean "rebuild"
        return None
    return payload if isinstance(payload, dict) else None
