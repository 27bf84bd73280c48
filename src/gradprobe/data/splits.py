"""Split containers and seeded, stratified train/val/test partitions.

A partition depends only on the labels, the seed and the fractions, so every model of a study
sees the same images in the same split (the assignment's fixed-seed 70/15/15 split). The split
indices are hashed into `Splits.fingerprint`, which the trainer writes into the run's config.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradprobe.data.resize import resize_uint8
from gradprobe.data.seeds import derive_seed
from gradprobe.errors import InputError

# The assignment normalised with ImageNet's statistics (torchvision's pretrained-model recipe).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


@dataclass(frozen=True)
class TensorSplit:
    """One split held in memory: uint8 images (N, 3, H, W) and int64 labels (N,).

    Grayscale sources are stored as a stride-0 view over one channel (`Tensor.expand`), which
    reads as 3 identical channels and takes a third of the memory; do not write into `images`.
    """

    images: torch.Tensor  # uint8 (N, 3, H, W), already resized, 3 channels
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Splits:
    """Train/val/test splits ready for `BatchLoader`, with what is needed to reproduce them."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    classes: list[str]  # class names; index = label
    mean: tuple[float, float, float]  # per-channel normalisation applied at batch time
    std: tuple[float, float, float]
    fingerprint: str  # sha256 of dataset identity, image size, seed, fractions and split indices
    info: dict[str, Any] = field(default_factory=dict)  # json-serialisable provenance

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` items into parts proportional to `weights`, every part at least one.

    Largest-remainder (Hamilton) rounding, ties to the earlier part, so counts sum exactly to
    `total`; a part rounded to zero then takes one item from the largest part. Needs
    `total >= len(weights)`.
    """
    if total < len(weights):
        raise ValueError(f"cannot give {len(weights)} parts at least one of {total} items")
    weight_sum = float(sum(weights))
    # round(..., 9): 0.7 * 10 must floor to 7, not to 6 through float error
    exact = [round(total * w / weight_sum, 9) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        while counts[i] == 0:
            largest = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[largest] -= 1
            counts[i] += 1
    return counts


def stratified_partition(
    labels: torch.Tensor,
    fractions: Sequence[float],
    seed: int,
    classes: Sequence[str],
    part_names: Sequence[str] = SPLIT_NAMES,
) -> list[np.ndarray]:
    """Index arrays, one per fraction, holding each class in (about) those proportions.

    Each class is shuffled with its own seeded stream and cut by `allocate`, so every class has
    at least one image in every part. The arrays are sorted (the loader shuffles per epoch).
    """
    label_array = labels.numpy()
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for class_index, class_name in enumerate(classes):
        members = np.flatnonzero(label_array == class_index)
        if len(members) < len(fractions):
            raise InputError(
                f"class '{class_name}' has {len(members)} image(s), but a "
                f"{'/'.join(part_names)} split needs at least one image of every class in each "
                f"part ({len(fractions)} in all). Fix: add images to that class, remove the "
                "class, or use a different split."
            )
        rng = np.random.default_rng(derive_seed("split", seed, class_index))
        shuffled = rng.permutation(members)
        start = 0
        for part, count in zip(parts, allocate(len(members), fractions), strict=True):
            part.append(shuffled[start : start + count])
            start += count
    return [np.sort(np.concatenate(part)).astype(np.int64) for part in parts]


def stratified_subsample(
    indices: np.ndarray, labels: torch.Tensor, limit: int, seed: int, classes: Sequence[str],
    option: str = "max_train_images",
) -> np.ndarray:
    """At most `limit` of `indices`, keeping class proportions (the cap named by `option`)."""
    if limit >= len(indices):
        return indices
    label_array = labels.numpy()[indices]
    present = [c for c in range(len(classes)) if np.any(label_array == c)]
    if limit < len(present):
        raise InputError(
            f"{option}={limit} is smaller than the number of classes ({len(present)}): "
            "a stratified split needs at least one image per class. Fix: raise "
            f"{option} or leave it unset."
        )
    sizes = [int(np.sum(label_array == c)) for c in present]
    kept: list[np.ndarray] = []
    for class_index, count in zip(present, allocate(limit, sizes), strict=True):
        members = indices[label_array == class_index]
        rng = np.random.default_rng(derive_seed("subsample", seed, class_index))
        kept.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(kept)).astype(np.int64)


def fingerprint(
    identity: dict[str, Any],
    image_size: int,
    seed: int,
    fractions: Sequence[float],
    indices: dict[str, np.ndarray],
) -> str:
    """sha256 over what defines the split; equal inputs give equal fingerprints across runs."""
    digest = hashlib.sha256()
    header = {"identity": identity, "image_size": image_size, "seed": seed,
              "split": [float(f) for f in fractions]}
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for name in SPLIT_NAMES:
        digest.update(name.encode("utf-8"))
        digest.update(np.ascontiguousarray(indices[name], dtype="<i8").tobytes())
    return digest.hexdigest()


def take(
    images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray, image_size: int | None = None
) -> TensorSplit:
    """The images and labels at `indices`, resized to `image_size` if given (only the selected
    images are resized); one-channel images become a 3-channel view."""
    index = torch.from_numpy(indices)
    selected = images.index_select(0, index)
    if image_size is not None:
        selected = resize_uint8(selected, image_size)
    if selected.shape[1] == 1:
        selected = selected.expand(-1, 3, -1, -1)  # grayscale -> RGB without copying
    return TensorSplit(images=selected, labels=labels.index_select(0, index))


def assemble(
    parts: dict[str, TensorSplit],
    indices: dict[str, np.ndarray],
    *,
    classes: list[str],
    identity: dict[str, Any],
    image_size: int,
    seed: int,
    fractions: Sequence[float],
    info: dict[str, Any],
) -> Splits:
    """Build `Splits`, its fingerprint and the json-serialisable `info` record."""
    digest = fingerprint(identity, image_size, seed, fractions, indices)
    record: dict[str, Any] = {
        **info,
        "image_size": image_size,
        "seed": seed,
        "split": [float(f) for f in fractions],
        "counts": {name: len(parts[name]) for name in SPLIT_NAMES},
        "class_counts": {
            name: torch.bincount(parts[name].labels, minlength=len(classes)).tolist()
            for name in SPLIT_NAMES
        },
        "class_to_idx": {name: index for index, name in enumerate(classes)},
        "fingerprint": digest,
    }
    record.setdefault("skipped_files", 0)
    return Splits(
        train=parts["train"], val=parts["val"], test=parts["test"], classes=list(classes),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, fingerprint=digest, info=record,
    )
