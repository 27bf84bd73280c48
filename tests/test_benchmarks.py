"""The benchmark suite runs end to end in --quick mode and produces every row.

The numbers themselves are not checked (they depend on the machine); what is checked is that
every benchmark ran, that the table and the JSON agree, and that the trainer comparison is like
for like (both loops reach the same training loss from the same seed and batches).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def rows_of(rows: list[dict], benchmark: str, comparison_starts: str) -> list[dict]:
    return [row for row in rows
            if row["benchmark"] == benchmark and row["comparison"].startswith(comparison_starts)]


@pytest.mark.slow
def test_quick_suite_produces_every_row(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["benchmarks.json",
                                                                "benchmarks.md"]
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    rows = results["rows"]
    assert not [row for row in rows if row["status"] == "error"]

    # probe overhead: gradprobe and the notebook hook on both models at width 0.25 and on the
    # small transformer; gradprobe alone on the compiled transformer; width 1.0 skipped by
    # --quick; Lightning and wandb measured or "not installed".
    probe = rows_of(rows, "probe overhead", "GradientProbe")
    assert sorted((row["case"].split()[0], "torch.compile" in row["case"], row["status"])
                  for row in probe) == sorted([
        ("vgg_deep", False, "ok"), ("resnet18", False, "ok"), ("vgg_deep", False, "skipped"),
        ("resnet18", False, "skipped"), ("transformer", False, "ok"),
        ("transformer", True, "ok")])
    assert all(row["median"] > 0 and row["target"] == 1.05 for row in probe
               if row["status"] == "ok")
    assert len(rows_of(rows, "probe overhead", "notebook hooks")) == 3
    for logger in ("Lightning grad_norm", "wandb.watch"):
        logged = rows_of(rows, "probe overhead", logger)
        assert logged and all(row["status"] in ("ok", "not installed", "cannot run")
                              for row in logged)

    # trainer overhead: probe off (judged) and on, both loops computing the same thing
    trainer = rows_of(rows, "trainer overhead", "gradprobe trainer")
    assert [row["comparison"].split(",")[1].split(" vs")[0].strip() for row in trainer] == [
        "probe off", "default probe"]
    for row in trainer:
        assert row["status"] == "ok" and row["median"] > 0
        # same seed, weights, batches and order of float operations on a CPU: bitwise equal
        assert row["details"]["gradprobe_train_loss"] == row["details"]["hand_written_train_loss"]

    # diagnostic metrics: the trainer with them (default schedule, every step) against the
    # trainer without them; the probe never changes training, so the losses are equal
    diagnostics = [row for row in rows if row["benchmark"] == "diagnostic metrics"]
    assert [row["comparison"].split(" vs")[0] for row in diagnostics] == [
        "default probe (diagnostics every 10th step)", "diagnostics at every step"]
    for row in diagnostics:
        assert row["status"] == "ok" and row["median"] > 0 and row["met"] is None  # --quick
        assert row["details"]["candidate_train_loss"] == row["details"]["baseline_train_loss"]

    # data: two in-memory epochs, the ImageFolder's first and cached run, generation
    data = [row for row in rows if row["benchmark"] == "data"]
    assert len(data) == 5 and all(row["status"] == "ok" for row in data)
    assert all(0 <= row["median"] <= 100 for row in data if row["unit"] == "%")

    scan = [row for row in rows if row["benchmark"] == "scan"]
    assert len(scan) == 1 and scan[0]["status"] == "ok" and scan[0]["median"] > 0
    study = [row for row in rows if row["benchmark"] == "study"]
    assert len(study) == 1 and study[0]["status"] == "skipped"

    # the printed table is the JSON's, one line per row, with the machine in its header
    table = completed.stdout
    assert table == results["markdown"] + "\n"
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(rows) + 2  # + head
    assert f"{os.cpu_count()} cores" in table and "torch" in table
    assert results["machine"]["device"] == "cpu"

    if not torch.cuda.is_available():  # --device cuda refuses to start, naming the fix
        refused = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--device", "cuda", "--out", str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert refused.returncode == 2 and "no CUDA device" in refused.stderr
        assert "drop --device cuda" in refused.stderr


def test_probe_benchmark_measures_a_compiled_transformer() -> None:
    """One tiny interleaved run of bench_probe under torch.compile, turned into table rows."""
    from benchmarks import adapters, bench_probe

    torch._dynamo.reset()
    result = bench_probe.benchmark_model("transformer", 0.25, device=torch.device("cpu"),
                                         batch_size=2, rounds=1, steps=1, warmup=3,
                                         compile_backend="aot_eager")
    torch._dynamo.reset()
    assert result["compile"] == "aot_eager" and not result["errors"]
    assert result["layers"] == 9  # 2 x (attention, out_proj, linear1, linear2) + head
    rows = adapters.probe_rows({"results": [result]}, "cpu")
    assert [row.comparison.split()[0] for row in rows] == ["GradientProbe"]  # no notebook row
    assert "torch.compile (aot_eager)" in rows[0].case and rows[0].median > 0
