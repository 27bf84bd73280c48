"""What the widely used gradient loggers cost, beside GradientProbe (bench_probe).

Each logger runs the way its documentation shows, against the bare training step (forward,
cross-entropy, backward, SGD step) on the same model and batch, in interleaved rounds
(benchmarks.timing):

- Lightning's `grad_norm(module, norm_type=2)` after backward, as in a LightningModule's
  `on_before_optimizer_step` (its `log_dict` needs a Trainer and is left out, so this is the
  cost of computing the norms alone; it gathers every parameter's norm into one host tensor);
- `wandb.watch(model, log="gradients", log_freq=1)` in offline mode (WANDB_MODE=offline, every
  wandb directory in a temporary one), with one `run.log` per step to commit the histograms, as
  a training loop does; the watched model is a copy of the bare one, same weights.

A logger that is not installed gets a "not installed" row; gradprobe does not depend on either.

Run alone: `python -m benchmarks.bench_loggers [--quick] [--device cuda]`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import Options, Row, check_options, ratio_row, status_row
from benchmarks.timing import Ratio, interleaved_ratio
from gradprobe.models import build_model

LOGGERS = {
    "lightning": "Lightning grad_norm(model, 2) per step vs bare step",
    "wandb": 'wandb.watch(log="gradients", log_freq=1), offline, vs bare step',
}
MODELS = ("vgg_deep", "resnet18")


@dataclass(frozen=True)
class LoggerCase:
    model: str
    width: float = 0.25
    image_size: int = 32
    batch_size: int = 32
    steps: int = 3  # training steps per timed call
    rounds: int = 7
    device: str = "cpu"

    @property
    def label(self) -> str:
        return (f"{self.model} w{self.width:g} {self.image_size}x{self.image_size} "
                f"b{self.batch_size}, {self.device}")


def cases(options: Options) -> list[LoggerCase]:
    sizing: dict[str, Any]
    if options.device == "cuda":
        sizing = {"steps": 20, "rounds": 3 if options.quick else 9}
    elif options.quick:
        sizing = {"steps": 1, "rounds": 3, "batch_size": 8}
    else:
        sizing = {"steps": 3, "rounds": 7}
    return [LoggerCase(model, device=options.device, **sizing) for model in MODELS]


class TrainingStep:
    """A model, its SGD optimiser and one fixed batch: `run(steps, after_backward)` trains."""

    def __init__(self, case: LoggerCase, model: nn.Module | None = None) -> None:
        self.device = torch.device(case.device)
        if model is None:
            torch.manual_seed(0)
            model = build_model(case.model, width=case.width, num_classes=10)
        self.model = model.to(self.device).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        shape = (case.batch_size, 3, case.image_size, case.image_size)
        self.images = torch.randn(shape, generator=generator).to(self.device)
        self.labels = torch.randint(0, 10, (case.batch_size,), generator=generator).to(
            self.device)

    def run(self, steps: int, after_backward: Callable[[int], Any] | None = None) -> None:
        for step in range(steps):
            loss = nn.functional.cross_entropy(self.model(self.images), self.labels)
            loss.backward()
            if after_backward is not None:
                after_backward(step)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def lightning_grad_norm() -> Callable[..., dict[str, torch.Tensor]] | None:
    """Lightning's `grad_norm`, from `lightning` or the older `pytorch_lightning`, if installed."""
    for package, module in (("lightning", "lightning.pytorch.utilities"),
                            ("pytorch_lightning", "pytorch_lightning.utilities")):
        if importlib.util.find_spec(package) is None:
            continue
        return importlib.import_module(module).grad_norm
    return None


def bench_lightning(case: LoggerCase, grad_norm: Callable[..., Any]) -> Ratio:
    step = TrainingStep(case)
    return interleaved_ratio(
        lambda: step.run(case.steps, lambda _: grad_norm(step.model, norm_type=2)),
        lambda: step.run(case.steps), rounds=case.rounds, warmup=1)


@contextlib.contextmanager
def _offline_wandb_environment(scratch: Path) -> Iterator[None]:
    """wandb offline and silent, with every directory it writes inside `scratch`."""
    settings = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                "WANDB_DIR": str(scratch), "WANDB_CACHE_DIR": str(scratch / "cache"),
                "WANDB_CONFIG_DIR": str(scratch / "config"),
                "WANDB_DATA_DIR": str(scratch / "data")}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def bench_wandb(case: LoggerCase) -> Ratio:
    import wandb

    bare = TrainingStep(case)
    with tempfile.TemporaryDirectory(prefix="gradprobe-bench-wandb-") as scratch, \
            _offline_wandb_environment(Path(scratch)):
        run = wandb.init(project="gradprobe-benchmarks", mode="offline", dir=scratch)
        try:
            watched = TrainingStep(case, copy.deepcopy(bare.model))
            wandb.watch(watched.model, log="gradients", log_freq=1)
            ratio = interleaved_ratio(
                lambda: watched.run(case.steps, lambda step: run.log({"step": step})),
                lambda: bare.run(case.steps), rounds=case.rounds, warmup=1)
            wandb.unwatch(watched.model)
        finally:
            run.finish()
            if hasattr(wandb, "teardown"):  # stop wandb's service while `scratch` still exists
                wandb.teardown()
    return ratio


def run(options: Options) -> dict[str, Any]:
    """Each installed logger on each case; a logger that fails to run keeps its error."""
    available: dict[str, Callable[[LoggerCase], Ratio] | None] = {"lightning": None,
                                                                   "wandb": None}
    grad_norm = lightning_grad_norm()
    if grad_norm is not None:
        available["lightning"] = lambda case: bench_lightning(case, grad_norm)
    if importlib.util.find_spec("wandb") is not None:
        available["wandb"] = bench_wandb
    chosen = cases(options)
    results: dict[str, Any] = {"cases": [asdict(case) for case in chosen],
                               "labels": [case.label for case in chosen]}
    for name, measure in available.items():
        if measure is None:
            results[name] = None
            continue
        outcomes = []
        for case in chosen:
            started = time.perf_counter()
            try:
                outcomes.append({"ratio": measure(case).as_dict()})
            except Exception as error:  # a third-party failure is reported, not raised
                outcomes.append({"error": f"{type(error).__name__}: {error}"})
            outcomes[-1]["wall_seconds"] = time.perf_counter() - started
        results[name] = outcomes
    return results


def rows(results: dict[str, Any]) -> list[Row]:
    table = []
    for name, comparison in LOGGERS.items():
        outcomes = results[name]
        if outcomes is None:
            table.append(status_row("probe overhead", "any model", comparison, "not installed",
                                    f"{name} is not installed here (pip install {name} to "
                                    "include it); gradprobe does not need it"))
            continue
        for label, outcome in zip(results["labels"], outcomes, strict=True):
            if "error" in outcome:
                table.append(status_row("probe overhead", label, comparison, "cannot run",
                                        outcome["error"]))
                continue
            table.append(ratio_row("probe overhead", label, comparison,
                                   Ratio(**outcome["ratio"]),
                                   note="third-party logger, shown for comparison, no target"))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, device=args.device)
    check_options(options)
    for row in rows(run(options)):
        shown = (f"{row.median:.3f}x ({row.low:.3f}-{row.high:.3f})" if row.median is not None
                 else f"{row.status}: {row.note}")
        print(f"{row.case} | {row.comparison} | {shown}")


if __name__ == "__main__":
    main()
