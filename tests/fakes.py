"""Fake run and study directories with known numbers, written through `gradprobe.record`.

The analysis and report tests build their inputs here, so the run-directory contract has one
home (the record module) in the tests too; a changed file name or column changes these fakes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from gradprobe import record
from gradprobe.record import EpochRow, RunState, RunSummary

Layer = tuple[str, str, int]  # (name, kind, depth)
NormOf = Callable[[int, str, int, int, str], float]  # (depth, kind, epoch, step, metric) -> value


def vgg_layers(convs: int, linears: int = 2) -> list[Layer]:
    """Conv layers at depths 0..convs-1 named like torchvision's VGG, then linear layers."""
    layers = [(f"features.{2 * i}", "conv", i) for i in range(convs)]
    return layers + [(f"classifier.{3 * j}", "linear", convs + j) for j in range(linears)]


def resnet_layers() -> list[Layer]:
    """ResNet-18's probe points: 17 convs, 3 projection shortcuts, 1 linear, in forward order."""
    names = ["conv1"]
    for stage in range(1, 5):
        for block in range(2):
            names += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
            if block == 0 and stage > 1:
                names.append(f"layer{stage}.0.downsample.0")
    layers = [(n, "shortcut" if "downsample" in n else "conv", d) for d, n in enumerate(names)]
    return [*layers, ("fc", "linear", len(names))]


def halving_towards_input(top: int) -> NormOf:
    """Norm 1 at depth `top`, halving at every layer on the way back to depth 0."""
    return lambda depth, kind, epoch, step, metric: 2.0 ** (depth - top)


def gradient_frame(
    layers: Sequence[Layer], norm_of: NormOf, epochs: int, steps_per_epoch: int,
    metrics: Sequence[str] = ("weight_grad_norm", "output_grad_norm"),
    last_step: int | None = None,
) -> pd.DataFrame:
    rows = []
    for epoch in range(1, epochs + 1):
        for local in range(steps_per_epoch):
            step = (epoch - 1) * steps_per_epoch + local
            if last_step is not None and step > last_step:
                break
            for name, kind, depth in layers:
                for metric in metrics:
                    rows.append((step, epoch, name, depth, kind, metric,
                                 norm_of(depth, kind, epoch, step, metric)))
    return pd.DataFrame(rows, columns=list(record.GRADIENT_COLUMNS))


def write_run(
    root: Path, name: str, *, layers: Sequence[Layer] | None = None,
    norm_of: NormOf | None = None, epochs: int = 3, steps_per_epoch: int = 4,
    val_acc: Sequence[float] | None = None, state: str = "completed",
    diverged_step: int | None = None, message: str = "",
    classes: Sequence[str] = ("circles", "squares", "stripes"),
    model: dict | None = None, model_info: dict | None = None,
    metrics: Sequence[str] = ("weight_grad_norm", "output_grad_norm"),
    files: Sequence[str] = ("config", "status", "metrics", "gradients", "summary"),
    seed: int = 0,
) -> Path:
    """Write one run directory. A diverged run's gradients stop at `diverged_step` (NaN there)
    and its last metrics row holds NaN losses, as the trainer writes them."""
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    layers = list(layers if layers is not None else vgg_layers(5))
    convs = [layer for layer in layers if layer[1] == "conv"]
    base = norm_of or halving_towards_input(max((d for _, _, d in convs), default=0))
    if diverged_step is not None:
        def norm_of(depth: int, kind: str, epoch: int, step: int, metric: str) -> float:
            return math.nan if step == diverged_step else base(depth, kind, epoch, step, metric)
    else:
        norm_of = base
    val_acc = list(val_acc if val_acc is not None else [0.5 + 0.1 * e for e in range(epochs)])
    model = {"name": "vgg_deep", "depth": None, "width": 0.25, "norm": None,
             "activation": "relu", "init": "kaiming", "stem": None, **(model or {})}
    info = {"family": "vgg", "residual": False, "norm": model["norm"] or "none",
            "activation": model["activation"], "init": model["init"], "parameters": 12345,
            "conv_layers": len(convs), "linear_layers": sum(k == "linear" for _, k, _ in layers),
            "probe_points": [list(layer) for layer in layers], **(model_info or {})}
    config = {
        "name": name,
        "run": {"model": model,
                "data": {"dataset": "synthetic", "image_size": 32, "split": [0.7, 0.15, 0.15],
                         "seed": 0},
                "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "momentum": 0.0,
                          "optimizer": "sgd", "scheduler": "step", "step_size": 5, "gamma": 0.5,
                          "seed": seed, "device": "cpu"},
                "probe": {"metrics": list(metrics), "every": 1}},
        "model_info": info,
        # as the trainer writes it: the class -> index mapping and images per class and split
        "data_info": {"kind": "synthetic", "class_to_idx": {c: i for i, c in enumerate(classes)},
                      "class_counts": {"train": [70] * len(classes), "val": [15] * len(classes),
                                       "test": [15] * len(classes)},
                      "counts": {"train": 70 * len(classes), "val": 15 * len(classes),
                                 "test": 15 * len(classes)}, "fingerprint": "abc123"},
        "versions": {"python": "3.11", "torch": "2.4", "gradprobe": "0.1.0", "git_commit": "0"},
        "device": "cpu",
    }
    epochs_done = epochs if diverged_step is None else diverged_step // steps_per_epoch + 1
    metric_rows = []
    for epoch in range(1, epochs_done + 1):
        loss, acc = 1.0 / epoch, val_acc[epoch - 1]
        if diverged_step is not None and epoch == epochs_done:
            loss, acc = math.nan, math.nan
        metric_rows.append(EpochRow(epoch=epoch, train_loss=loss, train_acc=acc,
                                    val_loss=1.1 * loss, val_acc=acc, lr=0.01, seconds=1.0))
    run_state = RunState(state)
    tested = run_state is RunState.COMPLETED
    # best/final are left empty on purpose: the analysis must compute them from the metrics
    summary = RunSummary(state=run_state, test_loss=0.5 if tested else None,
                         test_acc=val_acc[epochs_done - 1] if tested else None,
                         best_val_acc=None, best_epoch=None, final_val_acc=None,
                         final_train_loss=None, epochs_completed=epochs_done,
                         steps=epochs_done * steps_per_epoch, diverged_step=diverged_step,
                         seconds=3.0)
    if "config" in files:
        record.write_config(run_dir, config)
    if "status" in files:
        record.write_status(run_dir, run_state, epoch=epochs_done, step=diverged_step or 0,
                            message=message)
    if "metrics" in files:
        record.write_metrics(run_dir, metric_rows)
    if "gradients" in files:
        record.write_gradients(run_dir, gradient_frame(layers, norm_of, epochs, steps_per_epoch,
                                                       metrics, diverged_step))
    if "summary" in files:
        record.write_summary(run_dir, summary)
    return run_dir


def write_study(root: Path, run_names: Sequence[str], *, comparison: Sequence[str] = (),
                experiments: Sequence[dict] = (), title: str | None = None) -> Path:
    spec: dict = {"name": "hand-built", "preset": "smoke",
                  "data": {"dataset": "synthetic", "image_size": 32}, "train": {"epochs": 3},
                  "experiments": list(experiments),
                  "runs": [{"name": name} for name in run_names]}
    if title:
        spec["title"] = title
    if comparison:
        spec["comparison"] = {"title": "Compared models", "runs": list(comparison)}
    record.write_study_file(root, spec)
    return root
