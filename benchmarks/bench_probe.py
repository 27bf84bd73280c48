"""What does probing every step cost? GradientProbe vs no probe vs the notebook-style hook.

Models: gradprobe's `vgg_deep` and `resnet18` (32x32 images), and `transformer`, a small
GPT-style model (2 pre-norm blocks of nn.TransformerEncoderLayer: nn.MultiheadAttention, d=64,
4 heads, 64 tokens, vocabulary 256). `--compile BACKEND` times the model under torch.compile:
the probe is attached before compiling one copy, and a second copy is compiled bare (hooks
added to a compiled model later would be ignored, so the variants cannot share one module).

For each model and width, one process times the same SGD training step (forward, cross-entropy,
backward, step, zero_grad) in three variants, in interleaved rounds so that drift in machine
load hits all of them alike (A B C, B C A, C A B, ...):

- "none": no hooks;
- "probe": `GradientProbe` recording the default metrics (weight_grad_norm, weight_grad_rms,
  output_grad_norm) of every default layer at every step (hooks attached for the round,
  `flush()` once at its end);
- "notebook": the usual notebook instrumentation, a `register_full_backward_hook` on every
  conv layer that appends `grad_output[0].norm().item()` to a list (a host sync per layer).

Per round, each variant's time per step is divided by the "none" time of the same round; the
report gives the median ratio and its min-max over rounds. Target for the probe: <= 1.03.
Both wall-clock and process CPU time are measured: on a CPU shared with other jobs, CPU time
(with --threads 1) is the steadier measure of the work a variant adds; on CUDA only wall-clock
means anything (the device runs asynchronously), so read the wall ratios there.

    python benchmarks/bench_probe.py                       # vgg_deep, resnet18; width 0.25, 1
    python benchmarks/bench_probe.py --models transformer --widths 1 --compile inductor
    python benchmarks/bench_probe.py --models resnet18 --widths 0.25 --rounds 5 --json out.json
    python benchmarks/bench_probe.py --widths 0.125 --threads 1 --metrics weight_grad_norm \
        weight_grad_rms output_grad_norm dead_fraction      # the cost of other metrics
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradprobe.metrics import metric_info
from gradprobe.models import build_model
from gradprobe.probe import DEFAULT_METRICS, GradientProbe

VARIANTS = ("none", "probe", "notebook")
METRICS = DEFAULT_METRICS  # weight_grad_norm, weight_grad_rms, output_grad_norm
VOCABULARY, TOKENS = 256, 64


class TinyGPT(nn.Module):
    """Token embedding, 2 pre-norm self-attention blocks, a linear head per position."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        dim = max(16, int(64 * width) // 4 * 4)
        self.embed = nn.Embedding(VOCABULARY, dim)
        self.position = nn.Parameter(torch.zeros(TOKENS, dim))
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True,
                                       norm_first=True)
            for _ in range(2)
        ])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCABULARY)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.blocks(self.embed(tokens) + self.position)
        return self.head(self.norm(hidden)).flatten(0, 1)  # (batch * tokens, vocabulary)


def build(name: str, width: float) -> nn.Module:
    """gradprobe's zoo model, or the small transformer."""
    if name == "transformer":
        return TinyGPT(width)
    return build_model(name, width=width, num_classes=10)


def batch_for(name: str, batch_size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if name == "transformer":
        tokens = torch.randint(0, VOCABULARY, (batch_size, TOKENS + 1), generator=generator)
        return tokens[:, :-1], tokens[:, 1:].reshape(-1)  # next-token targets
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    return images, torch.randint(0, 10, (batch_size,), generator=generator)


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
    compile_backend: str | None = None,
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """Interleaved timing of the three variants on one model; a dict of results."""
    torch.manual_seed(0)
    model = build(name, width).to(device).train()
    images, labels = (tensor.to(device) for tensor in batch_for(name, batch_size, image_size))
    probe = GradientProbe(model, metrics=tuple(metrics))
    notebook = NotebookHooks(model)
    runs = {variant: model for variant in VARIANTS}
    optimizers = {variant: torch.optim.SGD(model.parameters(), lr=1e-3) for variant in VARIANTS}
    if compile_backend:
        bare = copy.deepcopy(model)
        probe.attach()  # before compiling: compiled code runs the hooks registered by then
        runs = {"none": torch.compile(bare, backend=compile_backend),
                "probe": torch.compile(model, backend=compile_backend)}
        optimizers = {"none": torch.optim.SGD(bare.parameters(), lr=1e-3),
                      "probe": torch.optim.SGD(model.parameters(), lr=1e-3)}
    if any(metric_info(metric).needs_optimizer for metric in metrics):
        probe.watch_optimizer(optimizers["probe"])  # update_ratio reads the step

    def train_step(variant: str) -> None:
        loss = nn.functional.cross_entropy(runs[variant](images), labels)
        loss.backward()
        if variant == "probe":
            probe.record()  # counts steps itself
        optimizers[variant].step()
        optimizers[variant].zero_grad(set_to_none=True)

    def run_round(variant: str, count: int) -> tuple[float, float]:
        """(wall, CPU) seconds per step of `count` steps of `variant`."""
        attach, detach = {
            "none": (lambda: None, lambda: None),
            "probe": (probe.attach, lambda: None if compile_backend else probe.detach()),
            "notebook": (notebook.attach, notebook.detach),
        }[variant]
        attach()
        try:
            _synchronize(device)
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                train_step(variant)
            if variant == "probe":
                probe.flush()
            _synchronize(device)
            wall = time.perf_counter() - started
            return wall / count, (time.process_time() - started_cpu) / count
        finally:
            detach()

    errors: dict[str, str] = {}
    variants = list(runs)
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
        "compile": compile_backend,
        "metrics": list(metrics),
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
            if options.get("compile_backend"):
                torch._dynamo.reset()  # the next model compiles afresh
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
        compiled = f" compiled ({result['compile']})" if result.get("compile") else ""
        parts = [f"{result['model']:>11} width {result['width']:<4}{compiled} {label}:"]
        parts.append(f"none {result[f'none_{clock}ms_per_step']:8.1f} ms/step")
        for variant in VARIANTS[1:]:
            key = f"{variant}_{clock}ratio"
            if f"{key}_median" in result:
                parts.append(
                    f"{variant} x{result[f'{key}_median']:.3f} "
                    f"[{result[f'{key}_min']:.3f}-{result[f'{key}_max']:.3f}]"
                )
            elif variant in result.get("errors", {}):
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
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps per variant first (compiling happens here)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS),
                        help="what the probe records (default: its default metrics)")
    parser.add_argument("--compile", metavar="BACKEND",
                        help="time under torch.compile with this backend (e.g. inductor)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_benchmark(
        args.models,
        args.widths,
        device=args.device,
        rounds=args.rounds,
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        image_size=args.image_size,
        compile_backend=args.compile,
        metrics=args.metrics,
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
