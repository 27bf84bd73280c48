"""Scan: wall time of the at-initialisation scan over 4 architectures x depths {8, 16, 32, 64}.

`gradprobe scan` answers "do gradients vanish here?" before any training, so it must answer in
seconds: the target is 60 s on a 2-core CPU for the default scan (4 architectures, depths 8 to
64, 3 seeds). The time is the wall time of `run_scan`, writing its files and plots included, as
a user of `gradprobe scan` waits for it (the process start-up and imports excluded). There is no
baseline to interleave with: the figure is seconds against the target.

Run alone: `python -m benchmarks.bench_scan [--quick]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Options, Row, seconds_row
from gradprobe.scan import ScanConfig, run_scan

TARGET_SECONDS = 60.0
FULL_DEPTHS = (8, 16, 32, 64)
QUICK_DEPTHS = (8, 16)


def run(options: Options) -> dict[str, Any]:
    """Time one default scan in a temporary directory (--quick: depths {8, 16}, one seed)."""
    config = (ScanConfig(depths=QUICK_DEPTHS, seeds=1) if options.quick
              else ScanConfig(depths=FULL_DEPTHS))
    with tempfile.TemporaryDirectory(prefix="gradprobe-bench-scan-") as scratch:
        started = time.perf_counter()
        result = run_scan(config, Path(scratch))
        seconds = time.perf_counter() - started
    return {"architectures": list(config.architectures), "depths": list(config.depths),
            "seeds": config.seeds, "configurations": len(result.summary), "seconds": seconds,
            "measure_seconds": result.seconds, "quick": options.quick,
            "device": options.device}


def rows(results: dict[str, Any]) -> list[Row]:
    depths = ", ".join(str(depth) for depth in results["depths"])
    seeds = results["seeds"]
    case = (f"{len(results['architectures'])} architectures x depths {{{depths}}} x "
            f"{seeds} seed{'s' if seeds != 1 else ''}")
    notes = []
    if results["quick"]:
        notes.append("--quick: depths {8, 16} and one seed only, so the 60 s target (the "
                     "default scan) is not judged")
    if results["device"] != "cpu":
        notes.append("the scan runs on the CPU whatever --device says (ScanConfig has no device)")
    return [seconds_row("scan", case, "gradprobe scan wall time", results["seconds"],
                        target=TARGET_SECONDS, judge=not results["quick"], note="; ".join(notes),
                        details=results)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    row = rows(run(Options(quick=args.quick)))[0]
    print(f"{row.case}: {row.median:.1f} s (target <= {TARGET_SECONDS:.0f} s) {row.note}")


if __name__ == "__main__":
    main()
