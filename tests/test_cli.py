"""The command line: listings, summaries, version, exit codes."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe import __version__
from gradprobe.cli import build_parser, main, run_config
from gradprobe.config import (
    DataConfig,
    ExecutionConfig,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
)
from gradprobe.metrics import gradient_size_metrics

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


@pytest.mark.timeout(60)
def test_models_listing_counts_any_width_without_allocating(
        capsys: pytest.CaptureFixture[str]) -> None:
    # width 64 would be ~64^2 x 15M parameters for vgg16: counted on the meta device, not built
    assert main(["models", "--width", "64"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert int(lines["vgg16"].replace(",", "")) > 4_000 * 14_714_688


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


def test_version_is_the_installed_package_metadata() -> None:
    """Declared once, in pyproject.toml."""
    assert __version__ == importlib.metadata.version("gradprobe")


def test_train_flags_default_to_the_config_models() -> None:
    args = build_parser().parse_args(["train", "--model", "mlp", "--out", "r"])
    assert run_config(args) == RunConfig(model=ModelConfig(name="mlp"))


def test_every_config_field_has_a_train_flag_that_sets_it() -> None:
    argv = ["train", "--model", "plain", "--out", "r", "--depth", "8", "--width", "0.5",
            "--norm", "batch", "--activation", "tanh", "--init", "xavier", "--stem", "imagenet",
            "--residual", "true",
            "--dataset", "fashion-mnist", "--image-size", "28", "--split", "0.8", "0.1", "0.1",
            "--data-seed", "3", "--images-per-class", "10", "--num-classes", "4",
            "--max-train-images", "50", "--max-images", "60", "--data-root", "/d", "--download",
            "--augment",
            "--epochs", "2", "--batch-size", "8", "--lr", "0.1", "--momentum", "0.9",
            "--weight-decay", "0.001", "--optimizer", "adam", "--scheduler", "cosine",
            "--step-size", "2", "--gamma", "0.1", "--seed", "5", "--device", "cpu",
            "--threads", "2", "--amp", "--tensorboard", "--max-steps-per-epoch", "3",
            "--warmup-epochs", "1.5", "--grad-clip", "1.0",
            "--checkpoint-every", "4", "--metrics", "update_ratio", "dead_fraction",
            "--every", "2", "--diagnostic-every", "3"]
    config = run_config(build_parser().parse_args(argv))
    for section, model in (("model", ModelConfig), ("data", DataConfig),
                           ("train", TrainConfig), ("probe", ProbeConfig)):
        values = getattr(config, section)
        unchanged = [name for name, info in model.model_fields.items()
                     if not info.is_required() and getattr(values, name) == info.default]
        assert unchanged == [], f"{section} flags that did not set their field: {unchanged}"
    assert config.data.seed == 3 and config.train.seed == 5
    assert config.data.split == (0.8, 0.1, 0.1)
    assert config.probe.metrics == ("update_ratio", "dead_fraction")


def test_study_execution_flags_default_to_the_execution_config() -> None:
    args = vars(build_parser().parse_args(["study"]))
    assert {key for key in args if key.startswith("execution.")} == set()  # unset: model defaults
    args = vars(build_parser().parse_args(["study", "--jobs", "3", "--executor", "ray"]))
    assert ExecutionConfig(jobs=args["execution.jobs"], executor=args["execution.executor"]) \
        == ExecutionConfig(jobs=3, executor="ray")


def test_report_metric_choices_are_the_catalog_gradient_size_metrics() -> None:
    assert "update_ratio" in gradient_size_metrics()
    for metric in gradient_size_metrics():
        assert build_parser().parse_args(["report", "d", "--metric", metric]).metric == metric


def test_an_invalid_option_names_its_flag_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--out", str(out), "--image-size", "4"]) == 2
    assert "--image-size: Input should be greater than or equal to 8" in capsys.readouterr().err
    assert not out.exists()
