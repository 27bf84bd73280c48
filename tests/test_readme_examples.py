"""The README's integration examples run as written, so they cannot rot.

Each test takes the fenced code blocks under one README heading and runs them in a fresh
process: Python blocks from a temporary directory (they write under `runs/` there), shell blocks
from the repository root, skipping `pip install` lines (`make test` installs every extra).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks_under(heading: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README section titled `heading`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text,
                      re.MULTILINE | re.DOTALL)
    assert match is not None, f"README.md has no section '## {heading}'"
    return FENCE.findall(match.group(1))


def environment() -> dict[str, str]:
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HF_HUB_OFFLINE": "1",  # the examples must not download anything
    }


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_python_blocks(heading: str, tmp_path: Path) -> str:
    blocks = [code for language, code in blocks_under(heading) if language == "python"]
    assert blocks, f"no python block under '## {heading}'"
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    return run([sys.executable, str(script)], cwd=tmp_path)


@pytest.mark.slow
def test_lightning_example(tmp_path):
    printed = run_python_blocks("With Lightning", tmp_path)
    assert "net.0" in printed and "net.4" in printed
    assert (tmp_path / "runs" / "lightning" / "gradients.parquet").is_file()
    logged = (tmp_path / "runs" / "lightning").rglob("metrics.csv")
    assert any("gradprobe/weight_grad_norm/net.0" in path.read_text() for path in logged)


@pytest.mark.slow
def test_hugging_face_example(tmp_path):
    printed = run_python_blocks("With the Hugging Face Trainer", tmp_path)
    assert "bert.encoder.layer.0.attention.self.query" in printed
    assert (tmp_path / "runs" / "hf" / "gradients.parquet").is_file()


@pytest.mark.slow
def test_analysis_from_a_probe_example(tmp_path):
    printed = run_python_blocks("Analysis straight from a probe", tmp_path)
    assert "first-to-last ratio at epoch 1:" in printed
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert (tmp_path / "profile.png").stat().st_size > 0


@pytest.mark.slow
def test_streaming_example(tmp_path):
    printed = run_python_blocks("Long runs: stream the history to disk", tmp_path)
    assert printed.strip() == "2500 steps on disk"
    assert not (tmp_path / "history.parquet.parts").exists()


def test_notebook_example():
    # The command names the notebook tests/test_notebook.py executes (once, there: ~25 s).
    blocks = [code for language, code in blocks_under("In a notebook") if language == "bash"]
    assert blocks, "no bash block under '## In a notebook'"
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [command for command in commands if command and not command.startswith("pip ")]
    assert commands == ["jupyter execute examples/vanishing_gradients.ipynb"]
    assert (ROOT / "examples" / "vanishing_gradients.ipynb").is_file()
