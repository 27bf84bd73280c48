"""`python -m benchmarks`: every benchmark of gradprobe against its baseline, in one table.

    python -m benchmarks                  # about 10 minutes on a 2-core CPU
    python -m benchmarks --quick          # about a minute: fewer rounds, smaller sizes, every row
    python -m benchmarks --study          # also the built-in study's wall time (8 more minutes)
    python -m benchmarks --device cuda --amp   # the same suite on a GPU, AMP rows included

Prints the machine and one Markdown table to stdout (progress goes to stderr) and writes the
same to OUT/benchmarks.json and OUT/benchmarks.md (default benchmarks/results/, gitignored).
A benchmark that fails becomes an `error` row and the exit code is 1; a missed target is a
result, not a failure. Bad options exit with code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import adapters, bench_loggers, bench_scan, bench_study, bench_trainer
from benchmarks.common import Options, Row, check_options, status_row
from benchmarks.report import describe_machine, markdown, write_results
from gradprobe.errors import InputError

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _probe(options: Options) -> list[Row]:
    return adapters.probe_rows(adapters.run_probe(options), options.device)


def _loggers(options: Options) -> list[Row]:
    return bench_loggers.rows(bench_loggers.run(options))


def _trainer(options: Options) -> list[Row]:
    return bench_trainer.rows(bench_trainer.run(options))


def _data(options: Options) -> list[Row]:
    return adapters.data_rows(adapters.run_data(options), options.device)


def _scan(options: Options) -> list[Row]:
    return bench_scan.rows(bench_scan.run(options))


def _study(options: Options) -> list[Row]:
    if not options.study:
        return bench_study.skipped_rows()
    return bench_study.rows(bench_study.run(options))


# name -> (the table's benchmark column, the function that measures it), in table order
SECTIONS: dict[str, tuple[str, Callable[[Options], list[Row]]]] = {
    "probe": ("probe overhead", _probe),
    "loggers": ("probe overhead", _loggers),
    "trainer": ("trainer overhead", _trainer),
    "data": ("data", _data),
    "scan": ("scan", _scan),
    "study": ("study", _study),
}


def run_suite(options: Options, only: Sequence[str] | None = None) -> list[Row]:
    """Every section in order; one that raises becomes an error row and the rest still run."""
    rows: list[Row] = []
    for name, (benchmark, measure) in SECTIONS.items():
        if only and name not in only:
            continue
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            rows += measure(options)
        except Exception as error:  # reported in the table; the other sections still run
            traceback.print_exc(file=sys.stderr)
            rows.append(status_row(benchmark, name, "-", "error",
                                   f"{type(error).__name__}: {error}"))
        print(f"[benchmarks] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr,
              flush=True)
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="gradprobe against its baselines, one table.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and smaller sizes (about a minute); still every row")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the probe and trainer benchmarks run (default cpu)")
    parser.add_argument("--amp", action="store_true",
                        help="also run the trainer rows with AMP (autocast + GradScaler; CUDA)")
    parser.add_argument("--study", action="store_true",
                        help="also time the built-in study, quick preset (about 8 minutes)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where benchmarks.json and benchmarks.md go "
                             "(default benchmarks/results)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=None,
                        help="run only these sections (the table then has only their rows)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(quick=args.quick, device=args.device, amp=args.amp, study=args.study,
                      out=args.out)
    try:
        check_options(options)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks",
                          *(sys.argv[1:] if argv is None else argv)])
    machine = describe_machine(options)
    rows = run_suite(options, args.only)
    table = markdown(rows, machine, command)
    path = write_results(options.out, rows, machine, command, options, table)
    print(table)
    print(f"written: {path}", file=sys.stderr)
    return 1 if any(row.status == "error" for row in rows) else 0
