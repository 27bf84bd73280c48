"""Memory of a probe's history over many record() calls, with and without streaming to Parquet.

    PYTHONPATH=src python examples/stream_memory.py --steps 100000

A 3-layer MLP (batch 2) records the default metrics at every step; the history is flushed
every 1000 steps. Reports the growth of the process's resident anonymous memory (RssAnon: heap
and torch's tensors) and the peak of Python allocations (tracemalloc: the step/epoch lists).
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path

import torch
from torch import nn

from gradprobe import GradientProbe


def anon_rss_mib() -> float:
    """Resident anonymous memory (heap, torch tensors), now. Plain RSS also counts pages of
    mapped libraries (libtorch), which the kernel evicts and reloads under memory pressure."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def run(steps: int, stream: Path | None) -> tuple[float, float, int]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4))
    probe = GradientProbe(model, stream_to=stream)
    data = torch.randn(2, 16)
    with probe:  # warm up allocator and hooks before the baseline
        for _ in range(200):
            model(data).sum().backward()
            probe.record()
        probe.flush()
        tracemalloc.start()
        before = anon_rss_mib()
        for step in range(steps):
            model(data).sum().backward()
            probe.record()
            if step % 1000 == 999:
                probe.flush()
        probe.flush()
        grown = anon_rss_mib() - before
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        held = probe._history.held
    return grown, peak / 2**20, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--mode", choices=["memory", "stream"], required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        stream = Path(folder) / "history.parquet" if args.mode == "stream" else None
        grown, peak, held = run(args.steps, stream)
    print(f"{args.mode}: {args.steps} steps, anonymous RSS grew {grown:.1f} MiB, tracemalloc "
          f"peak {peak:.1f} MiB, rows held in memory at the end: {held}")


if __name__ == "__main__":
    main()
