"""Rows from the benchmarks the suite gathers but does not own: bench_probe and bench_data.

Each of those modules returns a dict of its own shape; the functions here run them at the
suite's sizes and turn their dicts into table rows, without changing them.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from benchmarks import bench_data, bench_probe
from benchmarks.common import Options, Row, judged, ratio_row, seconds_row, status_row
from benchmarks.timing import Ratio

PROBE_TARGET = 1.05  # GradientProbe may cost at most 5% of a training step (issue 13)
PROBE_GOAL = 1.03  # ... and should cost at most 3%
DATA_TARGET = 5.0  # producing batches may take at most 5% of an epoch, once cached (percent)
PROBE_MODELS = ("vgg_deep", "resnet18")
# The small GPT-style transformer (bench_probe.TinyGPT): 16 sequences of 64 tokens, eager and
# under torch.compile (inductor; aot_eager with --quick, which skips C++ code generation).
TRANSFORMER = {"batch_size": 16}


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- probe overhead -----------------------------------------------------------------------------

def run_probe(options: Options) -> dict[str, Any]:
    """bench_probe at the suite's sizes: widths 0.25 and 1.0 (0.25 only with --quick).

    Width 1.0 steps cost 10-15x more than width 0.25 on a CPU, so they get fewer rounds;
    on a GPU both widths take the full count.
    """
    if options.quick:
        sizes = [(0.25, {"rounds": 3, "steps": 1, "warmup": 1, "batch_size": 8})]
    elif options.device == "cuda":
        sizes = [(0.25, {"rounds": 9, "steps": 20, "warmup": 3}),
                 (1.0, {"rounds": 9, "steps": 20, "warmup": 3})]
    else:
        sizes = [(0.25, {"rounds": 7, "steps": 3, "warmup": 2}),
                 (1.0, {"rounds": 5, "steps": 1, "warmup": 1})]
    results: list[dict[str, Any]] = []
    environment: dict[str, Any] = {}
    cases = [((model,), width, sizing) for model in PROBE_MODELS for width, sizing in sizes]
    small = sizes[0][1]
    backend = "aot_eager" if options.quick else "inductor"
    cases += [(("transformer",), 1.0, {**small, **TRANSFORMER}),
              (("transformer",), 1.0, {**small, **TRANSFORMER, "compile_backend": backend,
                                       "warmup": small["warmup"] + 2})]
    for models, width, sizing in cases:
        report = bench_probe.run_benchmark(models, (width,), device=options.device,
                                           progress=_progress, **sizing)
        results += report["results"]
        environment = {key: value for key, value in report.items() if key != "results"}
    return {**environment, "results": results, "skipped_widths": [1.0] if options.quick else []}


def probe_rows(results: dict[str, Any], device: str) -> list[Row]:
    """gradprobe and the notebook-style hook, each against the bare step, per model and width."""
    table = []
    for result in results["results"]:
        if result["model"] == "transformer":
            case = (f"transformer d64 2 blocks, {bench_probe.TOKENS} tokens "
                    f"b{result['batch_size']}, {device}")
        else:
            case = (f"{result['model']} w{result['width']:g} {result['image_size']}x"
                    f"{result['image_size']} b{result['batch_size']}, {device}")
        if result.get("compile"):
            case += f", torch.compile ({result['compile']})"
        for variant, comparison, target in (
            ("probe", "GradientProbe (default metrics, every step) vs bare step",
             PROBE_TARGET),
            ("notebook", "notebook hooks (full backward hook + .item() per conv) vs bare step",
             None),
        ):
            if f"{variant}_ratio_median" not in result and variant not in result.get("errors", {}):
                continue  # not measured for this case (the notebook hook under torch.compile)
            if variant in result.get("errors", {}):
                status = "error" if variant == "probe" else "cannot run"
                table.append(status_row("probe overhead", case, comparison, status,
                                        result["errors"][variant], target=target))
                continue
            ratio = Ratio(result[f"{variant}_ratio_median"], result[f"{variant}_ratio_min"],
                          result[f"{variant}_ratio_max"],
                          result[f"{variant}_ms_per_step"] / 1e3,
                          result["none_ms_per_step"] / 1e3, result["rounds"])
            notes = ([f"goal {PROBE_GOAL}x"] if target is not None
                     else ["shown for comparison, no target"])
            cpu_key = f"{variant}_cpu_ratio"
            if device == "cpu" and f"{cpu_key}_median" in result:
                # Process CPU time is steadier than wall time on a shared CPU (bench_probe).
                notes.append(f"process CPU time ratio {result[f'{cpu_key}_median']:.3f}x "
                             f"({result[f'{cpu_key}_min']:.3f}-{result[f'{cpu_key}_max']:.3f})")
            details = {key: value for key, value in result.items()
                       if key.startswith((variant, "none")) or key in ("steps_per_round",
                                                                       "layers")}
            table.append(ratio_row("probe overhead", case, comparison, ratio, target=target,
                                   note="; ".join(notes), details=details))
    for width in results.get("skipped_widths", []):
        for model in PROBE_MODELS:
            table.append(status_row("probe overhead", f"{model} w{width:g}, {device}",
                                    "GradientProbe vs bare step", "skipped",
                                    "--quick: width 0.25 only", target=PROBE_TARGET))
    return table


# -- data ---------------------------------------------------------------------------------------

def run_data(options: Options) -> dict[str, Any]:
    """bench_data's measurements; --quick shrinks image counts, image size and repeats."""
    if not options.quick:
        return bench_data.run()
    return {
        "synthetic": bench_data.bench_synthetic(count=1000, repeats=1),
        "folder": bench_data.bench_folder(count=200),
        "epoch": bench_data.bench_epoch(image_size=16, repeats=1),
        "epoch_augment": bench_data.bench_epoch(image_size=16, augment=True, repeats=1),
        "fashion_mnist": None,
        "quick": True,
    }


def data_rows(results: dict[str, Any], device: str = "cpu") -> list[Row]:
    """Batches vs compute per epoch (synthetic, and an ImageFolder's first and second run)."""
    table = []
    quick = results.get("quick", False)
    on_cpu = "" if device == "cpu" else "; bench_data runs on the CPU whatever --device says"
    for key, label in (("epoch", "plain"), ("epoch_augment", "augmented")):
        epoch = results[key]
        share = 100 * epoch["data_fraction"]
        case = (f"synthetic in memory, epoch of {epoch['batches']} batches of "
                f"{epoch['batch_size']} @{epoch['image_size']}px, {label}")
        table.append(_share_row(case, share, target=DATA_TARGET, details=epoch,
                                note="best of repeats (bench_data), not interleaved" + on_cpu))
    folder, epoch = results["folder"], results["epoch"]
    # One epoch over the folder's train split at the same size and batch: the synthetic epoch's
    # per-image batch and compute seconds, scaled to the folder's train images.
    per_image_data = epoch["data_seconds"] / (epoch["batches"] * epoch["batch_size"])
    per_image_compute = epoch["compute_seconds"] / (epoch["batches"] * epoch["batch_size"])
    images = folder["train_images"]
    batches, compute = per_image_data * images, per_image_compute * images
    for run, load_key, target in (("first run (decode)", "first_load_seconds", None),
                                  ("second run (cache)", "cached_load_seconds", DATA_TARGET)):
        load = folder[load_key]
        share = 100 * (load + batches) / (load + batches + compute)
        case = (f"ImageFolder of {folder['images']} images ({folder['source_size']}px -> "
                f"{folder['image_size']}px), one epoch, {run}")
        note = ("loading the tree plus the epoch's batches, against the epoch's compute scaled "
                "per image from the synthetic epoch")
        if quick and target is not None:
            note += "; --quick: 200 images and 16px epochs, so the target is not judged"
        note += on_cpu
        table.append(_share_row(case, share, target=target, judge=not quick, note=note,
                                details={"load_seconds": load, "batch_seconds": batches,
                                         "compute_seconds": compute, **folder}))
    synthetic = results["synthetic"]
    table.append(seconds_row(
        "data", f"synthetic set: {synthetic['images']} images @{synthetic['image_size']}px",
        "generation wall time", synthetic["seconds"], note="shown for scale, no target",
        details=synthetic))
    return table


def _share_row(case: str, share: float, *, target: float | None, note: str,
               details: dict[str, Any], judge: bool = True) -> Row:
    if not math.isfinite(share):
        return status_row("data", case, "producing batches, share of the epoch", "error",
                          f"non-finite share {share}", target=target, unit="%")
    return Row("data", case, "producing batches, share of the epoch", share, share, share, "%",
               target, judged(share, target) if judge else None, "ok", note, dict(details))
