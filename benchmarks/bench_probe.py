"""What does probing every step cost? GradientProbe vs no probe vs the notebook-style hook.

For each model and width, one process times the same SGD training step (forward, cross-entropy,
backward, step, zero_grad) in three variants, in interleaved rounds so that drift in machine
load hits all of them alike (A B C, B C A, C A B, ...):

- "none": no hooks;
- "probe": `GradientProbe` recording weight_grad_norm + output_grad_norm of every conv and
  linear layer at every step (hooks attached for the round, `flush()` once at its end);
- "notebook": the usual notebook instrumentation, a `register_full_backward_hook` on every
  conv layer that appends `grad_output[0].norm().item()` to a list (a host sync per layer).

Per round, each variant's time per step is divided by the "none" time of the same round; the
report gives the median ratio and its min-max over rounds. Target for the probe: <= 1.03.
Both wall-clock and process CPU time are measured: on a CPU shared with other jobs, CPU time
(with --threads 1) is the steadier measure of the work a variant adds; on CUDA only wall-clock
means anything (the device runs asynchronously), so read the wall ratios there.

    python benchmarks/bench_probe.py                       # vgg_deep, resnet18; width 0.25, 1
    python benchmarks/bench_probe.py --models resnet18 --widths 0.25 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradprobe.models import build_model
from gradprobe.probe import GradientProbe

VARIANTS = ("none", "probe", "notebook")
METRICS = ("weight_grad_norm", "output_grad_norm")


class NotebookHooks:
    """The assignment's notebook way: a full backward hook per conv calling `.item()`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.norms: list[float] = []
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self) -> None:
        for module in self.model.modules():
            if isinstance(module, nn.Conv2d):
                self.handles.append(module.register_full_backward_hook(self._hook))

    def _hook(self, module: nn.Module, grad_input: Any, grad_output: Any) -> None:
        self.norms.append(grad_output[0].norm().item())

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.norms.clear()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_model(
    name: str,
    width: float,
    *,
    device: torch.device,
    batch_size: int = 32,
    image_size: int = 32,
    rounds: int = 7,
    steps: int = 3,
    warmup: int = 2,
) -> dict[str, Any]:
    """Interleaved timing of the three variants on one model; a dict of results."""
    torch.manual_seed(0)
    model = build_model(name, width=width, num_classes=10).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch_size,), generator=generator).to(device)
    probe = GradientProbe(model, metrics=METRICS)
    notebook = NotebookHooks(model)
    step_counter = 0

    def train_step(record: bool) -> None:
        nonlocal step_counter
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        if record:
            probe.record(step_counter, epoch=0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_counter += 1

    def run_round(variant: str, count: int) -> tuple[float, float]:
        """(wall, CPU) seconds per step of `count` steps of `variant`."""
        attach, detach = {
            "none": (lambda: None, lambda: None),
            "probe": (probe.attach, probe.detach),
            "notebook": (notebook.attach, notebook.detach),
        }[variant]
        attach()
        try:
            _synchronize(device)
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                train_step(record=variant == "probe")
            if variant == "probe":
                probe.flush()
            _synchronize(device)
            wall = time.perf_counter() - started
            return wall / count, (time.process_time() - started_cpu) / count
        finally:
            detach()

    errors: dict[str, str] = {}
    variants = list(VARIANTS)
    times: dict[str, list[tuple[float, float]]] = {}
    with warnings.catch_warnings():
        # The first conv's input needs no grad, so PyTorch warns that its full backward hook
        # sees only the output gradient: expected, and the notebook hook reads only that.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for variant in list(variants):  # warm-up; find variants that cannot run on this model
            try:
                run_round(variant, warmup)
            except RuntimeError as error:  # e.g. full backward hooks and in-place ops
                errors[variant] = str(error).splitlines()[0]
                variants.remove(variant)
        times = {variant: [] for variant in variants}
        for round_index in range(rounds):
            shift = round_index % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                times[variant].append(run_round(variant, steps))
    result: dict[str, Any] = {
        "model": name,
        "width": width,
        "layers": len(probe.layers),
        "batch_size": batch_size,
        "image_size": image_size,
        "rounds": rounds,
        "steps_per_round": steps,
        "errors": errors,
    }
    for clock, column in (("", 0), ("cpu_", 1)):
        for variant, pairs in times.items():
            seconds = [pair[column] for pair in pairs]
            result[f"{variant}_{clock}ms_per_step"] = 1e3 * statistics.median(seconds)
            if variant == "none":
                continue
            base = [pair[column] for pair in times["none"]]
            ratios = [t / b for t, b in zip(seconds, base, strict=True)]
            result[f"{variant}_{clock}ratio_median"] = statistics.median(ratios)
            result[f"{variant}_{clock}ratio_min"] = min(ratios)
            result[f"{variant}_{clock}ratio_max"] = max(ratios)
    return result


def run_benchmark(
    models: Sequence[str] = ("vgg_deep", "resnet18"),
    widths: Sequence[float] = (0.25, 1.0),
    *,
    device: str = "cpu",
    progress: Callable[[str], None] | None = print,
    **options: Any,
) -> dict[str, Any]:
    """Benchmark every model x width; a JSON-ready dict with the environment and results."""
    torch_device = torch.device(device)
    results = []
    for name in models:
        for width in widths:
            result = benchmark_model(name, width, device=torch_device, **options)
            results.append(result)
            if progress is not None:
                progress(format_result(result))
    return {
        "device": str(torch_device),
        "device_name": torch.cuda.get_device_name(torch_device)
        if torch_device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
    }


def format_result(result: dict[str, Any]) -> str:
    """One line per clock: step time without hooks, and each variant's median ratio [min-max]."""
    lines = []
    for clock, label in (("", "wall"), ("cpu_", "cpu ")):
        parts = [f"{result['model']:>9} width {result['width']:<4} {label}:"]
        parts.append(f"none {result[f'none_{clock}ms_per_step']:8.1f} ms/step")
        for variant in VARIANTS[1:]:
            key = f"{variant}_{clock}ratio"
            if f"{key}_median" in result:
                parts.append(
                    f"{variant} x{result[f'{key}_median']:.3f} "
                    f"[{result[f'{key}_min']:.3f}-{result[f'{key}_max']:.3f}]"
                )
            else:
                parts.append(f"{variant} failed: {result['errors'][variant]}")
        lines.append("  ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg_deep", "resnet18"])
    parser.add_argument("--widths", nargs="+", type=float, default=[0.25, 1.0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_benchmark(
        args.models,
        args.widths,
        device=args.device,
        rounds=args.rounds,
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.image_size,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
