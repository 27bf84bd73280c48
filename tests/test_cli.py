"""The command line: listings, summaries, version, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe import __version__
from gradprobe.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
ZOO = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg_deep", "resnet18", "resnet34", "plain18",
       "plain34", "mlp")


def test_models_lists_the_zoo_with_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--num-classes", "1000"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(ZOO) <= set(lines)
    # The default cifar stem swaps torchvision's 7x7 stem conv (9,408 weights) for a 3x3 (1,728).
    assert lines["resnet18"] == f"{11_689_512 - 9_408 + 1_728:,}"
    assert int(lines["vgg16"].replace(",", "")) > 14_714_688  # the conv stack plus the head


def test_models_name_prints_the_layer_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "vgg16", "--width", "0.25", "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "Total params" in out and "features.0" in out


def test_datasets_lists_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for kind in ("synthetic", "fashion-mnist", "cifar10"):
        assert kind in out


def test_version_through_python_dash_m() -> None:
    result = subprocess.run([sys.executable, "-m", "gradprobe", "--version"], check=False,
                            capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert result.returncode == 0
    assert result.stdout.strip() == f"gradprobe {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "vgg99"], "unknown model 'vgg99'"),
        (["models", "vgg16", "--depth", "20"], "has no depth option"),
        (["train", "--model", "vgg11", "--dataset", "/no/such/dir", "--out", "{tmp}/r"],
         "/no/such/dir"),
        (["report", "{tmp}"], "not a study directory"),
        (["study", "no-such-study", "--out", "{tmp}/s"], "no-such-study"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
