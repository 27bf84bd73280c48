"""Names that become paths: checked so that nothing a spec or a flag says can leave its folder.

A run name, an experiment label or an axis value ends up as a directory name under the study's
`runs/`. Unchecked, `../../elsewhere` or `/some/dir` writes (and overwrites) outside `--out`.
Every such name goes through `safe_name`, and every path built from one through `child_path`,
which also resolves links and checks that the result is still inside the parent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gradprobe.errors import InputError
from gradprobe.util.atomic import no_space_error

# Letters, digits and a few separators that mean nothing to a shell or a filesystem; `=` and `,`
# appear in generated run names such as `vgg_deep-norm=batch,seed=1`.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+@-]*")
MAX_NAME_LENGTH = 200  # well under the usual 255-byte limit of a file name


def safe_name(name: str, what: str = "name") -> str:
    """Return `name` unchanged if it is safe as one path component, else raise InputError."""
    if not isinstance(name, str) or not name:
        raise InputError(f"{what} must be a non-empty string, not {name!r}.")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(
            f"{what} {name[:40]!r}... is {len(name)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}. Fix: give it a shorter name."
        )
    if not _SAFE.fullmatch(name) or ".." in name:
        raise InputError(
            f"{what} {name!r} cannot be used as a folder name: it must start with a letter or "
            "digit and hold only letters, digits and . _ = , + @ - (no '/', '\\', '..', spaces "
            "or absolute paths), so that it stays inside the output folder. Fix: rename it, "
            "e.g. 'vgg_deep-bn'."
        )
    return name


def child_path(parent: Path, name: str, what: str = "name") -> Path:
    """`parent / name` for a `safe_name`, checked to resolve inside `parent` (links included)."""
    path = Path(parent) / safe_name(name, what)
    resolved, root = path.resolve(), Path(parent).resolve()
    if resolved.parent != root:
        raise InputError(
            f"{what} {name!r} resolves to '{resolved}', outside '{root}' (a symbolic link in "
            f"the way?). Fix: remove the link '{path}' or choose another output folder."
        )
    return path


def prepare_output_dir(path: Path, what: str = "--out") -> Path:
    """Create the directory `path` (and its parents) for output; any OSError becomes an
    InputError naming the path and the fix, the one place output creation is checked.

    A read-only filesystem, `/proc` or `/sys`, a path under a regular file or a full disk would
    otherwise surface as a traceback from deep inside the first write.
    """
    path = Path(path)
    try:
        os.fspath(path.absolute()).encode("utf-8")
    except UnicodeEncodeError:  # pyarrow, JSON records and reports all need text paths
        raise InputError(f"{what} {display_path(path.absolute())} is not valid UTF-8 (bytes "
                         "shown as \\xNN); gradprobe's records name their paths in UTF-8. "
                         "Fix: choose a folder whose name is UTF-8 text.") from None
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a directory. Fix: choose a directory "
                         "path (a new one is created).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".gradprobe-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        full = no_space_error(error, path / ".gradprobe-write-test")
        if full is not None:  # a full disk is not bad input: exit 1, with the space free
            raise full from None
        reason = error.strerror or type(error).__name__
        raise InputError(f"{what} {path} cannot be written ({reason}). Fix: choose a directory "
                         "on a writable filesystem (not under /proc, /sys or a file).") from None
    return path


def first_missing_ancestor(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (None if `path` exists): what
    `mkdir(parents=True)` would create, hence what to remove to leave no trace."""
    path = Path(path).absolute()
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def display_path(path: str | os.PathLike[str]) -> str:
    """`path` as printable text: bytes that are not UTF-8 (surrogate-escaped by the OS layer)
    shown as `\\xff` instead of raising UnicodeEncodeError in a message, a record or a key."""
    text = os.fspath(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
