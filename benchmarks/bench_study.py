"""Study: wall time of `gradprobe study` (the built-in study, quick preset) in a fresh directory.

The built-in study is the assignment end to end; with the `quick` preset it must finish in
8 minutes on a 2-core CPU. It runs as the user runs it, a `python -m gradprobe study` process
(start-up, data, every run, the report), timed from outside. With the suite's --quick the
`smoke` preset runs instead, to check the path in seconds; its time is not judged.

Run alone: `python -m benchmarks.bench_study [--quick] [--device cuda]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Options, Row, check_options, seconds_row, status_row

TARGET_SECONDS = 480.0
TIMEOUT_SECONDS = 3 * TARGET_SECONDS  # a study this late is a miss worth stopping


def run(options: Options) -> dict[str, Any]:
    """Run the built-in study once in a temporary directory; its seconds and exit status."""
    preset = "smoke" if options.quick else "quick"
    env = dict(os.environ)
    if options.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the study picks CUDA when it sees one
    with tempfile.TemporaryDirectory(prefix="gradprobe-bench-study-") as scratch:
        command = [sys.executable, "-m", "gradprobe", "study", "--out",
                   str(Path(scratch) / "study"), "--preset", preset, "--quiet"]
        started = time.perf_counter()
        try:
            completed = subprocess.run(command, env=env, capture_output=True, text=True,
                                       timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            return {"preset": preset, "device": options.device, "returncode": None,
                    "seconds": time.perf_counter() - started, "output_tail": "timed out"}
        seconds = time.perf_counter() - started
    tail = (completed.stdout + completed.stderr)[-2000:]
    return {"preset": preset, "device": options.device, "returncode": completed.returncode,
            "seconds": seconds, "output_tail": tail}


def rows(results: dict[str, Any]) -> list[Row]:
    case = f"built-in study, {results['preset']} preset, {results['device']}"
    comparison = "gradprobe study wall time"
    if results["returncode"] != 0:
        problem = (f"timed out after {results['seconds']:.0f} s"
                   if results["returncode"] is None
                   else f"exit code {results['returncode']}: {results['output_tail'][-400:]}")
        return [status_row("study", case, comparison, "error", problem, target=TARGET_SECONDS,
                           unit="s")]
    quick = results["preset"] != "quick"
    note = "--quick: smoke preset, the 480 s target (quick preset) is not judged" if quick else ""
    return [seconds_row("study", case, comparison, results["seconds"], target=TARGET_SECONDS,
                        judge=not quick, note=note, details=results)]


def skipped_rows() -> list[Row]:
    """The row printed when the suite runs without --study."""
    return [status_row("study", "built-in study, quick preset", "gradprobe study wall time",
                       "skipped", "long: pass --study to run it", target=TARGET_SECONDS,
                       unit="s")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, device=args.device, study=True)
    check_options(options)
    row = rows(run(options))[0]
    shown = f"{row.median:.1f} s" if row.median is not None else row.status
    print(f"{row.case}: {shown} (target <= {TARGET_SECONDS:.0f} s) {row.note}")


if __name__ == "__main__":
    main()
