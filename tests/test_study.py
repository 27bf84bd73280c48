"""Studies: spec validation, the built-in study, executors, idempotence and crash recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gradprobe.cli import main
from gradprobe.errors import InputError
from gradprobe.study import load_spec, plan_study, run_study
from gradprobe.train.rundir import RunDirectory

SRC = Path(__file__).resolve().parents[1] / "src"
RUN_FILES = ("config.json", "status.json", "metrics.csv", "gradients.parquet", "summary.json",
             "checkpoint.pt")


def two_run_spec(**train: object) -> dict:
    """Two small runs and one experiment axis, on 16x16 synthetic images."""
    return {
        "name": "tiny",
        "data": {"image_size": 16, "images_per_class": 16},
        "train": {"epochs": 2, "batch_size": 8, **train},
        "model": {"width": 0.25},
        "runs": [{"model": "plain_stack", "options": {"depth": 3}},
                 {"model": "residual_stack", "options": {"depth": 5}}],
        "comparison": {"runs": ["plain_stack", "residual_stack"]},
    }


def run_metrics(study_dir: Path) -> dict[str, str]:
    return {run.name: pd.read_csv(run / "metrics.csv").drop(columns="seconds").to_csv()
            for run in sorted((study_dir / "runs").iterdir())}


def test_grid_expansion_names_and_dedup() -> None:
    spec = load_spec({
        "name": "grid",
        "runs": [{"model": "vgg_deep"}],
        "experiments": [
            {"name": "bn", "base": {"model": "vgg_deep"}, "axes": {"norm": ["none", "batch"]}},
            {"name": "depth", "base": {"model": "resnet"},
             "axes": {"depth": [8, 14], "residual": [False, True]}},
        ],
    })
    study = plan_study(spec, preset="smoke")
    names = [run.name for run in study.runs]
    # bn.norm=none is exactly the vgg_deep run: trained once, shared by both groups.
    assert names == ["vgg_deep", "bn.norm=batch", "depth.depth=8,residual=false",
                     "depth.depth=8,residual=true", "depth.depth=14,residual=false",
                     "depth.depth=14,residual=true"]
    assert study.experiments[0]["runs"] == ["vgg_deep", "bn.norm=batch"]
    assert study.experiments[0]["labels"]["vgg_deep"] == "norm=none"
    models = {run.name: run.config.model.name for run in study.runs}
    assert models["depth.depth=8,residual=false"] == "plain"
    assert models["depth.depth=8,residual=true"] == "resnet"
    smoke = next(run for run in study.runs if run.name == "vgg_deep").config
    assert smoke.train.epochs == 2 and smoke.model.width == 0.125  # the preset, under the spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "runs": [{"model": "vgg16", "colour": "red"}]},
         "runs[0].colour: unknown key"),
        ({"name": "x", "runs": [{"model": "vgg99"}]}, "runs[0].model: unknown model 'vgg99'"),
        ({"name": "x", "experiments": [{"name": "e", "base": {"model": "vgg16"},
                                        "axes": {"norm": ["none", "group"]}}]},
         "norm"),
        ({"name": "x", "experiments": [{"name": "e", "base": {"model": "vgg16"},
                                        "axes": {"colour": ["red"]}}]},
         "unknown axis 'colour'; allowed axes:"),
        ({"name": "x", "experiments": [{"name": "e", "base": {"model": "vgg16"},
                                        "axes": {"residual": [True, False]}}]},
         "needs a model with a plain twin"),
        ({"name": "x", "train": {"optimizer": "lion"}, "runs": [{"model": "vgg16"}]},
         "'sgd', 'adam' or 'adamw'"),
    ],
)
def test_spec_errors_name_the_key_and_the_allowed_values(spec: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        plan_study(load_spec(spec), preset="smoke")
    assert message in str(error.value)
    if "group" in json.dumps(spec):
        assert "'none' or 'batch'" in str(error.value)


def test_spec_error_from_the_cli_exits_2(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "runs": [{"model": "vgg16", "lr": 0.1}]}))
    assert main(["study", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "runs[0].lr: unknown key" in capsys.readouterr().err
    assert main(["study", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_builtin_study_smoke_end_to_end(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    assert main(["study", "--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "preset smoke, dataset synthetic" in printed.err
    assert "report:" in printed.out
    resolved = yaml.safe_load((out / "study.yaml").read_text())
    assert resolved["comparison"]["runs"] == ["vgg_deep", "vgg16", "resnet18"]
    assert len(resolved["experiments"]) == 3
    for run in resolved["runs"]:
        run_dir = out / "runs" / run["name"]
        for name in RUN_FILES:
            assert (run_dir / name).exists(), f"{run_dir}/{name}"
        state = json.loads((run_dir / "status.json").read_text())["state"]
        assert state in ("completed", "diverged"), run["name"]
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "report.md").exists()
    assert list((out / "figures").glob("*.png"))


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_locked_runs_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "study"
    run_study(two_run_spec(), out, preset="smoke", write_report=False)
    first = (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns
    lock = RunDirectory(out / "runs" / "residual_stack").lock()
    try:
        result = run_study(two_run_spec(), out, preset="smoke", write_report=False)
    finally:
        lock.release()
    outcomes = {outcome.name: outcome for outcome in result.outcomes}
    assert outcomes["plain_stack"].skipped
    assert outcomes["residual_stack"].state == "busy"
    assert (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns == first


@pytest.mark.slow
def test_jobs_2_gives_the_same_metrics_as_local(tmp_path: Path) -> None:
    run_study(two_run_spec(), tmp_path / "local", preset="smoke", write_report=False)
    run_study(two_run_spec(), tmp_path / "pool", preset="smoke", jobs=2, write_report=False)
    assert run_metrics(tmp_path / "pool") == run_metrics(tmp_path / "local")


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_gives_the_same_metrics_as_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional extra gradprobe[ray]")
    run_study(two_run_spec(), tmp_path / "local", preset="smoke", write_report=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(SRC)}})
    try:
        result = run_study(two_run_spec(), tmp_path / "ray", preset="smoke", executor="ray",
                           write_report=False)
    finally:
        ray.shutdown()
    assert [outcome.state for outcome in result.outcomes] == ["completed", "completed"]
    assert run_metrics(tmp_path / "ray") == run_metrics(tmp_path / "local")


@pytest.mark.slow
def test_sigkilled_study_resumes_without_retraining(tmp_path: Path) -> None:
    """Run 1 has 3 steps, run 2 has 9: a crash after step 5 can only hit run 2, mid-way."""
    spec = two_run_spec()
    spec["runs"][0]["train"] = {"max_steps_per_epoch": 1}
    spec["runs"].append({"name": "third", "model": "plain_stack", "options": {"depth": 2}})
    spec["train"]["epochs"] = 3
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "gradprobe", "study", str(spec_file), "--preset", "smoke",
               "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    reference = subprocess.run([*command, "--out", str(tmp_path / "reference")], env=env,
                               capture_output=True, text=True, timeout=300, check=False)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "study"
    crashed = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True,
                             env={**env, "GRADPROBE_CRASH_AFTER_STEP": "5"}, timeout=300,
                             check=False)
    assert crashed.returncode == -9, crashed.stderr
    states = {run.name: json.loads((run / "status.json").read_text())["state"]
              for run in (out / "runs").iterdir() if (run / "status.json").exists()}
    assert states == {"plain_stack": "completed", "residual_stack": "running"}
    finished_first = (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns
    again = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns == finished_first
    assert run_metrics(out) == run_metrics(tmp_path / "reference")
    assert (out / "report.html").exists()


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    spec = two_run_spec()
    spec["runs"][0] = {"name": "broken", "model": "vgg16", "options": {"depth": 20}}
    spec["comparison"]["runs"] = ["broken", "residual_stack"]
    result = run_study(spec, tmp_path / "study", preset="smoke")
    assert [outcome.state for outcome in result.outcomes] == ["failed", "completed"]
    status = json.loads((tmp_path / "study" / "runs" / "broken" / "status.json").read_text())
    assert status["state"] == "failed"
    assert "has no depth option" in status["message"]
    assert "Traceback" in status["traceback"]
    assert "broken" in (tmp_path / "study" / "report.md").read_text()
