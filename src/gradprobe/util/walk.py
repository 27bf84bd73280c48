"""A directory walk that follows symbolic links but visits every real directory and file once,
and never trips on what it cannot read.

`os.walk(followlinks=True)` loops forever on a link to an ancestor, and a link to a sibling or to
`.` visits the same files again under other names: in a dataset that means duplicated images,
copies landing in both the training and the test split. This walk resolves each directory and
file to its real path and skips what it has seen, reporting what it skipped so the caller can
say so. It also sets aside, before anything opens them, names that are not valid UTF-8 (they
cannot be written into a record or a cache key), entries that are not regular files (a FIFO
named `pipe.png` blocks the first `open` for ever) and folders nested deeper than
`MAX_NESTING` (`os.walk` recurses once per level: 1,100 levels raise RecursionError).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_NESTING = 32  # folder levels below the walk's top; image datasets use one or two


@dataclass
class WalkResult:
    """Files found, in walk order, and what was left out and why."""

    files: list[Path] = field(default_factory=list)  # as reached (not resolved), first visit
    repeated_dirs: list[Path] = field(default_factory=list)  # links to a directory seen before
    repeated_files: list[Path] = field(default_factory=list)  # other names of a file seen before
    # (path, reason): a name that is not UTF-8, not a regular file, too deep, or not listable
    set_aside: list[tuple[Path, str]] = field(default_factory=list)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_utf8(name: str) -> bool:
    """Whether `name` came from valid UTF-8 bytes (undecodable bytes arrive as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _listing(directory: Path) -> tuple[list[str], list[str]]:
    """(subdirectories, other entries) of `directory`, links followed, as `os.walk` sorts them."""
    subdirectories, others = [], []
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links; a dangling link is not a directory
            except OSError:
                is_dir = False
            (subdirectories if is_dir else others).append(entry.name)
    return subdirectories, others


def _regular(path: Path) -> str | None:
    """None if `path` is a regular file or cannot be stat'ed (the decoder reports a dangling
    link), else what it is instead."""
    try:
        mode = os.stat(path).st_mode  # follows links: what an open would reach
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


def walk_files(top: Path, keep: Callable[[str], bool], seen_dirs: set[str],
               seen_files: set[str], fenced: tuple[str, ...] = ()) -> WalkResult:
    """Every regular file under `top` whose name passes `keep`, sorted per directory, each real
    file once, in `os.walk`'s top-down order.

    `seen_dirs` and `seen_files` hold real paths and are updated in place, so several walks
    (one per class folder) share them: a file linked into two class folders is kept in the
    first only. A directory that resolves into one of the `fenced` real paths (another class's
    folder), or that contains `top` (a link to an ancestor, which would walk the tree again
    and beyond), is not entered and is reported as repeated. Iterative: no recursion limit.
    """
    top_real = os.path.realpath(top)
    result = WalkResult()
    stack: list[tuple[Path, int]] = [(Path(top), 0)]
    while stack:
        directory, level = stack.pop()
        real = os.path.realpath(directory)
        looped = real in seen_dirs or (real != top_real and _inside(top_real, real))
        if looped or any(_inside(real, other) for other in fenced):
            result.repeated_dirs.append(directory)
            continue
        seen_dirs.add(real)
        try:
            subdirectories, filenames = _listing(directory)
        except OSError as error:
            result.set_aside.append((directory, f"cannot be listed: {error.strerror}"))
            continue
        for filename in sorted(f for f in filenames if keep(f)):
            path = directory / filename
            if not is_utf8(filename):
                result.set_aside.append((path, "its name is not valid UTF-8"))
                continue
            kind = _regular(path)
            if kind is not None:
                result.set_aside.append((path, f"{kind}, not an image file"))
                continue
            real_file = os.path.realpath(path)
            if real_file in seen_files:
                result.repeated_files.append(path)
                continue
            seen_files.add(real_file)
            result.files.append(path)
        entered = []
        for name in sorted(d for d in subdirectories if keep(d)):
            path = directory / name
            if not is_utf8(name):
                result.set_aside.append((path, "its name is not valid UTF-8"))
            elif level + 1 > MAX_NESTING:
                result.set_aside.append((path, f"nested more than {MAX_NESTING} folders deep"))
            else:
                entered.append((path, level + 1))
        stack.extend(reversed(entered))  # popped in sorted order: os.walk's pre-order
    return result
