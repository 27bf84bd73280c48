"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file gradprobe writes goes through these: the data is written to a temporary file in the
same directory, flushed to disk, then renamed over the target (`os.replace` is atomic on POSIX
and Windows when both paths are on one filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; results should get the usual permissions.
_FILE_MODE = 0o666 & ~_current_umask()


_TEMPORARY_PREFIX, _TEMPORARY_SUFFIX = ".", ".tmp"


def _temporary_pattern(target_name: str = "*") -> str:
    return f"{_TEMPORARY_PREFIX}{target_name}.*{_TEMPORARY_SUFFIX}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f"{_TEMPORARY_PREFIX}{target.name}.",
                                    suffix=_TEMPORARY_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in `directory`; return them.

    A SIGKILL between `mkstemp` and the rename leaves a checkpoint-sized `.NAME.XXXX.tmp` for
    good. Call this only while holding the directory's lock: a live writer's file looks the same.
    """
    removed = []
    for path in sorted(Path(directory).glob(_temporary_pattern())):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_atomic(
    target: str | os.PathLike[str], writer: Callable[[IO[Any]], None], *, binary: bool = False
) -> None:
    """Call `writer(handle)` on a temporary file, then rename it over `target`."""
    with atomic_path(target) as tmp, open(tmp, "wb" if binary else "w", encoding=None if binary
                                          else "utf-8") as handle:
        writer(handle)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    write_atomic(target, lambda handle: handle.write(text))


def write_json_atomic(target: str | os.PathLike[str], data: Any) -> None:
    """JSON with sorted keys and a trailing newline; NaN/inf become null (strict JSON)."""
    text = json.dumps(_finite_or_none(data), indent=2, sort_keys=True) + "\n"
    write_text_atomic(target, text)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value
