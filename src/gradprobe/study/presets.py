"""Presets: sizes merged under a study spec (the spec's own values win).

`full` is exactly the assignment's setup (repeated over three seeds); `quick` uses the digits set,
a smaller image size, width and epoch count, and a warm-up, so the built-in study with its
replicates finishes in minutes on a 2-core CPU; `smoke` is for tests (seconds, one seed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradprobe.errors import InputError

# What `gradprobe study` runs and where it writes when not told.
BUILTIN_STUDIES = ("vanishing-gradients", "diagnose")  # study/builtin/<name>.yaml
DEFAULT_STUDY = "vanishing-gradients"
DEFAULT_STUDY_DIR = Path("runs/study")

# Sections: data, train, model (merged under the spec's own) and study (`seeds`: the replicates
# every run is trained with unless the spec declares its own `seeds`).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        # one seed: tests stay fast; a two-seed spec tests the replicates
        "data": {"image_size": 32, "images_per_class": 24},
        "train": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 3},
        "model": {"width": 0.125},
    },
    "quick": {
        # Chosen by measurement (calibration runs, 3 seeds, 2026-12-01): on the embedded real
        # `digits` set, vgg16 and resnet18 reach >= 90%, vgg_deep with batch norm >= 80%, and
        # vgg_deep with PyTorch's default init stays at chance with vanishing gradients; on the
        # synthetic shapes vgg_deep with batch norm cannot fit 630 images at all. A linear
        # learning-rate warm-up over epoch 1 takes vgg16 off its plateau (seed 0: 46% -> 92%);
        # momentum 0.9 because ~280 plain-SGD steps leave every model at chance. 7 epochs keep
        # the 3-seed study within 8 minutes on 2 cores (727 CPU s measured, 2 worker processes:
        # `default_jobs`). The report's setup table states all of it. `max_images` keeps
        # Fashion-MNIST / CIFAR-10 at a CPU size (digits has 1,797).
        "data": {"dataset": "digits", "image_size": 32, "images_per_class": 300,
                 "max_images": 3000},
        "train": {"epochs": 7, "batch_size": 32, "lr": 0.01, "momentum": 0.9,
                  "warmup_epochs": 1},
        "model": {"width": 0.125},
        "study": {"seeds": [0, 1, 2]},
    },
    "full": {
        # The assignment: 64x64, full width, 15 epochs, SGD 0.01, StepLR(5, 0.5), batch 32.
        "data": {"image_size": 64, "images_per_class": 1000},
        "train": {"epochs": 15, "batch_size": 32, "lr": 0.01, "optimizer": "sgd",
                  "scheduler": "step", "step_size": 5, "gamma": 0.5},
        "model": {"width": 1.0},
        # replicates repeat that setup with three seeds; each run is still exactly it
        "study": {"seeds": [0, 1, 2]},
    },
}


def default_jobs(preset: str) -> int:
    """Worker processes when the caller chooses none: one per CPU core for `quick` (each run
    computes on 1 thread, `TrainConfig.threads`), else 1.

    Measured for these small models (issue 12, item 7): 2 worker processes x 1 thread trained
    4 runs in 70 s where 1 process x 2 threads needed 160 s for the first run alone; intra-op
    threads gain little on 8-64 channels, separate processes ~2x. `smoke` stays in-process (tests
    patch it), and `full` targets one GPU, which one process uses best.
    """
    return max(os.cpu_count() or 1, 1) if preset == "quick" else 1


def get_preset(name: str) -> dict[str, dict[str, Any]]:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def default_preset() -> str:
    """`full` on a CUDA machine, else `quick` (the preset when none is chosen)."""
    import torch

    return "full" if torch.cuda.is_available() else "quick"
