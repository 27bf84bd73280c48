"""Benchmark of the data layer: generation, decoding vs cache, and batches vs training compute.

Run: `python benchmarks/bench_data.py` (about a minute on 2 CPU cores). `run()` returns the
numbers as a dict so a benchmark suite can import and collect them. Timings are wall-clock
seconds, best of a few repeats (the minimum is the least disturbed by other processes).

What it shows (the issue's acceptance numbers):
- the embedded synthetic set: 10,000 images at 32x32 generated in under 2 s;
- an ImageFolder of ~2,000 small images: first load (decode) vs second load (cache);
- one epoch of `BatchLoader` batches vs the training compute of a small CNN on the same
  batches at the quick preset's size (32x32, batch 32): data must stay under 5% of the epoch.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gradprobe.data import BatchLoader, load_dataset
from gradprobe.data.synthetic import generate_synthetic
from gradprobe.data.torchvision_sets import DEBIAN_FASHION_MNIST


def _best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_synthetic(count: int = 10_000, image_size: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Seconds to generate `count` synthetic images (10 classes) at `image_size`."""
    per_class = count // 10
    seconds = _best_of(repeats, lambda: generate_synthetic(10, per_class, image_size, seed=0))
    return {"images": count, "image_size": image_size, "seconds": seconds,
            "images_per_second": count / seconds}


def _write_tree(root: Path, count: int, source_size: int) -> None:
    """`count` small JPEG and PNG photos-like images in 4 classes."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"class{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth random images (upsampled noise) compress like photos, not like pure noise
        coarse = rng.integers(0, 256, (source_size // 8, source_size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((source_size, source_size), Image.Resampling.BICUBIC)
        image.save(folder / f"{index}.{'jpg' if index % 2 else 'png'}")


def bench_folder(count: int = 2000, source_size: int = 96, image_size: int = 32) -> dict[str, Any]:
    """Seconds for the first load of a tree (decode every file) and the second (cache hit)."""
    with tempfile.TemporaryDirectory(prefix="gradprobe-bench-") as scratch:
        root, cache = Path(scratch) / "tree", Path(scratch) / "cache"
        _write_tree(root, count, source_size)
        start = time.perf_counter()
        first = load_dataset(str(root), image_size=image_size, cache_dir=cache)
        first_seconds = time.perf_counter() - start
        second_seconds = _best_of(3, lambda: load_dataset(str(root), image_size=image_size,
                                                          cache_dir=cache))
        hit = load_dataset(str(root), image_size=image_size, cache_dir=cache).info["cache_hit"]
    return {"images": count, "source_size": source_size, "image_size": image_size,
            "first_load_seconds": first_seconds, "cached_load_seconds": second_seconds,
            "speedup": first_seconds / second_seconds, "cache_hit": hit,
            "train_images": len(first.train)}


def _small_cnn(num_classes: int) -> nn.Module:
    """A small CNN, cheaper than any model of the zoo: a conservative denominator."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, num_classes),
    )


def bench_epoch(image_size: int = 32, batch_size: int = 32, augment: bool = False,
                repeats: int = 3) -> dict[str, Any]:
    """Seconds per epoch producing batches vs seconds of training steps on those batches."""
    splits = load_dataset("synthetic", image_size=image_size, images_per_class=600, seed=0)
    loader = BatchLoader(splits.train, batch_size=batch_size, shuffle=True, seed=0,
                         mean=splits.mean, std=splits.std, augment=augment)
    data_seconds = _best_of(repeats, lambda: sum(1 for _ in loader.epoch(0)))
    batches = list(loader.epoch(0))
    torch.manual_seed(0)
    model = _small_cnn(splits.num_classes)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_steps() -> None:
        for images, labels in batches:
            optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimiser.step()

    train_steps()  # warm-up: allocator and kernels
    compute_seconds = _best_of(repeats, train_steps)
    return {"image_size": image_size, "batch_size": batch_size, "augment": augment,
            "batches": len(loader), "data_seconds": data_seconds,
            "compute_seconds": compute_seconds,
            "data_fraction": data_seconds / (data_seconds + compute_seconds)}


def bench_fashion_mnist(image_size: int = 32) -> dict[str, Any] | None:
    """Seconds to load the full Fashion-MNIST from Debian's package (None if not installed)."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="gradprobe-bench-") as cache:
        start = time.perf_counter()
        load_dataset("fashion-mnist", image_size=image_size, cache_dir=cache)  # stages files
        first = time.perf_counter() - start
        again = _best_of(2, lambda: load_dataset("fashion-mnist", image_size=image_size,
                                                 cache_dir=cache))
    return {"image_size": image_size, "first_load_seconds": first, "staged_load_seconds": again}


def run() -> dict[str, Any]:
    """All data benchmarks, as a dict of plain numbers."""
    return {
        "torch_threads": torch.get_num_threads(),
        "synthetic": bench_synthetic(),
        "folder": bench_folder(),
        "epoch": bench_epoch(),
        "epoch_augment": bench_epoch(augment=True),
        "fashion_mnist": bench_fashion_mnist(),
    }


def main() -> None:
    results = run()
    synthetic, folder = results["synthetic"], results["folder"]
    rows = [
        ("synthetic 10k @32 generation", f"{synthetic['seconds']:.2f} s", "< 2 s"),
        (f"ImageFolder {folder['images']} images, first load (decode)",
         f"{folder['first_load_seconds']:.2f} s", ""),
        ("ImageFolder, second load (cache)", f"{folder['cached_load_seconds']:.3f} s",
         f"{folder['speedup']:.0f}x faster"),
    ]
    for key, label in (("epoch", "plain"), ("epoch_augment", "augmented")):
        epoch = results[key]
        rows.append((f"epoch of {epoch['batches']} batches ({label}): data / compute",
                     f"{epoch['data_seconds']:.3f} / {epoch['compute_seconds']:.2f} s",
                     f"data {100 * epoch['data_fraction']:.1f}% (< 5%)"))
    if results["fashion_mnist"] is not None:
        fashion = results["fashion_mnist"]
        rows.append(("Fashion-MNIST @32, first load (stage) / again",
                     f"{fashion['first_load_seconds']:.2f} / "
                     f"{fashion['staged_load_seconds']:.2f} s", ""))
    width = max(len(row[0]) for row in rows)
    print(f"gradprobe data benchmark (torch threads: {results['torch_threads']})")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")


if __name__ == "__main__":
    main()
