"""Hostile input and damaged directories, through the command line as a user meets them.

Each case asserts the exit code, the message, and that no file outside `--out` changed (for a
refusal, that nothing changed at all). The fuzz tests damage every file of a real finished run
and study and check that `train`, `study` and `report` never show a traceback or a wrong number:
a damaged record is rebuilt exactly from the run's checkpoint, or refused naming the file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from checkout import checkout_env
from gradprobe import record
from gradprobe.cli import main
from gradprobe.data.folder import SkippedFilesWarning
from gradprobe.record.io import REBUILDABLE

SPEC = {
    "name": "tiny",
    "data": {"image_size": 16, "images_per_class": 16},
    "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2},
    "model": {"width": 0.25},
    "runs": [{"model": "plain_stack", "options": {"depth": 3}},
             {"model": "residual_stack", "options": {"depth": 5}}],
}
TRAIN = ["train", "--model", "mlp", "--image-size", "8", "--images-per-class", "8",
         "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "2", "--quiet"]
RUN_FILES = (record.CONFIG_FILE, record.STATUS_FILE, record.SUMMARY_FILE, record.METRICS_FILE,
             record.GRADIENTS_FILE, record.STEPS_FILE, "checkpoint.pt")

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path, exclude: Path | None = None) -> Snapshot:
    """Every path under `root` (but `exclude` and lock files) with its size and mtime."""
    state = {}
    for path in root.rglob("*"):
        if path.name == record.LOCK_FILE:  # taken to read a run safely; holds nothing
            continue
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue
        info = path.lstat()
        # a directory's mtime moves with its lock file: its entries are compared instead
        state[str(path.relative_to(root))] = ((info.st_size, info.st_mtime_ns) if path.is_file()
                                              else (-1, 0))
    return state


def write_spec(folder: Path, **changes: object) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}), encoding="utf-8")
    return path


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished study of two tiny runs (smoke preset), trained once for this module."""
    root = tmp_path_factory.mktemp("trained")
    code = main(["study", str(write_spec(root)), "--out", str(root / "study"), "--preset",
                 "smoke", "--quiet"])
    assert code == 0
    return root / "study"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished `gradprobe train` run of a tiny MLP."""
    out = tmp_path_factory.mktemp("run") / "mlp"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------- the table
def _spec_with(**changes: object) -> Callable[[Path], list[object]]:
    def argv(root: Path) -> list[object]:
        return ["study", write_spec(root / "inputs", **changes), "--out", root / "out",
                "--preset", "smoke", "--quiet"]
    return argv


def _runs(*runs: dict[str, object]) -> Callable[[Path], list[object]]:
    return _spec_with(runs=list(runs))


def _absolute_name(root: Path) -> list[object]:  # would overwrite the sentinel's files
    return _runs({"name": str(root / "sentinel"), "model": "mlp"})(root)


def _binary_spec(root: Path) -> list[object]:
    (root / "inputs" / "spec.yaml").write_bytes(b"name: x\n\xff\xfe\x00\x81runs: []\n")
    return ["study", root / "inputs" / "spec.yaml", "--out", root / "out", "--quiet"]


def _under_a_file(command: str) -> Callable[[Path], list[object]]:
    def argv(root: Path) -> list[object]:
        out = root / "sentinel" / "a.txt" / "out"
        if command == "train":
            return [*TRAIN, "--out", out]
        return [*_spec_with()(root)[:3], out, "--preset", "smoke", "--quiet"]
    return argv


def _proc_out(root: Path) -> list[object]:
    return [*_spec_with()(root)[:3], "/proc/gradprobe-hostile/out", "--quiet"]


def _damaged_run_dir(content: bytes, name: str = record.CONFIG_FILE
                     ) -> Callable[[Path], list[object]]:
    def argv(root: Path) -> list[object]:
        (root / "out").mkdir()
        (root / "out" / name).write_bytes(content)
        return [*TRAIN, "--out", root / "out"]
    return argv


def _study_with_damaged_config(root: Path) -> list[object]:
    run_dir = root / "out" / record.RUNS_DIR / "mlp"
    run_dir.mkdir(parents=True)
    (run_dir / record.CONFIG_FILE).write_text('{"run": 3}', encoding="utf-8")
    return _runs({"model": "mlp"})(root)


def _report_with_damaged(name: str, content: bytes) -> Callable[[Path], list[object]]:
    def argv(root: Path) -> list[object]:
        run_dir = root / "out" / record.RUNS_DIR / "mlp"
        run_dir.mkdir(parents=True)
        (root / "out" / record.STUDY_FILE).write_text("name: x\nruns: [{name: mlp}]\n",
                                                      encoding="utf-8")
        (run_dir if name != record.STUDY_FILE else root / "out").joinpath(name).write_bytes(
            content)
        return ["report", root / "out"]
    return argv


HOSTILE = [
    # (id, argv from the test's root, exit code, message)
    ("traversal-run-name", _runs({"name": "../../escaped_run", "model": "mlp"}), 2,
     r"runs\[0\]: the run name '\.\./\.\./escaped_run' cannot be used as a folder name"),
    ("absolute-run-name", _absolute_name, 2, r"runs\[0\]: the run name '/.*' cannot be used"),
    ("experiment-name-with-slash",
     _spec_with(runs=[], experiments=[{"name": "x/../..", "base": {"model": "mlp"},
                                       "axes": {"lr": [0.1]}}]), 2,
     r"experiments\[0\]: the run name 'x/\.\./\.\.\.lr=0\.1' cannot be used"),
    ("binary-spec", _binary_spec, 2, r"spec\.yaml is not a UTF-8 text file"),
    ("train-out-under-a-file", _under_a_file("train"), 2,
     r"a\.txt/out cannot be written \(Not a directory\)\. Fix: choose a directory"),
    ("study-out-under-a-file", _under_a_file("study"), 2,
     r"a\.txt/out cannot be written \(Not a directory\)"),
    ("study-out-in-proc", _proc_out, 2, r"/proc/gradprobe-hostile/out cannot be written"),
    ("vgg_deep-image-8", lambda root: [*TRAIN, "--model", "vgg_deep", "--image-size", "8",
                                       "--out", root / "out"], 2,
     r"vgg_deep cannot take 8x8 images.*Fix: use a larger --image-size"),
    ("depth-1e8", lambda root: [*TRAIN, "--depth", "100000000", "--out", root / "out"], 2,
     r"depth 100,000,000 for mlp is beyond gradprobe's bound of 2,048"),
    ("models-depth-1e8", lambda root: ["models", "mlp", "--depth", "100000000"], 2,
     r"gradprobe models: error: depth 100,000,000 for mlp is beyond"),
    ("study-vgg_deep-image-8", _spec_with(runs=[{"model": "vgg_deep"}],
                                          data={"image_size": 8, "images_per_class": 8}), 2,
     r"nothing was trained or written:\n  run 'vgg_deep': vgg_deep cannot take 8x8 images"),
    ("study-bad-options", _runs({"model": "resnet", "options": {"depth": 7}},
                                {"model": "vgg16", "options": {"depth": 20}},
                                {"name": "thin", "model": "mlp", "options": {"width": 0}}), 2,
     r"run 'resnet': resnet depth must be .* got 7\n  run 'vgg16': model 'vgg16' has no depth "
     r"option.*\n  run 'thin': width must be a positive number"),
    ("top-level-model-section", _spec_with(model={"depth": "deep"}), 2,
     r"invalid study spec .*\n  model\.depth: Input should be a valid integer"),
    ("top-level-data-section", _spec_with(data={"image_size": 4}), 2,
     r"\n  data\.image_size: Input should be greater than or equal to 8"),
    ("train-garbage-config", _damaged_run_dir(b"\x00\xffgarbage"), 2,
     r"out/config\.json is damaged \(UnicodeDecodeError.*delete the whole run directory"),
    ("train-config-run-wrong-type", _damaged_run_dir(b'{"run": [1, 2]}'), 2,
     r"config\.json is damaged \('run' is \[1, 2\], not a dict\)"),
    ("study-config-run-wrong-type", _study_with_damaged_config, 2,
     r"run 'mlp': .*runs/mlp/config\.json is damaged \('run' is 3, not a dict\); it cannot be "
     r"rebuilt: delete the whole run directory"),
    ("scan-out-in-sys", lambda root: ["scan", "--out", "/sys/gradprobe-hostile", "--quiet"], 2,
     r"--out /sys/gradprobe-hostile cannot be written"),
    ("report-malformed-study-yaml", _report_with_damaged(record.STUDY_FILE, b"runs: [\xff"), 2,
     r"study\.yaml is damaged \(UnicodeDecodeError.*run `gradprobe study`"),
    ("report-study-yaml-not-a-mapping", _report_with_damaged(record.STUDY_FILE, b"- a\n- b\n"),
     2, r"study\.yaml is damaged \(it holds a YAML list, not a mapping\)"),
]


@pytest.mark.parametrize(("make_argv", "code", "message"),
                         [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_input_is_refused_and_nothing_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        make_argv: Callable[[Path], list[object]], code: int, message: str) -> None:
    (tmp_path / "sentinel" / "sub").mkdir(parents=True)
    (tmp_path / "sentinel" / "a.txt").write_text("keep me", encoding="utf-8")
    (tmp_path / "sentinel" / "sub" / record.METRICS_FILE).write_text("keep,me\n", "utf-8")
    (tmp_path / "inputs").mkdir()
    argv = make_argv(tmp_path)
    before = snapshot(tmp_path)
    got, _out, err = cli(argv, capsys)
    assert got == code, err
    assert re_search(message, err), err
    assert snapshot(tmp_path) == before  # a refusal writes nothing, not even under --out
    assert not (tmp_path.parent / "escaped_run").exists()


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, flags=re.DOTALL) is not None


def test_exit_code_and_message_through_python_dash_m(tmp_path: Path) -> None:
    """The same as the in-process table, once through a real process: exit 2, one message."""
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    result = subprocess.run([sys.executable, "-m", "gradprobe", "study", str(spec), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env=checkout_env(), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"gradprobe study: error: {spec} is not a UTF-8 text file")
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spec.yaml"]


def test_report_notes_a_config_whose_run_has_the_wrong_type(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _report_with_damaged(record.CONFIG_FILE, b'{"run": [1, 2], "name": "mlp"}')(tmp_path)
    code, out, _err = cli(["report", tmp_path / "out"], capsys)
    assert code == 0 and "report.md" in out
    report = (tmp_path / "out" / record.REPORT_MD).read_text("utf-8")
    assert re_search(r"- mlp: .*config\.json is damaged \('run' is \\\[1, 2\\\], not a dict\); "
                     r"it cannot be rebuilt", report)  # markdown escapes the brackets


def test_changed_spec_is_refused_up_front_and_study_yaml_kept(
        trained_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(trained_study, out)
    changed = [{"model": "plain_stack", "options": {"depth": 4}},
               {"model": "residual_stack", "options": {"depth": 5}, "train": {"lr": 0.5}}]
    spec = write_spec(tmp_path, runs=changed)
    before = snapshot(tmp_path)
    code, _out, err = cli(["study", spec, "--out", out, "--preset", "smoke", "--quiet"], capsys)
    assert code == 2
    assert re_search(r"run 'plain_stack' in .* was trained with another config \(the spec "
                     r"changed\):\n    model\.depth: 3 -> 4\n  run 'residual_stack' in .*"
                     r"\n    train\.lr: 0\.01 -> 0\.5\nFix: restore the spec", err)
    assert snapshot(tmp_path) == before
    assert "--force" not in err


def test_failed_runs_exit_1_and_say_where_the_traceback_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A class folder of files that do not decode passes the up-front checks (they decode no
    image) but fails when each run loads it."""
    folder = tmp_path / "images" / "good"
    folder.mkdir(parents=True)
    (tmp_path / "images" / "broken").mkdir()
    for index in range(4):
        Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(folder / f"{index}.png")
        (tmp_path / "images" / "broken" / f"{index}.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    spec = write_spec(tmp_path)
    before = snapshot(tmp_path, exclude=out)
    with pytest.warns(SkippedFilesWarning, match=r"skipped 4 file\(s\) .*broken/0\.png"):
        code, _out, err = cli(["study", spec, "--out", out, "--dataset", folder.parent,
                               "--preset", "smoke", "--quiet"], capsys)
    assert code == 1
    for name in ("plain_stack", "residual_stack"):
        status = out / record.RUNS_DIR / name / record.STATUS_FILE
        assert f"run '{name}' failed: InputError: " in err
        assert f"[traceback in {status}]" in err
        assert "Traceback" in json.loads(status.read_text("utf-8"))["traceback"]
    assert "2 of 2 runs did not finish" in err
    assert snapshot(tmp_path, exclude=out) == before


def test_diverged_runs_are_results_exit_0(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = cli(["study", write_spec(tmp_path, train={**SPEC["train"], "lr": 1e30}),
                             "--out", out, "--preset", "smoke", "--quiet"], capsys)
    assert code == 0, err
    assert stdout.count(" diverged ") == 2


@pytest.mark.parametrize("lr", ["inf", "1e30"])
def test_non_finite_loss_after_the_last_step_is_diverged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lr: str) -> None:
    out = tmp_path / "run"
    code, stdout, _err = cli([*TRAIN, "--max-steps-per-epoch", "1", "--lr", lr, "--out", out],
                             capsys)
    assert code == 0
    assert "diverged at step 1" in stdout
    status = record.read_run_file(out / record.STATUS_FILE)
    summary = record.read_run_file(out / record.SUMMARY_FILE)
    assert status.state is record.RunState.DIVERGED
    assert "validation loss became nan" in status.message
    assert summary.state is record.RunState.DIVERGED and summary.diverged_step == 1
    assert summary.test_acc is None


def test_refused_train_leaves_no_run_directory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Refused while loading its data (after the up-front checks): the run directory, and the
    parents this call created, are removed again: no lock, no failed status."""
    code, _out, err = cli([*TRAIN, "--dataset", tmp_path / "missing", "--out",
                           tmp_path / "a" / "b" / "run"], capsys)
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed_under_the_lock(trained_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    stale = run_dir / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"\x00" * 1024)
    assert main([*TRAIN, "--out", str(run_dir)]) == 0
    assert not stale.exists()


# ---------------------------------------------------------------------------- fuzz
def damaged_versions(original: bytes, rng: np.random.Generator) -> list[bytes]:
    """Random bytes, a truncation, and a JSON value of the wrong type."""
    cut = int(rng.integers(1, max(len(original) - 1, 2)))
    wrong = rng.choice([b"[1, 2]", b'"text"', b'{"state": 7, "run": []}',
                        b'{"state": "completed", "test_acc": "high"}'])
    return [rng.bytes(int(rng.integers(1, 200))), original[:cut], bytes(wrong)]


@pytest.mark.parametrize("name", RUN_FILES)
def test_fuzz_train_rebuilds_damaged_records_exactly(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str) -> None:
    """Rerunning `gradprobe train` on a damaged run directory rebuilds every record from the
    checkpoint to the same numbers; only a damaged config.json is refused (exit 2), by name."""
    rng = np.random.default_rng(RUN_FILES.index(name))
    originals = {file: (trained_run / file).read_bytes()
                 for file in (record.SUMMARY_FILE, record.METRICS_FILE)}
    for index, damage in enumerate(damaged_versions((trained_run / name).read_bytes(), rng)):
        run_dir = tmp_path / str(index)
        shutil.copytree(trained_run, run_dir)
        (run_dir / name).write_bytes(damage)
        code, _out, err = cli([*TRAIN, "--out", run_dir], capsys)
        if name == record.CONFIG_FILE:
            assert code == 2 and f"{run_dir / name} is damaged" in err, err
            assert "delete the whole run directory" in err
            continue
        assert code == 0, err
        for file, original in originals.items():
            assert (run_dir / file).read_bytes() == original, (file, index)
        for file in REBUILDABLE:
            assert record.read_run_file(run_dir / file) is not None


def test_fuzz_study_and_report_on_damaged_runs(
        trained_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every rebuildable file (and the checkpoint) of one run damaged at once: the report notes
    each damaged file and keeps the other run's numbers; the study rebuilds the run exactly."""
    rng = np.random.default_rng(7)
    out = tmp_path / "study"
    shutil.copytree(trained_study, out)
    hurt, whole = out / record.RUNS_DIR / "plain_stack", out / record.RUNS_DIR / "residual_stack"
    originals = {name: (hurt / name).read_bytes() for name in RUN_FILES}
    untouched = snapshot(whole)
    report_before = (out / record.REPORT_MD).read_text("utf-8")
    for position, name in enumerate(RUN_FILES[1:]):  # config.json: next test
        (hurt / name).write_bytes(damaged_versions(originals[name], rng)[position % 3])

    code, _out, err = cli(["report", out], capsys)
    assert code == 0, err
    report = (out / record.REPORT_MD).read_text("utf-8")
    for name in REBUILDABLE:
        assert f"{name} is damaged" in report, name
    # every sentence about the undamaged run alone stands (a ranking it shared may shrink)
    assert set(_lines_of(report_before)) <= set(_lines_of(report))

    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        code, _stdout, err = cli(["study", write_spec(tmp_path), "--out", out, "--preset",
                                 "smoke", "--quiet"], capsys)
    assert code == 0, err
    # its checkpoint is damaged too: trained again from scratch, to the same numbers
    assert numbers(hurt) == numbers(trained_study / record.RUNS_DIR / hurt.name)
    assert record.read_run_file(hurt / record.STATUS_FILE).state is record.RunState.COMPLETED
    assert snapshot(whole) == untouched
    assert set(_lines_of(report_before)) <= set(_lines_of(
        (out / record.REPORT_MD).read_text("utf-8")))


def test_fuzz_damaged_config_and_study_yaml(
        trained_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """config.json cannot be rebuilt: the study refuses up front naming it and the fix, and the
    documented fix (delete the run directory) gives back the same numbers. A damaged study.yaml
    stops `report` by name and is rewritten by `study`."""
    out = tmp_path / "study"
    shutil.copytree(trained_study, out)
    hurt = out / record.RUNS_DIR / "plain_stack"
    (hurt / record.CONFIG_FILE).write_bytes(b'{"run": {"model": 3}, "name": 1')
    (out / record.STUDY_FILE).write_bytes(np.random.default_rng(3).bytes(300))
    before = snapshot(out)

    code, _out, err = cli(["report", out], capsys)
    assert code == 2 and f"{out / record.STUDY_FILE} is damaged" in err
    argv = ["study", write_spec(tmp_path), "--out", out, "--preset", "smoke", "--quiet"]
    code, _out, err = cli(argv, capsys)
    assert code == 2
    assert f"{hurt / record.CONFIG_FILE} is damaged" in err
    assert "delete the whole run directory and train the run again" in err
    assert snapshot(out) == before

    shutil.rmtree(hurt)  # what the message says to do
    code, _out, err = cli(argv, capsys)
    assert code == 0, err
    assert numbers(hurt) == numbers(trained_study / record.RUNS_DIR / hurt.name)
    assert record.read_run_file(out / record.STUDY_FILE)["name"] == "tiny"


def numbers(run_dir: Path) -> tuple[dict[str, object], str]:
    """A run's summary and epoch metrics, without the wall-clock seconds."""
    summary = record.read_run_file(run_dir / record.SUMMARY_FILE).as_dict()
    summary.pop("seconds")
    metrics = record.read_run_file(run_dir / record.METRICS_FILE).drop(columns=record.Col.seconds)
    return summary, metrics.to_csv()


def _lines_of(text: str) -> list[str]:
    """Report lines about the undamaged run alone (one naming both may rightly change)."""
    return [line for line in text.splitlines()
            if "residual\\_stack" in line and "plain\\_stack" not in line]
