"""Studies: spec validation, the built-in study, executors, idempotence and crash recovery."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gradprobe.cli import main
from gradprobe.errors import InputError
from gradprobe.progress import NullProgress
from gradprobe.record import RunState
from gradprobe.study import executors as study_executors
from gradprobe.study import load_spec, plan_study, run_study
from gradprobe.study import runner as study_runner
from gradprobe.train import loop as train_loop
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


def run_gradients(study_dir: Path) -> dict[str, pd.DataFrame]:
    return {run.name: pd.read_parquet(run / "gradients.parquet")
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
    with pytest.raises(InputError, match=re.escape(message)):
        plan_study(load_spec(spec), preset="smoke")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"train": {"optimiser": "adam"}}, "train.optimiser: unknown key"),
        ({"train": {"optimizer": "lion"}}, "train.optimizer: Input should be 'sgd', 'adam'"),
        ({"data": {"image_size": 4}}, "data.image_size: Input should be greater than or equal"),
        ({"model": {"norm": "group"}}, "model.norm: Input should be 'none' or 'batch'"),
        ({"probe": {"every": 0}}, "probe.every: Input should be greater than or equal to 1"),
        ({"probe": {"metrics": ["weight_grad_nrom"]}},
         "probe.metrics: Value error, unknown metric(s) weight_grad_nrom; known metrics:"),
    ],
)
def test_a_bad_shared_section_is_reported_under_its_own_name(section: dict,
                                                             message: str) -> None:
    """Not as `runs[0]`: the first run using the section is not where the mistake is."""
    with pytest.raises(InputError, match=re.escape(message)) as error:
        load_spec({"name": "x", "runs": [{"model": "vgg16"}], **section})
    assert "runs[0]" not in str(error.value)


def test_a_bad_run_option_and_a_bad_axis_value_name_their_place() -> None:
    with pytest.raises(InputError, match=re.escape("runs[0].options.depth: Input should be")):
        load_spec({"name": "x", "runs": [{"model": "plain", "options": {"depth": "deep"}}]})
    spec = load_spec({"name": "x", "experiments": [
        {"name": "e", "base": {"model": "vgg16"}, "axes": {"lr": [0.1, -1.0]}}]})
    with pytest.raises(InputError, match=re.escape("experiments[0].axes")) as error:
        plan_study(spec, preset="smoke")
    assert "train.lr: Input should be greater than 0" in str(error.value)


def test_shared_sections_merge_over_the_preset_and_set_only_what_they_write() -> None:
    study = plan_study(load_spec({"name": "x", "train": {"lr": 0.5, "threads": 2},
                                  "runs": [{"model": "mlp", "train": {"epochs": 3}}]}),
                       preset="smoke")
    train = study.runs[0].config.train
    assert (train.lr, train.threads, train.epochs, train.batch_size) == (0.5, 2, 3, 16)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"jobs": 0}, "jobs: Input should be greater than or equal to 1"),
     ({"executor": "slurm"}, "executor: Input should be 'local' or 'ray'")],
)
def test_bad_execution_options_are_input_errors(options: dict, message: str,
                                                tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        run_study(two_run_spec(), tmp_path / "s", preset="smoke", **options)
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_spec_error_from_the_cli_exits_2(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "runs": [{"model": "vgg16", "lr": 0.1}]}))
    assert main(["study", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "runs[0].lr: unknown key" in capsys.readouterr().err
    assert main(["study", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_study_smoke_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    plans = []
    resolve = study_runner.resolve
    monkeypatch.setattr(study_runner, "resolve",
                        lambda *args, **kw: plans.append(1) or resolve(*args, **kw))
    out = tmp_path / "study"
    assert main(["study", "--preset", "smoke", "--out", str(out)]) == 0
    assert len(plans) == 1  # the study is planned once, by the library
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
def test_rerun_skips_finished_runs_and_locked_runs_are_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    load = study_executors.load_dataset_from_config
    monkeypatch.setattr(study_executors, "load_dataset_from_config",
                        lambda config: loads.append(config) or load(config))
    out = tmp_path / "study"
    run_study(two_run_spec(), out, preset="smoke", write_report=False)
    assert len(loads) == 1  # two runs on the same data: loaded once, by the trainer's loader
    first = (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns
    lock = RunDirectory(out / "runs" / "residual_stack").lock()
    try:
        result = run_study(two_run_spec(), out, preset="smoke", write_report=False)
    finally:
        lock.release()
    outcomes = {outcome.name: outcome for outcome in result.outcomes}
    assert outcomes["plain_stack"].skipped
    assert outcomes["residual_stack"].state is RunState.RUNNING  # busy: another process's
    assert "being trained by another process" in outcomes["residual_stack"].message
    assert (out / "runs" / "plain_stack" / "metrics.csv").stat().st_mtime_ns == first


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-run study trained in this process, while this process runs 2 torch threads.

    Pool and Ray workers start at 1 thread (OMP_NUM_THREADS=1, see conftest; Ray's 1-CPU
    tasks): unless every run sets its own thread count, local and worker runs differ in the
    last bits (measured: up to 1e-6 in a gradient norm after 6 steps), and training grows that.
    """
    out = tmp_path_factory.mktemp("local") / "study"
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_study(two_run_spec(), out, preset="smoke", write_report=False)
        assert torch.get_num_threads() == 2  # the run's own count was restored afterwards
    finally:
        torch.set_num_threads(previous)
    return out


def assert_bit_identical(study_dir: Path, reference: Path) -> None:
    assert run_metrics(study_dir) == run_metrics(reference)
    gradients, expected = run_gradients(study_dir), run_gradients(reference)
    assert sorted(gradients) == sorted(expected) == ["plain_stack", "residual_stack"]
    for name, frame in gradients.items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(frame, expected[name], check_exact=True)
        assert np.array_equal(frame["value"].to_numpy(), expected[name]["value"].to_numpy())
    for run_dir in (study_dir / "runs").iterdir():  # the thread count is part of the config
        config = json.loads((run_dir / "config.json").read_text())
        assert config["run"]["train"]["threads"] == 1


@pytest.mark.slow
def test_process_pool_gives_bit_identical_runs_and_stays_quiet(
        local_reference: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    result = run_study(two_run_spec(), tmp_path / "pool", preset="smoke", jobs=2,
                       progress=NullProgress(), write_report=False)
    assert [outcome.state for outcome in result.outcomes] == ["completed", "completed"]
    assert_bit_identical(tmp_path / "pool", local_reference)
    # --quiet reaches the workers: they inherit this process's stderr, and wrote nothing to it.
    printed = capfd.readouterr()
    assert "epoch" not in printed.err and "training" not in printed.err, printed.err


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_gives_bit_identical_runs(local_reference: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional extra gradprobe[ray]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(SRC)}})
    lines: list[str] = []

    class Recorder:  # not silent (a NullProgress would silence the workers)
        def message(self, text: str) -> None:
            lines.append(text)

        def epoch_bar(self, description: str, total: int, initial: int = 0) -> object:
            return NullProgress().epoch_bar(description, total, initial)

    try:
        result = run_study(two_run_spec(), tmp_path / "ray", preset="smoke", executor="ray",
                           write_report=False, progress=Recorder())
    finally:
        ray.shutdown()
    assert [outcome.state for outcome in result.outcomes] == ["completed", "completed"]
    assert_bit_identical(tmp_path / "ray", local_reference)
    # each task's line reaches the driver once, the last ones too
    for run in ("plain_stack", "residual_stack"):
        for start in (f"{run} epoch 1/2:", f"{run} epoch 2/2:", f"{run}: completed, test loss"):
            assert sum(line.startswith(start) for line in lines) == 1, (start, lines)


@pytest.mark.slow
@pytest.mark.ray
def test_a_ray_cluster_too_small_for_a_run_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional extra gradprobe[ray]")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(InputError, match=r"asks for 2 threads \(train.threads\) but the Ray "
                                             r"cluster has 1 CPUs"):
            run_study(two_run_spec(threads=2), tmp_path / "ray", preset="smoke",
                      executor="ray", write_report=False)
    finally:
        ray.shutdown()
    assert not (tmp_path / "ray").exists()  # not even study.yaml


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
def test_a_failed_run_is_recorded_and_the_study_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = two_run_spec()
    spec["runs"][0]["name"] = "broken"
    spec["comparison"]["runs"] = ["broken", "residual_stack"]
    write_config = train_loop.Trainer._write_config

    def crash_one(trainer: train_loop.Trainer) -> None:  # a crash while training, not input
        if trainer.name == "broken":
            raise RuntimeError("CUDA out of memory (simulated)")
        write_config(trainer)

    monkeypatch.setattr(train_loop.Trainer, "_write_config", crash_one)
    result = run_study(spec, tmp_path / "study", preset="smoke")
    assert [outcome.state for outcome in result.outcomes] == [RunState.FAILED,
                                                              RunState.COMPLETED]
    assert [outcome.name for outcome in result.unfinished] == ["broken"]
    status = json.loads((tmp_path / "study" / "runs" / "broken" / "status.json").read_text())
    assert status["state"] == "failed"
    assert "CUDA out of memory (simulated)" in status["message"]
    assert "Traceback" in status["traceback"]
    assert "broken" in (tmp_path / "study" / "report.md").read_text()


def test_bad_run_options_are_refused_before_any_run_starts(tmp_path: Path) -> None:
    spec = two_run_spec()
    spec["runs"][0] = {"name": "broken", "model": "vgg16", "options": {"depth": 20}}
    spec["comparison"]["runs"] = ["broken", "residual_stack"]
    with pytest.raises(InputError, match=r"nothing was trained or written:\n  run 'broken': "
                                         r"model 'vgg16' has no depth option"):
        run_study(spec, tmp_path / "study", preset="smoke")
    assert not (tmp_path / "study").exists()


# ---------------------------------------------------------------------------- replicates
def test_seeds_give_each_run_one_directory_per_seed_and_keep_the_split() -> None:
    spec = load_spec({
        "name": "seeded", "seeds": [0, 1, 2],
        "runs": [{"model": "vgg_deep"}],
        "comparison": {"runs": ["vgg_deep"]},
        "experiments": [{"name": "bn", "base": {"model": "vgg_deep"},
                         "axes": {"norm": ["none", "batch"]}}],
    })
    study = plan_study(spec, preset="smoke")
    names = [run.name for run in study.runs]
    assert names == ["vgg_deep,seed=0", "vgg_deep,seed=1", "vgg_deep,seed=2",
                     "bn.norm=batch,seed=0", "bn.norm=batch,seed=1", "bn.norm=batch,seed=2"]
    assert [run.config.train.seed for run in study.runs] == [0, 1, 2, 0, 1, 2]
    assert {run.config.data.seed for run in study.runs} == {0}  # the split never varies
    assert [run.configuration for run in study.runs[:3]] == ["vgg_deep"] * 3
    # bn.norm=none is vgg_deep under every seed: trained once per seed, shared
    assert study.experiments[0]["runs"][:3] == names[:3]
    assert study.comparison == {"title": "Model comparison", "runs": names[:3]}
    written = study.to_yaml_dict()
    assert written["seeds"] == [0, 1, 2]
    assert written["runs"][3]["configuration"] == "bn.norm=batch"


def test_seed_as_an_axis_and_the_preset_seeds() -> None:
    spec = load_spec({"name": "axis", "experiments": [
        {"name": "e", "base": {"model": "mlp"}, "axes": {"depth": [2], "seed": [3, 4]}}]})
    study = plan_study(spec, preset="smoke")  # smoke declares no seeds: one run per config
    assert [(r.name, r.config.train.seed) for r in study.runs] == [
        ("e.depth=2,seed=3", 3), ("e.depth=2,seed=4", 4)]
    quick = plan_study(load_spec({"name": "q", "runs": [{"model": "mlp"}]}), preset="quick")
    assert [r.name for r in quick.runs] == ["mlp,seed=0", "mlp,seed=1", "mlp,seed=2"]
    one = plan_study(load_spec({"name": "q", "seeds": [7], "runs": [{"model": "mlp"}]}),
                     preset="quick")
    assert [(r.name, r.config.train.seed) for r in one.runs] == [("mlp", 7)]  # no suffix


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "s", "seeds": [1, 1], "runs": [{"model": "mlp"}]}, "seeds must be distinct"),
    ({"name": "s", "seeds": [], "runs": [{"model": "mlp"}]}, "at least 1 item"),
])
def test_bad_seeds_are_input_errors(spec: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_spec(spec)


def test_seeds_and_a_seed_axis_together_are_refused() -> None:
    spec = load_spec({"name": "s", "seeds": [0, 1], "experiments": [
        {"name": "e", "base": {"model": "mlp"}, "axes": {"seed": [3, 4]}}]})
    with pytest.raises(InputError, match="declare replicates once"):
        plan_study(spec, preset="smoke")


def test_a_seed_changes_initialisation_and_batch_order_not_the_split() -> None:
    from gradprobe.config import DataConfig
    from gradprobe.data import BatchLoader, load_dataset_from_config
    from gradprobe.models import build_model

    spec = load_spec({"name": "s", "seeds": [0, 1], "data": {"image_size": 16,
                                                             "images_per_class": 8},
                      "runs": [{"model": "plain_stack", "options": {"depth": 3}}]})
    first, second = plan_study(spec, preset="smoke").runs
    assert first.config.data == second.config.data  # the split's config is the same
    splits = load_dataset_from_config(DataConfig(**first.config.data.model_dump()))
    weights, orders = [], []
    for run in (first, second):
        torch.manual_seed(run.config.train.seed)  # as the trainer seeds before building
        model = build_model("plain_stack", depth=3, width=0.25, num_classes=splits.num_classes)
        weights.append(next(model.parameters()).detach().clone())
        loader = BatchLoader(splits.train, shuffle=True, batch_size=4, mean=splits.mean,
                             std=splits.std, device=torch.device("cpu"),
                             seed=run.config.train.seed)
        orders.append(torch.cat([labels for _, labels in loader.epoch(0)]))
    assert not torch.equal(*weights)  # another initialisation
    assert sorted(orders[0].tolist()) == sorted(orders[1].tolist())  # the same images...
    assert not torch.equal(*orders)  # ...in another order


def test_replicates_trained_by_a_study_share_their_data(tmp_path: Path) -> None:
    spec = {**two_run_spec(max_steps_per_epoch=2), "seeds": [0, 1], "train": {
        "epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2}}
    spec["runs"] = spec["runs"][:1]
    spec["comparison"] = {"runs": ["plain_stack"]}
    run_study(spec, tmp_path / "s", preset="smoke", write_report=False)
    configs = [json.loads((tmp_path / "s" / "runs" / f"plain_stack,seed={seed}" /
                           "config.json").read_text()) for seed in (0, 1)]
    assert configs[0]["data_info"]["fingerprint"] == configs[1]["data_info"]["fingerprint"]
    assert [c["run"]["train"]["seed"] for c in configs] == [0, 1]
    gradients = run_gradients(tmp_path / "s")
    first_step = [frame.loc[(frame["step"] == 0) & (frame["metric"] == "weight_grad_norm"),
                            "value"].to_numpy() for frame in gradients.values()]
    assert not np.array_equal(*first_step)  # another init and batch: another gradient


def test_gradprobe_study_quick_trains_one_worker_process_per_core_unless_told(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gradprobe.study.presets import default_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert (default_jobs("quick"), default_jobs("smoke"), default_jobs("full")) == (4, 1, 1)
    used = []
    monkeypatch.setattr(study_runner, "execute_pool",
                        lambda tasks, jobs, progress: used.append(("pool", jobs)) or [])
    monkeypatch.setattr(study_runner, "execute_local",
                        lambda tasks, progress: used.append(("local", 1)) or [])
    monkeypatch.setattr(study_runner, "summary_rows", lambda *args: [])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "q", "seeds": [0, 1, 2], "runs": [{"model": "mlp"}]}))
    for out, extra in (("a", ["--preset", "quick"]), ("b", ["--preset", "quick", "--jobs", "1"]),
                       ("c", ["--preset", "smoke"])):
        assert main(["study", str(spec), "--out", str(tmp_path / out), "--quiet", *extra]) == 0
    assert used == [("pool", 4), ("local", 1), ("local", 1)]
    # the library's own default stays in-process (a script needs no __main__ guard)
    run_study(yaml.safe_load(spec.read_text()), tmp_path / "d", preset="quick",
              write_report=False)
    assert used[-1] == ("local", 1)
