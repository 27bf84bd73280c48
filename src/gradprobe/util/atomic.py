"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file gradprobe writes goes through these: the data is written to a temporary file in the
same directory, flushed to disk, then renamed over the target (`os.replace` is atomic on POSIX
and Windows when both paths are on one filesystem).

A full disk (or quota) is one error, `NoSpaceError`, whatever wrote: Python's own writes raise
`OSError(ENOSPC)`, but `torch.save` to a path fails inside its C++ writer with a RuntimeError
(`basic_ios::clear`, then `unexpected pos ...`) that carries no errno. Its message names the
file, the space free and the space the write needed, so the CLI prints it instead of a chain of
tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
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
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# A write that failed without an errno (torch's C++ writer) is taken as "disk full" when less
# than this is left on the filesystem: the failed write itself used up the rest.
LOW_SPACE_BYTES = 1 << 20


class NoSpaceError(OSError):
    """The filesystem (or the user's quota) ran out while writing `path`; nothing was replaced.

    An OSError with errno ENOSPC, so every `except OSError` that copes with a failed write
    still does; its text is one sentence with the path, the space free and the fix.
    """

    def __init__(self, path: Path, needed: int | None, free: int | None) -> None:
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.path, self.needed, self.free = Path(path), needed, free

    def __reduce__(self) -> tuple[type[NoSpaceError], tuple[Path, int | None, int | None]]:
        return NoSpaceError, (self.path, self.needed, self.free)  # crosses process pools intact

    def __str__(self) -> str:
        free = "" if self.free is None else f" ({human_bytes(self.free)} free)"
        needed = ("some space" if not self.needed else f"at least {human_bytes(self.needed)}")
        return (f"no space left on the device holding {self.path.parent}{free} while writing "
                f"{self.path.name}. Fix: free {needed} there (or choose another folder), then "
                "run the same command again: what was finished is kept, the rest resumes from "
                "its last checkpoint.")


def human_bytes(size: float) -> str:
    """`512 B`, `4.0 KiB`, `1.2 GiB`: a byte count as a person reads it (up to TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on `directory`'s filesystem (None: unknown)."""
    try:
        info = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    return info.f_bavail * info.f_frsize


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def no_space_error(error: BaseException, target: Path, tmp: Path | None = None
                   ) -> NoSpaceError | None:
    """`error` as a `NoSpaceError` for writing `target` (via `tmp`) if a full disk caused it."""
    if isinstance(error, NoSpaceError):
        return error
    chain: BaseException | None = error
    full = False
    while chain is not None and not full:
        full = isinstance(chain, OSError) and chain.errno in _NO_SPACE_ERRNOS
        chain = chain.__cause__ or chain.__context__
    free = free_bytes(target.parent)
    if not full and isinstance(error, RuntimeError):  # torch's writer: no errno to go by
        full = free is not None and free < LOW_SPACE_BYTES
    if not full:
        return None
    # what the write needed: at least what it had written, or the size of the file it replaces
    needed = max(_size(tmp) if tmp is not None else 0, _size(target)) or None
    return NoSpaceError(target, needed, free)


def _temporary_pattern(target_name: str = "*") -> str:
    return f"{_TEMPORARY_PREFIX}{target_name}.*{_TEMPORARY_SUFFIX}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent,
                                        prefix=f"{_TEMPORARY_PREFIX}{target.name}.",
                                        suffix=_TEMPORARY_SUFFIX)
    except OSError as error:
        full = no_space_error(error, target)
        if full is None:
            raise
        raise full from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except Exception as error:  # measured before the temporary goes (it holds the used space)
        full = no_space_error(error, target, tmp)
        if full is None or full is error:
            raise
        raise full from error
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
