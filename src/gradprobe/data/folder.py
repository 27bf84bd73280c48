"""ImageFolder trees (one sub-folder per class), decoded once and cached.

Layout and class order follow torchvision's `ImageFolder`: classes are the sub-folders of the
root sorted by name, and files are found recursively inside each. Unlike torchvision, hidden
entries (names starting with ".", e.g. `.ipynb_checkpoints`, which torchvision turns into a
class and so shifts every label, or `.DS_Store`) and files at the root are ignored, and every
other file is tried: those that do not decode (empty, truncated, corrupt, not an image) are
skipped with one `SkippedFilesWarning` that gives the count and the first few paths.

Decoded uint8 images are cached on disk, keyed by a hash of the relative paths, sizes and
modification times of the files plus the image size, so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradprobe.data import decode
from gradprobe.data.cache import load_or_none, resolve_cache_dir, save_atomic
from gradprobe.errors import InputError
from gradprobe.util.paths import display_path
from gradprobe.util.walk import is_utf8, walk_files

CACHE_FORMAT = 1  # bump when decoding changes, so old cache files are not reused
_SHOWN_PATHS = 5  # how many skipped files the warning names


class SkippedFilesWarning(UserWarning):
    """Some files of an ImageFolder tree were not readable images and were left out."""


@dataclass(frozen=True)
class FolderImages:
    """All readable images of a tree, in scan order, with their provenance."""

    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    paths: list[str]  # relative posix paths of the images, index-aligned with `labels`
    skipped: list[tuple[str, str]]  # (relative path, reason) of files that did not decode
    cache_file: Path
    cache_hit: bool


def _visible(name: str) -> bool:
    return not name.startswith(".")


def check_root(root: Path) -> None:
    """Raise `InputError` unless `root` is an existing directory."""
    if not root.exists():
        raise InputError(
            f"dataset path '{root}' does not exist. Fix: pass an existing ImageFolder directory "
            "(one sub-folder of images per class), or a built-in dataset: synthetic, "
            "fashion-mnist, cifar10 (see `gradprobe datasets`)."
        )
    if not root.is_dir():
        raise InputError(
            f"dataset path '{root}' is a file, not a directory. Fix: pass the folder that holds "
            "one sub-folder of images per class (an ImageFolder tree), e.g. data/ with "
            "data/dogs/*.jpg and data/food/*.jpg."
        )


class RepeatedPathsWarning(UserWarning):
    """Links in an ImageFolder tree led to folders or files already seen; they were skipped."""


class SetAsidePathsWarning(UserWarning):
    """Entries of an ImageFolder tree that cannot be read safely were left out unopened: names
    that are not UTF-8, named pipes and other non-files, folders nested too deep."""


def list_classes(root: Path) -> list[str]:
    """The class folders of `root`, sorted: visible sub-folders with UTF-8 names (a class name
    goes into records and cache keys; others are named in a `SetAsidePathsWarning`)."""
    try:
        folders = [e.name for e in os.scandir(root) if e.is_dir() and _visible(e.name)]
    except OSError as error:
        raise InputError(f"dataset path '{display_path(root)}' cannot be listed "
                         f"({error.strerror}). Fix: check its permissions.") from None
    unreadable = [name for name in folders if not is_utf8(name)]
    if unreadable:
        _warn_set_aside(root, [(root / name, "its name is not valid UTF-8")
                               for name in sorted(unreadable)])
    return sorted(name for name in folders if is_utf8(name))


def _warn_set_aside(root: Path, set_aside: list[tuple[Path, str]]) -> None:
    shown = "; ".join(f"{display_path(path.relative_to(root))} ({reason})"
                      for path, reason in set_aside[:_SHOWN_PATHS])
    more = f"; and {len(set_aside) - _SHOWN_PATHS} more" if len(set_aside) > _SHOWN_PATHS else ""
    warnings.warn(
        f"left out {len(set_aside)} entr{'y' if len(set_aside) == 1 else 'ies'} under "
        f"'{display_path(root)}' without opening them: {shown}{more}. Fix: rename them to UTF-8 "
        "names, replace pipes and devices by image files, or flatten the folders, or remove "
        "them to silence this warning.",
        SetAsidePathsWarning,
        stacklevel=5,  # the caller of load_dataset
    )


def check_classes(root: Path) -> list[str]:
    """`list_classes(root)`, refused with an `InputError` unless there are at least two."""
    classes = list_classes(root)
    if not classes:
        raise InputError(
            f"'{display_path(root)}' has no class sub-folders (hidden folders such as "
            ".ipynb_checkpoints and files at its top level are ignored). Fix: put each class's "
            f"images in its own sub-folder, e.g. {display_path(root / 'dogs' / '1.jpg')} and "
            f"{display_path(root / 'food' / '2.jpg')}."
        )
    if len(classes) < 2:
        raise InputError(
            f"'{display_path(root)}' has one class sub-folder ({classes[0]!r}); a classifier "
            "needs at least two, or every prediction is trivially right and every gradient is "
            "zero. Fix: add a sub-folder of images for each other class."
        )
    return classes


def scan_tree(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class names and (relative path, label) of every visible file under them.

    Symbolic links are followed, but each real folder and file is taken once (a link loop would
    otherwise hang the walk, and a link to `.` would copy images into several splits).
    """
    classes = check_classes(root)
    class_roots = [os.path.realpath(root / name) for name in classes]
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    files: list[tuple[str, int]] = []
    repeated: list[Path] = []
    set_aside: list[tuple[Path, str]] = []
    for label, name in enumerate(classes):
        fenced = tuple(other for index, other in enumerate(class_roots) if index != label)
        walk = walk_files(root / name, _visible, seen_dirs, seen_files, fenced)
        files.extend((path.relative_to(root).as_posix(), label) for path in walk.files)
        repeated.extend(walk.repeated_dirs + walk.repeated_files)
        set_aside.extend(walk.set_aside)
    if set_aside:
        _warn_set_aside(root, set_aside)
    if repeated:
        shown = ", ".join(path.relative_to(root).as_posix() for path in repeated[:_SHOWN_PATHS])
        more = f" and {len(repeated) - _SHOWN_PATHS} more" if len(repeated) > _SHOWN_PATHS else ""
        warnings.warn(
            f"{len(repeated)} path(s) under '{root}' are links to folders or files already taken "
            f"(a link loop, or the same images under two names): {shown}{more}. Each real image "
            "is used once; remove the links to silence this warning.",
            RepeatedPathsWarning,
            stacklevel=4,  # the caller of load_dataset
        )
    return classes, files


def content_key(root: Path, classes: list[str], files: list[tuple[str, int]],
                image_size: int) -> str:
    """sha256 of what the decoded tensors depend on: the files' paths, sizes, mtimes, the size."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "image_size": image_size, "classes": classes}
    digest.update(json.dumps(header).encode("utf-8"))
    for relative, label in files:
        try:
            stat = (root / relative).stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # a dangling link: it will be skipped, but keyed all the same
            size, mtime = -1, -1
        digest.update(f"{relative}\0{label}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _decode_all(root: Path, files: list[tuple[str, int]], image_size: int) -> dict[str, Any]:
    """Decode every file (threads: PIL releases the GIL while decoding and resizing)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # `decode.decode_image_file` is looked up per call, so tests can count decodes.
        results = list(pool.map(
            lambda item: decode.decode_image_file(root / item[0], image_size), files
        ))
    images: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    skipped: list[list[str]] = []
    for (relative, label), (tensor, reason) in zip(files, results, strict=True):
        if tensor is None:
            skipped.append([relative, reason])
        else:
            images.append(tensor)
            labels.append(label)
            paths.append(relative)
    stacked = (torch.stack(images) if images
               else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8))
    return {"format": CACHE_FORMAT, "images": stacked,
            "labels": torch.tensor(labels, dtype=torch.int64), "paths": paths, "skipped": skipped}


def _is_valid(payload: dict[str, Any], image_size: int) -> bool:
    """Whether a cache payload has the expected structure (a stale or foreign file does not)."""
    if payload.get("format") != CACHE_FORMAT:
        return False
    images, labels = payload.get("images"), payload.get("labels")
    paths, skipped = payload.get("paths"), payload.get("skipped")
    return (
        isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)
        and isinstance(paths, list) and isinstance(skipped, list)
        and images.dtype == torch.uint8 and images.dim() == 4
        and tuple(images.shape[1:]) == (3, image_size, image_size)
        and labels.dtype == torch.int64 and tuple(labels.shape) == (images.shape[0],)
        and len(paths) == images.shape[0]
    )


def _warn_skipped(root: Path, skipped: list[tuple[str, str]]) -> None:
    shown = "; ".join(f"{path} ({reason})" for path, reason in skipped[:_SHOWN_PATHS])
    more = f"; and {len(skipped) - _SHOWN_PATHS} more" if len(skipped) > _SHOWN_PATHS else ""
    warnings.warn(
        f"skipped {len(skipped)} file(s) under '{root}' that are not readable images (empty, "
        f"truncated, corrupt or not an image): {shown}{more}. They are left out of the dataset; "
        "remove or replace them to silence this warning.",
        SkippedFilesWarning,
        stacklevel=5,  # the caller of load_dataset
    )


def load_folder(root: Path, image_size: int, cache_dir: str | Path | None = None) -> FolderImages:
    """Decode (or read from the cache) every image of an ImageFolder tree at `image_size`."""
    check_root(root)
    classes, files = scan_tree(root)
    key = content_key(root, classes, files, image_size)
    cache_file = resolve_cache_dir(cache_dir) / f"folder-{key[:40]}.pt"
    cached = load_or_none(cache_file)
    cache_hit = cached is not None and _is_valid(cached, image_size)
    if cached is not None and cache_hit:
        payload = cached
    else:
        payload = _decode_all(root, files, image_size)
        try:
            save_atomic(payload, cache_file)
        except OSError as error:
            warnings.warn(
                f"could not write the decoded-image cache '{cache_file}' ({error}); the next run "
                "will decode again. Fix: point $GRADPROBE_CACHE (or cache_dir) at a writable "
                "folder.",
                stacklevel=4,  # the caller of load_dataset
            )
    skipped = [(str(path), str(reason)) for path, reason in payload["skipped"]]
    if skipped:
        _warn_skipped(root, skipped)

    labels: torch.Tensor = payload["labels"]
    per_class = torch.bincount(labels, minlength=len(classes))
    empty = [classes[index] for index in range(len(classes)) if per_class[index] == 0]
    if empty:
        raise InputError(
            f"class folder(s) {', '.join(repr(name) for name in empty)} under '{root}' contain no "
            f"readable images ({len(skipped)} file(s) in the tree could not be decoded). Fix: "
            "add images to those folders or remove them."
        )
    return FolderImages(
        images=payload["images"], labels=labels, classes=classes, paths=list(payload["paths"]),
        skipped=skipped, cache_file=cache_file, cache_hit=cache_hit,
    )
