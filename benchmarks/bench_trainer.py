"""Trainer overhead: gradprobe's training loop against a minimal hand-written PyTorch loop.

Both sides train the same model (same seed, so the same initial weights) on the same in-memory
`BatchLoader` batches for the same number of steps, with the per-step `loss.item()` and
accuracy count any hand-written loop has. gradprobe's side is `gradprobe.train.train`, timed by
the trainer itself: the `seconds` column of metrics.csv is the wall time of the training loop
only (set-up, validation and checkpoints excluded). The hand-written side times its own loop
the same way. Rounds alternate the two (benchmarks.timing), once with the probe off and once
with the default probe metrics on.

Both sides must compute the same thing, so each result also carries both sides' mean train
loss of the last round: equal losses are the evidence that the comparison is like for like.

The diagnostic metrics (dead units, activations, update size; issue 20) are measured the same
way, gradprobe's trainer against itself: the default probe (diagnostics every 10th step)
and the diagnostics at every step, each against the gradient metrics alone (the default before
them). Both sides train the same steps, so their losses are equal too.

Run alone: `python -m benchmarks.bench_trainer [--quick] [--device cuda] [--amp]`.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import Options, Row, check_options, ratio_row, status_row
from benchmarks.timing import Ratio, interleaved_ratio
from gradprobe.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from gradprobe.data import BatchLoader, Splits, load_dataset
from gradprobe.metrics import default_run_metrics, metric_info
from gradprobe.models import build_model
from gradprobe.train import train

TARGET = 1.03  # the trainer may cost at most 3% more than a hand-written loop (probe off)
PROBE_OFF = ProbeConfig(metrics=())  # "probe off" in the trainer's own config
PROBE_ON = ProbeConfig()  # the default metrics, every step
# The default before issue 20: gradient metrics (+ weight_distance) only.
PROBE_GRADIENTS = ProbeConfig(metrics=tuple(name for name in default_run_metrics()
                                            if not metric_info(name).diagnostic))
PROBE_DIAGNOSTICS_EVERY_STEP = ProbeConfig(diagnostic_every=1)
DIAGNOSTICS_TARGET = 1.05  # the default's diagnostics may cost at most 5% of a trainer step
DIAGNOSTICS_STEPS = 20  # a multiple of the default diagnostic_every: the default's real share


@dataclass(frozen=True)
class TrainerCase:
    """One model and size to compare the two loops on."""

    model: str = "vgg_deep"
    width: float = 0.25
    image_size: int = 32
    batch_size: int = 32
    steps: int = 12  # optimiser steps per timed loop
    rounds: int = 7  # interleaved rounds (after one warm-up round)
    device: str = "cpu"
    amp: bool = False

    @property
    def label(self) -> str:
        return (f"{self.model} w{self.width:g} {self.image_size}x{self.image_size} "
                f"b{self.batch_size} x{self.steps} steps, {self.device}"
                f"{' amp' if self.amp else ''}")


def cases(options: Options) -> list[TrainerCase]:
    """The cases the suite runs: one size per mode and device, fp32, plus AMP with --amp."""
    if options.device == "cuda":
        # Steps take milliseconds on a GPU: a full-width model and more steps per round.
        base = TrainerCase(width=1.0, steps=20 if options.quick else 60,
                           rounds=3 if options.quick else 7, device="cuda")
    elif options.quick:
        base = TrainerCase(width=0.125, batch_size=16, steps=2, rounds=3)
    else:
        base = TrainerCase()
    return [base, replace(base, amp=True)] if options.amp else [base]


def load_splits(case: TrainerCase) -> Splits:
    """Synthetic images, enough for exactly one epoch of `case.steps` steps; small val/test
    splits, since the trainer evaluates them after every timed loop (outside the timing)."""
    return load_dataset("synthetic", **_data_options(case))


def _data_options(case: TrainerCase) -> dict[str, Any]:
    train_images = case.steps * case.batch_size
    per_class = math.ceil(train_images / 3 / 0.8) + 2  # 3 classes, 80% of each in train
    return {"image_size": case.image_size, "seed": 0, "split": (0.8, 0.1, 0.1),
            "images_per_class": per_class, "num_classes": 3}


def run_config(case: TrainerCase, probe: ProbeConfig) -> RunConfig:
    """The trainer's config for `case`: one epoch of `case.steps` steps, SGD lr 0.01."""
    data = _data_options(case)
    return RunConfig(
        model=ModelConfig(name=case.model, width=case.width),
        data=DataConfig(image_size=case.image_size, seed=0, split=data["split"],
                        images_per_class=data["images_per_class"], num_classes=3),
        # The hand-written loop runs at this process's thread count: so does the trainer.
        train=TrainConfig(epochs=1, batch_size=case.batch_size, lr=0.01, seed=0,
                          device=case.device, amp=case.amp, max_steps_per_epoch=case.steps,
                          threads=torch.get_num_threads()),
        probe=probe,
    )


@dataclass
class LoopResult:
    seconds: float  # wall time of the training loop only
    train_loss: float  # mean loss over the epoch's images


def gradprobe_loop(config: RunConfig, splits: Splits, run_dir: Path) -> LoopResult:
    """One epoch with gradprobe's trainer; the seconds are the trainer's own measurement."""
    result = train(config, run_dir, force=True, splits=splits)
    return LoopResult(float(result.summary["seconds"]), float(result.summary["final_train_loss"]))


def hand_written_loop(config: RunConfig, splits: Splits) -> LoopResult:
    """The same epoch as a student would write it: the baseline."""
    cfg = config.train
    random.seed(cfg.seed)  # the trainer seeds these three, then builds the model
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = build_model(config.model.name, num_classes=splits.num_classes,
                        in_channels=splits.in_channels,
                        **config.model.builder_options()).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp else None
    loader = BatchLoader(splits.train, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                         mean=splits.mean, std=splits.std, device=device,
                         max_batches=cfg.max_steps_per_epoch)
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for images, labels in loader.epoch(0):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=scaler is not None):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss_sum += loss.item() * labels.shape[0]
        correct += int((logits.argmax(dim=1) == labels).sum().item())
        seen += labels.shape[0]
    seconds = time.perf_counter() - started
    return LoopResult(seconds, loss_sum / seen)


def compare(case: TrainerCase, probe: ProbeConfig, splits: Splits,
            scratch: Path) -> dict[str, Any]:
    """Interleaved rounds of gradprobe's trainer (with `probe`) against the hand-written loop."""
    config = run_config(case, probe)
    last: dict[str, LoopResult] = {}

    def candidate() -> float:
        last["gradprobe"] = gradprobe_loop(config, splits, scratch / "run")
        return last["gradprobe"].seconds

    def baseline() -> float:
        last["hand_written"] = hand_written_loop(config, splits)
        return last["hand_written"].seconds

    # Each side times its own loop and returns the seconds: the timer just calls it.
    ratio = interleaved_ratio(candidate, baseline, rounds=case.rounds, warmup=1,
                              timer=lambda run: run())
    return {"ratio": ratio.as_dict(),
            "gradprobe_train_loss": last["gradprobe"].train_loss,
            "hand_written_train_loss": last["hand_written"].train_loss}


def compare_probes(case: TrainerCase, candidate: ProbeConfig, baseline: ProbeConfig,
                   splits: Splits, scratch: Path) -> dict[str, Any]:
    """Interleaved rounds of gradprobe's trainer with two probe settings."""
    configs = {"candidate": run_config(case, candidate), "baseline": run_config(case, baseline)}
    last: dict[str, LoopResult] = {}

    def side(name: str) -> float:
        last[name] = gradprobe_loop(configs[name], splits, scratch / name)
        return last[name].seconds

    ratio = interleaved_ratio(lambda: side("candidate"), lambda: side("baseline"),
                              rounds=case.rounds, warmup=1, timer=lambda run: run())
    return {"ratio": ratio.as_dict(), "candidate_train_loss": last["candidate"].train_loss,
            "baseline_train_loss": last["baseline"].train_loss}


def diagnostics_case(case: TrainerCase, options: Options) -> TrainerCase:
    return case if options.quick else replace(case, steps=DIAGNOSTICS_STEPS)


def run(options: Options) -> dict[str, Any]:
    """Every case with the probe off and on; a comparison that fails keeps its error."""
    results: dict[str, Any] = {"cases": []}
    for case in cases(options):
        splits = load_splits(case)
        entry: dict[str, Any] = {"case": asdict(case), "label": case.label}
        for name, probe in (("probe_off", PROBE_OFF), ("probe_on", PROBE_ON)):
            with tempfile.TemporaryDirectory(prefix="gradprobe-bench-trainer-") as scratch:
                try:
                    entry[name] = compare(case, probe, splits, Path(scratch))
                except Exception as error:  # reported in the table, the suite goes on
                    entry[name] = {"error": f"{type(error).__name__}: {error}"}
        if not case.amp:
            diagnostic = diagnostics_case(case, options)
            diagnostic_splits = load_splits(diagnostic)
            entry["diagnostics_label"] = diagnostic.label
            for name, probe in (("diagnostics_default", PROBE_ON),
                                ("diagnostics_every_step", PROBE_DIAGNOSTICS_EVERY_STEP)):
                with tempfile.TemporaryDirectory(prefix="gradprobe-bench-trainer-") as scratch:
                    try:
                        entry[name] = compare_probes(diagnostic, probe, PROBE_GRADIENTS,
                                                     diagnostic_splits, Path(scratch))
                    except Exception as error:  # reported in the table, the suite goes on
                        entry[name] = {"error": f"{type(error).__name__}: {error}"}
        entry["quick"] = options.quick
        results["cases"].append(entry)
    return results


def rows(results: dict[str, Any]) -> list[Row]:
    """Table rows: the target is judged with the probe off; probe on is shown beside it."""
    table = []
    for entry in results["cases"]:
        for name, comparison, target in (
            ("probe_off", "gradprobe trainer, probe off vs hand-written loop", TARGET),
            ("probe_on", "gradprobe trainer, default probe vs hand-written loop", None),
        ):
            outcome = entry[name]
            if "error" in outcome:
                table.append(status_row("trainer overhead", entry["label"], comparison, "error",
                                        outcome["error"], target=target))
                continue
            ratio = Ratio(**outcome["ratio"])
            same = _same_loss(outcome["gradprobe_train_loss"], outcome["hand_written_train_loss"])
            note = "" if same else (
                f"train losses differ ({outcome['gradprobe_train_loss']:.6g} vs "
                f"{outcome['hand_written_train_loss']:.6g}): the loops are not like for like")
            if target is None:
                note = note or "probe on: shown beside the target, not judged"
            table.append(ratio_row("trainer overhead", entry["label"], comparison, ratio,
                                   target=target, note=note,
                                   details={key: value for key, value in outcome.items()
                                            if key != "ratio"}))
        table.extend(_diagnostic_rows(entry))
    return table


def _diagnostic_rows(entry: dict[str, Any]) -> list[Row]:
    """The diagnostic metrics' cost: trainer with them against the trainer without them."""
    table = []
    for name, comparison, target in (
        ("diagnostics_default", "default probe (diagnostics every 10th step) vs gradient "
         "metrics only", DIAGNOSTICS_TARGET),
        ("diagnostics_every_step", "diagnostics at every step vs gradient metrics only", None),
    ):
        if name not in entry:
            continue
        outcome = entry[name]
        if "error" in outcome:
            table.append(status_row("diagnostic metrics", entry["diagnostics_label"],
                                    comparison, "error", outcome["error"], target=target))
            continue
        note = "" if entry.get("quick") is False else "--quick: sizes shrunk, not judged"
        if not _same_loss(outcome["candidate_train_loss"], outcome["baseline_train_loss"]):
            note = "train losses differ: the probe changed training"
        table.append(ratio_row("diagnostic metrics", entry["diagnostics_label"], comparison,
                               Ratio(**outcome["ratio"]), target=target,
                               judge=entry.get("quick") is False, note=note,
                               details={key: value for key, value in outcome.items()
                                        if key != "ratio"}))
    return table


def _same_loss(a: float, b: float) -> bool:
    # Same seed, weights and batches: equal on a CPU; GPU kernels are not bitwise deterministic
    # (atomic adds), so allow float noise, far below what other batches or weights would give.
    return abs(a - b) <= 1e-3 * max(1.0, abs(a), abs(b))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, device=args.device, amp=args.amp)
    check_options(options)
    for row in rows(run(options)):
        if row.median is None:
            print(f"{row.case} | {row.comparison} | {row.status}: {row.note}")
        else:
            print(f"{row.case} | {row.comparison} | {row.median:.3f}x "
                  f"({row.low:.3f}-{row.high:.3f}) {row.note}")


if __name__ == "__main__":
    main()
