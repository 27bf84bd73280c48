"""A directory walk that follows symbolic links but visits every real directory and file once.

`os.walk(followlinks=True)` loops forever on a link to an ancestor, and a link to a sibling or to
`.` visits the same files again under other names: in a dataset that means duplicated images,
copies landing in both the training and the test split. This walk resolves each directory and
file to its real path and skips what it has seen, reporting what it skipped so the caller can
say so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class WalkResult:
    """Files found, in walk order, and the links that led somewhere already visited."""

    files: list[Path] = field(default_factory=list)  # as reached (not resolved), first visit
    repeated_dirs: list[Path] = field(default_factory=list)  # links to a directory seen before
    repeated_files: list[Path] = field(default_factory=list)  # other names of a file seen before


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk_files(top: Path, keep: Callable[[str], bool], seen_dirs: set[str],
               seen_files: set[str], fenced: tuple[str, ...] = ()) -> WalkResult:
    """Every file under `top` whose name passes `keep`, sorted per directory, each real file once.

    `seen_dirs` and `seen_files` hold real paths and are updated in place, so several walks
    (one per class folder) share them: a file linked into two class folders is kept in the
    first only. A directory that resolves into one of the `fenced` real paths (another class's
    folder), or that contains `top` (a link to an ancestor, which would walk the tree again
    and beyond), is not entered and is reported as repeated.
    """
    top_real = os.path.realpath(top)
    result = WalkResult()
    for directory, subdirectories, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(directory)
        looped = real in seen_dirs or (real != top_real and _inside(top_real, real))
        if looped or any(_inside(real, other) for other in fenced):
            result.repeated_dirs.append(Path(directory))
            subdirectories[:] = []
            continue
        seen_dirs.add(real)
        subdirectories[:] = sorted(d for d in subdirectories if keep(d))  # walk order
        for filename in sorted(f for f in filenames if keep(f)):
            path = Path(directory) / filename
            real_file = os.path.realpath(path)
            if real_file in seen_files:
                result.repeated_files.append(path)
                continue
            seen_files.add(real_file)
            result.files.append(path)
    return result
