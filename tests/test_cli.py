"""The command line: listings, summaries, version, exit codes."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe import __version__, cli
from gradprobe.cli import build_parser, main, run_config
from gradprobe.config import (
    DataConfig,
    ExecutionConfig,
    ModelConfig,
    ProbeConfig,
    TrainConfig,
)
from gradprobe.metrics import gradient_size_metrics
from gradprobe.models import family_default
from gradprobe.study import load_spec, plan_study
from gradprobe.study import presets as study_presets

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


@pytest.mark.parametrize("preset", ["smoke", "quick", "full"])
def test_train_defaults_are_what_study_trains_with_the_same_preset(preset: str) -> None:
    args = build_parser().parse_args(["train", "--model", "mlp", "--out", "r",
                                      "--preset", preset])
    spec = load_spec({"name": "one", "seeds": [0], "runs": [{"model": "mlp"}]})
    studied = plan_study(spec, preset=preset).runs[0].config
    trained = run_config(args)
    # the study writes the family's norm explicitly; train leaves it to the family
    assert trained.model_copy(update={"model": trained.model.model_copy(
        update={"norm": family_default("mlp", "norm")})}) == studied


def test_train_of_a_zoo_model_is_the_builtin_studys_seed_0_run() -> None:
    """What the README promises: `train --model vgg_deep` trains the study's `vgg_deep,seed=0`."""
    from gradprobe.study.runner import load_builtin

    studied = {run.name: run.config for run in plan_study(load_builtin("vanishing-gradients"),
                                                           preset="quick").runs}
    args = build_parser().parse_args(["train", "--model", "vgg_deep", "--out", "r",
                                      "--preset", "quick"])
    trained = run_config(args)
    assert trained.model_copy(update={"model": trained.model.model_copy(
        update={"norm": family_default("vgg_deep", "norm")})}) == studied["vgg_deep,seed=0"]


def test_train_without_preset_uses_the_study_default(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["train", "--model", "mlp", "--out", "r"])
    for preset in ("quick", "full"):
        monkeypatch.setattr(cli, "default_preset", lambda preset=preset: preset)
        explicit = build_parser().parse_args(["train", "--model", "mlp", "--out", "r",
                                              "--preset", preset])
        assert run_config(args) == run_config(explicit)


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


# -- the CLI's small lies (issue 21, item 9) ---------------------------------------------------


def test_a_mistyped_flag_gets_the_subcommands_usage_and_the_closest_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["train", "--model", "mlp", "--out", "r", "--widht", "2"])
    err = capsys.readouterr().err
    assert err.startswith("usage: gradprobe train ")
    assert "unrecognized arguments: --widht 2 (did you mean --width?)" in err


def test_report_metric_error_lists_exactly_the_metrics_it_accepts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["report", "d", "--metric", "bogus"])
    listed = re.findall(r"'(\w+)'", capsys.readouterr().err.split("choose from")[1])
    assert listed == list(gradient_size_metrics())
    for metric in listed:
        assert build_parser().parse_args(["report", "d", "--metric", metric]).metric == metric
    assert "weight_distance" not in listed  # once per epoch, not a gradient size: refused


def test_a_closed_output_pipe_ends_quietly() -> None:
    result = subprocess.run(f"{sys.executable} -m gradprobe models | head -1", shell=True,
                            capture_output=True, text=True, check=False, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(SRC)})
    assert result.stdout.startswith("model")
    assert result.stderr == ""


def test_an_unwritable_study_out_is_refused_before_the_plan_names_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--preset", "smoke", "--out", "/proc/nope"]) == 2
    err = capsys.readouterr().err
    assert "/proc/nope cannot be written" in err
    assert "report will be written" not in err


def test_every_option_of_scan_is_described() -> None:
    scan = cli._subparsers(build_parser())["scan"]
    for action in scan._actions:
        assert action.help, action.option_strings


def test_no_docstring_points_to_files_a_clone_lacks() -> None:
    for path in (SRC / "gradprobe").rglob("*.py"):
        if "analysis" in path.parts:  # analysis/text.py is being rewritten (report helper)
            continue
        text = path.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text and "REFERENCES.md" not in text, path


# -- every --help default is the default it claims ---------------------------------------------

_DEFAULT = re.compile(r"\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)")
_PER_PRESET = re.compile(r"\(default per --preset: ([^)]*)\)")


def _typed(value: object) -> str:
    """A value as the help should show it (written here independently of the CLI)."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(item) for item in value)
    return "none" if value is None else str(value)


def _stated(help_text: str) -> dict[str, str] | str | None:
    """The default a help text states: per preset, one value, or None when it states none."""
    text = " ".join(help_text.split())
    per_preset = _PER_PRESET.search(text)
    if per_preset:
        return dict(item.split(" ", 1) for item in per_preset.group(1).split(", "))
    plain = _DEFAULT.findall(text)
    return plain[0] if plain else None


def _config_flags(command: str) -> list[argparse.Action]:
    parser = cli._subparsers(build_parser())[command]
    return [action for action in parser._actions if "." in (action.dest or "")]


@pytest.mark.parametrize("preset", ["smoke", "quick", "full"])
def test_every_train_help_default_is_the_value_train_uses(preset: str) -> None:
    config = run_config(build_parser().parse_args(["train", "--model", "mlp", "--out", "r",
                                                   "--preset", preset]))
    for action in _config_flags("train"):
        section, name = action.dest.split(".")
        if (section, name) == ("model", "name"):
            continue
        value = getattr(getattr(config, section), name)
        stated = _stated(action.help)
        flag = action.option_strings[0]
        if isinstance(stated, dict):
            assert stated[preset] == _typed(value), flag
        else:
            _assert_states(stated, value, flag)


def _assert_states(stated: str | None, value: object, flag: str) -> None:
    """`stated` (a help's default) is `value`; a help that states nothing is an off field. An
    unset field (None) is described in words ("the family's", "start a local Ray")."""
    if value is None:
        assert stated != "none", flag
    elif stated is not None:
        assert stated == _typed(value), flag
    else:
        assert value is False, flag


def test_every_other_help_default_is_the_value_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradprobe.config import ZooConfig
    from gradprobe.scan import ScanConfig, TheoryConfig

    configs = {"models": {"model": ModelConfig(name="x"), "zoo": ZooConfig()},
               "study": {"execution": ExecutionConfig()}}
    for command, sections in configs.items():
        for action in _config_flags(command):
            section, name = action.dest.split(".")
            stated, value = _stated(action.help), getattr(sections[section], name)
            if (command, name) == ("study", "jobs"):  # chosen by the CLI, per preset
                continue
            _assert_states(stated, value, action.option_strings[0])
    # study --jobs: one per core with quick (local), else 1, as its help says
    stated = _stated(next(a for a in _config_flags("study") if a.dest == "execution.jobs").help)
    assert f"one per CPU core ({os.cpu_count()} here) with --preset quick" in stated
    assert study_presets.default_jobs("quick") == os.cpu_count()
    assert study_presets.default_jobs("full") == study_presets.default_jobs("smoke") == 1
    # plain flags: their argparse default is the one stated
    for command in ("study", "report", "scan"):
        parser = cli._subparsers(build_parser())[command]
        for action in parser._actions:
            if action.default in (None, False, argparse.SUPPRESS) or "." in action.dest:
                continue
            assert _stated(action.help) == _typed(action.default), action.option_strings
    # scan: the flags' defaults are ScanConfig's, and with --theory TheoryConfig's
    scan = {action.dest: " ".join(action.help.split())
            for action in cli._subparsers(build_parser())["scan"]._actions}
    for dest, field in (("architectures", "architectures"), ("depths", "depths"),
                        ("activations", "activations"), ("inits", "inits"), ("seeds", "seeds")):
        assert _DEFAULT.findall(scan[dest])[0] == _typed(getattr(ScanConfig(), field)), dest
    for dest, field in (("architectures", "models"), ("activations", "activations"),
                        ("inits", "inits")):
        assert _DEFAULT.findall(scan[dest])[1] == _typed(getattr(TheoryConfig(), field)), dest


def test_the_hint_for_a_finished_run_names_a_flag_study_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: one\ndata: {image_size: 16, images_per_class: 16}\n"
                    "train: {epochs: 1, batch_size: 8}\nmodel: {width: 0.25}\n"
                    "runs: [{model: plain_stack, options: {depth: 3}}]\n", encoding="utf-8")
    out = tmp_path / "study"
    args = ["study", str(spec), "--preset", "smoke", "--out", str(out), "--jobs", "1"]
    assert main(args) == 0
    metrics = out / "runs" / "plain_stack" / "metrics.csv"
    before = metrics.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "already completed, left as it is (use --force to train it again)" in \
        capsys.readouterr().err
    assert metrics.stat().st_mtime_ns == before
    assert main([*args, "--force"]) == 0  # the flag the hint names: it trains the run again
    assert metrics.stat().st_mtime_ns != before
    assert "training plain_stack" in capsys.readouterr().err
