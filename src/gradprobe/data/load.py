"""Dataset specs -> train/val/test `Splits`: the one entry point of the data layer.

DATASET is `synthetic` (the embedded default), `digits` (scikit-learn's shipped handwritten
digits), `fashion-mnist`, `cifar10`, or a path to an ImageFolder directory. A name wins over a
same-named folder in the working directory; write `./synthetic` to mean the folder.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprobe.config import DataConfig
from gradprobe.data.cache import resolve_cache_dir
from gradprobe.data.digits import DIGITS_CLASSES, load_digits_pool
from gradprobe.data.folder import load_folder
from gradprobe.data.splits import (
    Splits,
    allocate,
    assemble,
    stratified_partition,
    stratified_subsample,
    take,
)
from gradprobe.data.synthetic import GENERATOR_VERSION, SHAPES, generate_synthetic
from gradprobe.data.torchvision_sets import OfficialSets, load_cifar10, load_fashion_mnist
from gradprobe.errors import InputError

_KINDS: dict[str, str] = {
    "synthetic": "embedded default: procedurally drawn shapes (classes differ by shape, not "
                 "colour), any size, 2-10 classes, no files",
    "fashion-mnist": "Fashion-MNIST via torchvision (Debian: apt-get install "
                     "dataset-fashion-mnist, or --data-root / $GRADPROBE_DATA / --download)",
    "cifar10": "CIFAR-10 via torchvision (cifar-10-batches-py under --data-root / "
               "$GRADPROBE_DATA, or --download)",
    "digits": "scikit-learn's 1,797 handwritten digits (8x8, 10 classes, ~180 per class), "
              "shipped in the scikit-learn wheel: no download",
}
_PATH_KIND = ("PATH", "an ImageFolder directory: one sub-folder of images per class, "
                      "decoded once and cached")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10"}


def list_datasets() -> list[tuple[str, str]]:
    """(kind, one-line description) of every dataset kind, for `gradprobe datasets`."""
    return [*_KINDS.items(), _PATH_KIND]


def _looks_like_path(spec: str) -> bool:
    separators = [os.sep, *([os.altsep] if os.altsep else []), "/"]
    return any(sep in spec for sep in separators) or spec.startswith((".", "~"))


def _check_options(image_size: int, split: tuple[float, ...],
                   max_train_images: int | None) -> None:
    if image_size < 1:
        raise InputError(f"image_size must be a positive number of pixels, got {image_size}. "
                         "Fix: pass e.g. --image-size 32 (quick) or 64 (the assignment).")
    if (len(split) != 3 or any(not math.isfinite(f) or f <= 0 for f in split)
            or abs(sum(split) - 1.0) > 1e-6):
        raise InputError(f"split must be three positive train/val/test fractions that sum to "
                         f"1, got {tuple(split)}. Fix: pass e.g. 0.7 0.15 0.15.")
    if max_train_images is not None and max_train_images < 1:
        raise InputError(f"max_train_images must be at least 1, got {max_train_images}. "
                         "Fix: pass a positive cap or leave it unset.")


def _split_pool(
    images: torch.Tensor, labels: torch.Tensor, classes: list[str], *, identity: dict[str, Any],
    info: dict[str, Any], image_size: int, seed: int, split: tuple[float, float, float],
    max_train_images: int | None, max_images: int | None, resize: bool = False,
) -> Splits:
    """Stratified train/val/test partition of one pool of images (synthetic, digits, folder).

    `resize`: the pool is at its native size, so each part is resized to `image_size` (and
    one channel becomes three) as it is taken.
    """
    if max_images is not None and max_images < len(labels):
        kept = stratified_subsample(np.arange(len(labels), dtype=np.int64), labels, max_images,
                                    seed, classes, option="max_images")
        images, labels = images[kept], labels[kept]
        identity = {**identity, "max_images": max_images}  # which images: part of the data
    train, val, test = stratified_partition(labels, split, seed, classes)
    if max_train_images is not None:
        train = stratified_subsample(train, labels, max_train_images, seed, classes)
    indices = {"train": train, "val": val, "test": test}
    size = image_size if resize else None
    parts = {name: take(images, labels, index, size) for name, index in indices.items()}
    return assemble(parts, indices, classes=classes, identity=identity, image_size=image_size,
                    seed=seed, fractions=split, info=info)


def _split_official(
    official: OfficialSets, kind: str, *, image_size: int, seed: int,
    split: tuple[float, float, float], max_train_images: int | None, max_images: int | None,
) -> Splits:
    """Official test set as test; the official train set split into train/val.

    The val share of the official train set is split[1] / (split[0] + split[1]) (0.15 / 0.85 of
    it by default); split[2] is not used, since the test set is fixed by the dataset, except
    under `max_images`, which gives each part its share of the cap (test: split[2]).
    """
    train_fraction, val_fraction, _test_fraction = split
    classes = official.classes
    train, val = stratified_partition(official.train_labels, (train_fraction, val_fraction), seed,
                                      classes, part_names=("train", "val"))
    test = np.arange(len(official.test_labels), dtype=np.int64)
    if max_images is not None:
        shares = official_shares(kind, max_images, split, len(classes))
        train, val = (stratified_subsample(part, official.train_labels, share, seed, classes,
                                           option="max_images")
                      for part, share in zip((train, val), shares[:2], strict=True))
        test = stratified_subsample(test, official.test_labels, shares[2], seed, classes,
                                    option="max_images")
    if max_train_images is not None:
        train = stratified_subsample(train, official.train_labels, max_train_images, seed, classes)
    indices = {"train": train, "val": val, "test": test}
    parts = {
        "train": take(official.train_images, official.train_labels, train, image_size),
        "val": take(official.train_images, official.train_labels, val, image_size),
        "test": take(official.test_images, official.test_labels, test, image_size),
    }
    info = {
        "kind": kind, "source": official.source,
        "official_counts": {"train": len(official.train_labels),
                            "test": len(official.test_labels)},
        "val_share_of_official_train": val_fraction / (train_fraction + val_fraction),
    }
    identity = official.identity(kind)
    if max_images is not None:
        identity = {**identity, "max_images": max_images}
    return assemble(parts, indices, classes=classes, identity=identity,
                    image_size=image_size, seed=seed, fractions=split, info=info)


def official_shares(kind: str, max_images: int, split: tuple[float, float, float],
                    classes: int) -> list[int]:
    """Images of each official part under the cap `max_images`; `InputError` when one part
    would hold fewer images than there are classes (every class needs one in every part)."""
    shares = allocate(max_images, list(split))
    if min(shares) < classes:
        needed = math.ceil(classes / min(split))
        raise InputError(
            f"max_images={max_images} leaves a split of {kind} with {min(shares)} images, "
            f"fewer than its {classes} classes. Fix: raise max_images to at least "
            f"{needed}, or leave it unset."
        )
    return shares


def dataset_kind(spec: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(kind, path): a built-in kind (path None), or "folder" and the ImageFolder path; an
    `InputError` for a name that is neither."""
    name = os.fspath(spec).strip()
    kind = _ALIASES.get(name.lower(), name.lower())
    if kind in _KINDS:
        return kind, None
    path = Path(name).expanduser()
    if name and (_looks_like_path(name) or path.exists()):
        return "folder", path
    known = ", ".join(_KINDS)
    raise InputError(
        f"unknown dataset '{spec}' (and no directory of that name exists). Fix: use one of "
        f"{known}, or a path to an ImageFolder directory (one sub-folder of images per class), "
        "e.g. ./data/pets; `gradprobe datasets` lists them."
    )


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    image_size: int = 64,
    seed: int = 0,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    images_per_class: int = 600,
    num_classes: int = 3,
    max_train_images: int | None = None,
    max_images: int | None = None,
    data_root: str | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Splits:
    """Load DATASET as seeded, stratified train/val/test splits of uint8 images at `image_size`.

    `max_images` caps the whole dataset (every split, class proportions kept: Fashion-MNIST's
    70,000 images would take hours per run on a CPU); `max_train_images` caps the train split.
    `images_per_class` and `num_classes` apply to `synthetic` only; `data_root` and `download`
    to the torchvision sets; `cache_dir` (default $GRADPROBE_CACHE, else
    ~/.cache/gradprobe/images) holds decoded ImageFolder trees and staged Fashion-MNIST files.
    Bad input raises `InputError` naming the problem and the fix.
    """
    _check_options(image_size, split, max_train_images)
    if max_images is not None and max_images < 1:
        raise InputError(f"max_images must be at least 1, got {max_images}. Fix: pass a "
                         "positive cap or leave it unset.")
    fractions = (float(split[0]), float(split[1]), float(split[2]))
    kind, path = dataset_kind(spec)
    common: dict[str, Any] = {"image_size": image_size, "seed": seed, "split": fractions,
                              "max_train_images": max_train_images, "max_images": max_images}
    if kind == "synthetic":
        return _load_synthetic(num_classes=num_classes, images_per_class=images_per_class,
                               **common)
    if kind == "digits":
        return _load_digits(**common)
    if kind == "fashion-mnist":
        official = load_fashion_mnist(data_root, download, resolve_cache_dir(cache_dir))
        return _split_official(official, kind, **common)
    if kind == "cifar10":
        return _split_official(load_cifar10(data_root, download), kind, **common)
    assert path is not None  # dataset_kind: "folder" comes with its path
    return _load_folder(path, cache_dir=cache_dir, **common)


def _load_synthetic(*, num_classes: int, images_per_class: int, **common: Any) -> Splits:
    if not 2 <= num_classes <= len(SHAPES):
        raise InputError(f"synthetic has 2 to {len(SHAPES)} classes, got num_classes="
                         f"{num_classes}. Fix: pass a number of classes in that range.")
    if images_per_class < 3:
        raise InputError(f"synthetic needs at least 3 images per class (one per split), got "
                         f"images_per_class={images_per_class}. Fix: raise it (default 600).")
    images, labels, classes = generate_synthetic(num_classes, images_per_class,
                                                 common["image_size"], common["seed"])
    identity = {"kind": "synthetic", "generator_version": GENERATOR_VERSION,
                "num_classes": num_classes, "images_per_class": images_per_class}
    info = {"kind": "synthetic", "source": "embedded (procedural shapes)",
            "num_classes": num_classes, "images_per_class": images_per_class}
    return _split_pool(images, labels, classes, identity=identity, info=info, **common)


def _load_digits(**common: Any) -> Splits:
    images, labels, digest = load_digits_pool()
    identity = {"kind": "digits", "sha256": digest}
    info = {"kind": "digits", "source": "scikit-learn load_digits (shipped in the wheel)",
            "num_classes": len(DIGITS_CLASSES), "original_size": 8}
    return _split_pool(images, labels, list(DIGITS_CLASSES), identity=identity, info=info,
                       resize=True, **common)


def _load_folder(path: Path, *, cache_dir: str | Path | None, **common: Any) -> Splits:
    folder = load_folder(path, common["image_size"], cache_dir)
    identity = {"kind": "folder", "files": _files_digest(folder.paths, folder.labels)}
    info = {"kind": "folder", "source": str(path.resolve()), "cache_file": str(folder.cache_file),
            "cache_hit": folder.cache_hit, "skipped_files": len(folder.skipped),
            "skipped_examples": [p for p, _ in folder.skipped[:5]]}
    return _split_pool(folder.images, folder.labels, folder.classes, identity=identity,
                       info=info, **common)


def _files_digest(paths: list[str], labels: torch.Tensor) -> str:
    """Names the tree's readable images (relative path + label), independent of where it lives
    and of modification times, so a copied dataset keeps its split fingerprint."""
    digest = hashlib.sha256()
    for path, label in zip(paths, labels.tolist(), strict=True):
        digest.update(f"{path}\0{label}\n".encode())
    return digest.hexdigest()


def load_dataset_from_config(config: DataConfig, *, cache_dir: str | Path | None = None) -> Splits:
    """`load_dataset` with the options of a `DataConfig` (augmentation is the loader's job)."""
    return load_dataset(
        config.dataset, image_size=config.image_size, seed=config.seed, split=config.split,
        images_per_class=config.images_per_class, num_classes=config.num_classes,
        max_train_images=config.max_train_images, max_images=config.max_images,
        data_root=config.data_root,
        download=config.download, cache_dir=cache_dir,
    )
