"""The suite's output: the machine it ran on, one Markdown table, and the same as JSON.

Rows keep numbers as numbers (benchmarks.common.Row); this module only formats them. Notes
(why a row is not judged, what was skipped, what an error said) go under the table as numbered
footnotes, so the table keeps the issue's six columns.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import gradprobe
from benchmarks.common import Options, Row
from gradprobe.util.atomic import write_json_atomic, write_text_atomic

COLUMNS = ("benchmark", "case", "candidate vs baseline", "ratio median (min-max)", "target",
           "met?")
REPO = Path(__file__).resolve().parents[1]


def describe_machine(options: Options) -> dict[str, Any]:
    """Cores, CPU model, torch, device, load and date: what a reader needs to weigh the numbers."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = "cpu"
    if options.device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "device": device,
        "amp": options.amp,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gradprobe": gradprobe.__version__,
        "git_commit": _git_commit(),
        "load_average_at_start": list(load) if load is not None else None,
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                   capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def busy_warning(machine: dict[str, Any]) -> str | None:
    """A warning when other work was already loading the machine: ratios get noisy."""
    load, cores = machine.get("load_average_at_start"), machine.get("cores") or 1
    if load is None or load[0] <= 0.5 * cores:
        return None
    return (f"the machine was busy when the suite started (1-minute load {load[0]:.1f} on "
            f"{cores} cores): absolute seconds are inflated and ratios noisier than on an "
            "idle machine")


def format_value(row: Row) -> str:
    if row.status != "ok" or row.median is None:
        return row.status
    if row.unit == "x":
        return f"{row.median:.3f}x ({row.low:.3f}-{row.high:.3f})"
    if row.unit == "%":
        return f"{row.median:.1f}% ({row.low:.1f}-{row.high:.1f})"
    if row.low == row.high:
        return f"{row.median:.1f} s"
    return f"{row.median:.1f} s ({row.low:.1f}-{row.high:.1f})"


def format_target(row: Row) -> str:
    if row.target is None:
        return "-"
    if row.unit == "x":
        return f"<= {row.target:.2f}x"
    if row.unit == "%":
        return f"<= {row.target:g}%"
    return f"<= {row.target:g} s"


def format_met(row: Row) -> str:
    if row.status != "ok":
        return row.status
    if row.met is None:
        return "-"
    return "yes" if row.met else "**no**"


def markdown(rows: list[Row], machine: dict[str, Any], command: str) -> str:
    """The header (date, command, machine) and the table, with notes as footnotes."""
    lines = [
        "## gradprobe benchmarks",
        "",
        f"- date: {machine['date']}; command: `{command}`",
        f"- machine: {machine['cores']} cores ({machine['cpu_model'] or 'CPU model unknown'}), "
        f"torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"device {machine['device']}{', AMP rows included' if machine['amp'] else ''}, "
        f"Python {machine['python']}, gradprobe {machine['gradprobe']}"
        f"{' @ ' + machine['git_commit'] if machine['git_commit'] else ''}",
        "- every ratio is candidate / baseline time, measured in one process in interleaved "
        "rounds (A B A B ...): median (min-max) across rounds",
    ]
    warning = busy_warning(machine)
    if warning:
        lines.append(f"- **noisy**: {warning}")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    notes: list[str] = []
    for row in rows:
        case = row.case
        if row.note:
            notes.append(row.note)
            case = f"{case} [{len(notes)}]"
        cells = (row.benchmark, case, row.comparison, format_value(row), format_target(row),
                 format_met(row))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    if notes:
        lines.append("")
        lines += [f"[{number}] {_cell(note)}  " for number, note in enumerate(notes, start=1)]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    # A pipe or a newline would break the Markdown table.
    return " ".join(text.split()).replace("|", "\\|")


def write_results(out: Path, rows: list[Row], machine: dict[str, Any], command: str,
                  options: Options, table: str) -> Path:
    """benchmarks.json (everything, numbers as numbers) and benchmarks.md, both atomically."""
    data = {
        "command": command,
        "machine": machine,
        "options": {"quick": options.quick, "device": options.device, "amp": options.amp,
                    "study": options.study},
        "rows": [row.as_dict() for row in rows],
        "markdown": table,
    }
    path = out / "benchmarks.json"
    write_json_atomic(path, data)
    write_text_atomic(out / "benchmarks.md", table)
    return path
