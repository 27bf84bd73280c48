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
from gradprobe.record import EpochRow, RunState, RunSummary, StepRow

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
    seed: int = 0, train_loss: Sequence[float] | None = None,
    step_norm: Callable[[int], float] | None = None,
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
        loss = train_loss[epoch - 1] if train_loss is not None else 1.0 / epoch
        acc = val_acc[epoch - 1]
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
    if step_norm is not None:  # steps.csv: each step's loss (its epoch's), lr and global norm
        record.write_steps(run_dir, [
            StepRow(step=step, epoch=step // steps_per_epoch + 1,
                    train_loss=metric_rows[step // steps_per_epoch].train_loss, lr=0.01,
                    global_grad_norm=step_norm(step))
            for step in range(epochs_done * steps_per_epoch)])
    return run_dir


def write_study(root: Path, run_names: Sequence[str], *, comparison: Sequence[str] = (),
                experiments: Sequence[dict] = (), title: str | None = None,
                configurations: dict[str, str] | None = None) -> Path:
    """study.yaml; `configurations` maps a run to the configuration name `gradprobe study`
    records for it (runs that differ only by seed share one)."""
    configurations = configurations or {}
    spec: dict = {"name": "hand-built", "preset": "smoke",
                  "data": {"dataset": "synthetic", "image_size": 32}, "train": {"epochs": 3},
                  "experiments": list(experiments),
                  "runs": [{"name": name, **({"configuration": configurations[name]}
                                             if name in configurations else {})}
                           for name in run_names]}
    if title:
        spec["title"] = title
    if comparison:
        spec["comparison"] = {"title": "Compared models", "runs": list(comparison)}
    record.write_study_file(root, spec)
    return root


def write_configuration(root: Path, name: str, seeds: Sequence[int] = (0, 1, 2),
                        **run: object) -> dict[str, str]:
    """One configuration trained under `seeds`: runs "<name>,seed=<s>" in root/runs, each
    written by `write_run(**run)`; a `norm_of` with a `seed` argument gets the run's seed.
    Returns run name -> configuration name, as study.yaml records it."""
    written = {}
    norm_of = run.pop("norm_of", None)
    for seed in seeds:
        arguments = dict(run)
        if norm_of is not None:
            arguments["norm_of"] = (lambda d, k, e, s, m, seed=seed: norm_of(d, k, e, s, m, seed)
                                    ) if _takes_seed(norm_of) else norm_of
        write_run(root / "runs", f"{name},seed={seed}", seed=seed, **arguments)  # type: ignore[arg-type]
        written[f"{name},seed={seed}"] = name
    return written


def _takes_seed(function: object) -> bool:
    import inspect

    return "seed" in inspect.signature(function).parameters  # type: ignore[arg-type]


def healthy_then_vanishing(top: int, last_epoch: int) -> NormOf:
    """Even flow (every layer 1) until the last epoch, then halving per layer towards the input:
    healthy at step 0 and the first epoch, vanishing (2**-top) at the last."""
    return lambda depth, kind, epoch, step, metric: (
        2.0 ** (depth - top) if epoch == last_epoch else 1.0)


def write_default_like_study(root: Path, epochs: int = 4) -> Path:
    """A study shaped like the built-in default: a comparison of three models (vgg_deep at
    chance, healthy at the first epoch and vanishing at the last), a batch-norm experiment whose
    batch-normalised variant explodes at step 0, an init/activation grid of six, and depth
    8/20/32 with plain and residual twins; three seeds each, ten classes."""
    classes = tuple(str(c) for c in range(10))
    learn = [min(0.95, 0.4 + 0.15 * e) for e in range(epochs)]
    chance = [0.1, 0.11, 0.09, 0.1, 0.1, 0.1, 0.1][:epochs]
    flat = [2.30] * epochs
    configs: dict[str, str] = {}
    common = {"epochs": epochs, "classes": classes, "steps_per_epoch": 3}

    def add(name: str, **run: object) -> list[str]:
        found = write_configuration(root, name, **common, **run)  # type: ignore[arg-type]
        configs.update(found)
        return list(found)

    deep = add("vgg_deep", layers=vgg_layers(8), val_acc=chance, train_loss=flat,
               norm_of=healthy_then_vanishing(7, epochs))
    vgg16 = add("vgg16", layers=vgg_layers(6), val_acc=learn, model={"name": "vgg16"},
                norm_of=lambda d, k, e, s, m: 0.9 ** (5 - d))
    res = add("resnet18", layers=resnet_layers(), val_acc=learn,
              model={"name": "resnet18", "norm": "batch"},
              model_info={"family": "resnet", "residual": True, "norm": "batch"},
              norm_of=lambda d, k, e, s, m: 1.0)
    bn = add("batch-norm.norm=batch", layers=vgg_layers(8), val_acc=learn,
             model={"norm": "batch"}, model_info={"norm": "batch"},
             norm_of=lambda d, k, e, s, m: 2.0 ** (7 - d) if s == 0 else 1.0)
    experiments = [{"name": "batch-norm", "title": "Batch normalisation in VGG-Deep",
                    "question": "Does batch norm change the flow?",
                    "axes": {"norm": ["none", "batch"]}, "runs": deep + bn,
                    "labels": {**{n: "norm=none" for n in deep}, **{n: "norm=batch" for n in bn}}}]
    grid, labels = [], {}
    for init in ("default", "kaiming", "xavier"):
        for activation in ("relu", "tanh"):
            label = f"init={init},activation={activation}"
            if (init, activation) == ("kaiming", "relu"):
                runs = deep
            else:
                factor = {"default": 0.5, "kaiming": 0.95, "xavier": 0.8}[init]
                runs = add(f"init-activation.{label}", layers=vgg_layers(8),
                           val_acc=chance if init == "default" else learn,
                           model={"init": init, "activation": activation},
                           model_info={"init": init, "activation": activation},
                           norm_of=lambda d, k, e, s, m, f=factor: f ** (7 - d))
            grid += runs
            labels.update({n: label for n in runs})
    experiments.append({"name": "init-activation", "title": "Initialisation and activation",
                        "question": "How do init and activation change the flow?",
                        "axes": {"init": ["default", "kaiming", "xavier"],
                                 "activation": ["relu", "tanh"]},
                        "runs": grid, "labels": labels})
    depth_runs, depth_labels = [], {}
    for depth in (8, 20, 32):
        for residual in (False, True):
            label = f"depth={depth},residual={str(residual).lower()}"
            decay = 1.0 if residual else 0.97
            accuracy = learn if residual or depth == 8 else [a - 0.01 * depth for a in learn]
            runs = add(f"depth.{label}", layers=vgg_layers(6), val_acc=accuracy,
                       model={"name": "resnet" if residual else "plain", "depth": depth,
                              "norm": "batch"},
                       model_info={"family": "resnet" if residual else "plain",
                                   "residual": residual, "norm": "batch"},
                       norm_of=lambda d, k, e, s, m, f=decay ** depth: f ** (5 - d))
            depth_runs += runs
            depth_labels.update({n: label for n in runs})
    experiments.append({"name": "depth", "title": "Depth, with and without residual connections",
                        "question": "Do plain nets degrade with depth where residual ones do "
                                    "not?", "axes": {"depth": [8, 20, 32],
                                                     "residual": [False, True]},
                        "runs": depth_runs, "labels": depth_labels})
    write_study(root, list(configs), comparison=deep + vgg16 + res, experiments=experiments,
                title="A study like the default", configurations=configs)
    return root


class RecordingProgress:
    """A Progress that keeps every line it is given, and draws epoch bars nowhere."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def epoch_bar(self, description: str, total: int, initial: int = 0):
        from gradprobe.progress import NullProgress

        return NullProgress().epoch_bar(description, total, initial)
