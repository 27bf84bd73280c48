"""What every benchmark of the suite shares: the suite's options and one row of its table.

A row is one comparison (a candidate against its baseline, or a wall time against its target)
with the numbers kept as numbers, so the suite can print them as Markdown and write them as
JSON from the same objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.timing import Ratio
from gradprobe.errors import InputError

Unit = Literal["x", "%", "s"]
Status = Literal["ok", "not installed", "skipped", "cannot run", "error"]


@dataclass(frozen=True)
class Options:
    """How the suite runs: sizes (`quick`), where (`device`, `amp`) and what (`study`)."""

    quick: bool = False  # fewer rounds and smaller sizes: about a minute on a 2-core CPU
    device: str = "cpu"  # cpu | cuda
    amp: bool = False  # also run the trainer rows with AMP (CUDA only)
    study: bool = False  # also time the built-in study (long)
    out: Path = Path("benchmarks/results")  # where benchmarks.json and benchmarks.md go


@dataclass(frozen=True)
class Row:
    """One line of the table.

    `median`/`low`/`high` are in `unit`: a ratio ("x", candidate / baseline), a share of an
    epoch ("%") or seconds ("s"); low/high are the min-max across interleaved rounds (equal to
    the median for a single wall-time measurement). `target` is the bound the median must stay
    under (None: shown for comparison, no target); `met` is None when not judged.
    """

    benchmark: str  # probe overhead | trainer overhead | data | scan | study
    case: str  # what was measured, e.g. "vgg_deep w0.25 32x32 cpu"
    comparison: str  # "candidate vs baseline", e.g. "gradprobe vs bare step"
    median: float | None = None
    low: float | None = None
    high: float | None = None
    unit: Unit = "x"
    target: float | None = None  # the median must be <= target
    met: bool | None = None
    status: Status = "ok"
    note: str = ""  # why a row is not judged, what was skipped, what to read into it
    details: dict[str, Any] = field(default_factory=dict)  # the raw numbers behind the row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judged(median: float, target: float | None) -> bool | None:
    """Whether `median` meets `target` (None when there is no target)."""
    return None if target is None else median <= target


def ratio_row(benchmark: str, case: str, comparison: str, ratio: Ratio, *,
              target: float | None = None, judge: bool = True, note: str = "",
              details: dict[str, Any] | None = None) -> Row:
    """A row from an interleaved `Ratio`; `judge=False` shows the target but does not judge it
    (e.g. sizes shrunk by --quick)."""
    return Row(benchmark, case, comparison, ratio.median, ratio.low, ratio.high, "x", target,
               judged(ratio.median, target) if judge else None, "ok", note,
               {**ratio.as_dict(), **(details or {})})


def seconds_row(benchmark: str, case: str, comparison: str, seconds: float, *,
                target: float | None = None, judge: bool = True, note: str = "",
                details: dict[str, Any] | None = None) -> Row:
    """A row for one wall-time measurement against a bound in seconds."""
    return Row(benchmark, case, comparison, seconds, seconds, seconds, "s", target,
               judged(seconds, target) if judge else None, "ok", note, dict(details or {}))


def status_row(benchmark: str, case: str, comparison: str, status: Status, note: str, *,
               target: float | None = None, unit: Unit = "x") -> Row:
    """A row that holds no number: not installed, skipped, or an error (with its message)."""
    return Row(benchmark, case, comparison, unit=unit, target=target, status=status, note=note)


def check_options(options: Options) -> None:
    """Refuse what this machine cannot run, before any benchmark starts."""
    if options.device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {options.device!r}.")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was asked for, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). Run the "
            "suite on a machine with an NVIDIA GPU and a CUDA build of torch, or drop --device "
            "cuda to benchmark on the CPU."
        )
    if options.amp and options.device != "cuda":
        raise InputError("--amp measures autocast + GradScaler, which gradprobe supports on "
                         "CUDA only. Add --device cuda (on a GPU machine) or drop --amp.")
