"""Hostile inputs, round two (issue 22): names that are not UTF-8, pipes, deep folders, data a
study cannot load, alias bombs, duplicate keys, unbounded numbers and grids, full disks.

Each refusal asserts the exit code, the message, that nothing at all changed on disk and that no
run is left "running"; each case that trains asserts what was left out and why. A full disk is
injected (an `OSError(ENOSPC)` from the write that fills it) and, where this process may mount
one, met for real on a tiny tmpfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from gradprobe import record
from gradprobe.cli import main
from gradprobe.data import torchvision_sets
from gradprobe.errors import InputError
from gradprobe.record.io import STATUS_FALLBACK
from gradprobe.study.spec import MAX_RUNS, load_spec, resolve
from gradprobe.train import preflight
from gradprobe.util import atomic
from gradprobe.util.safe_yaml import MAX_DEPTH, check_document
from test_hostile import SPEC, TRAIN, cli, numbers, re_search, snapshot, write_spec

Argv = Callable[[Path], list[object]]


def left_running(root: Path) -> list[Path]:
    """Every status.json under `root` that says "running"."""
    return [path for path in root.rglob(record.STATUS_FILE)
            if record.read_run_file(path).state is record.RunState.RUNNING]


def image_tree(root: Path, classes: tuple[bytes, ...] = (b"a", b"b"), per_class: int = 4) -> Path:
    """An ImageFolder tree; class names are bytes, so they may be anything but UTF-8."""
    for name in classes:
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_class):
            Image.new("RGB", (8, 8), (index * 50, 30, 0)).save(
                os.fsdecode(os.path.join(folder, b"%d.png" % index)))
    return root


# ---------------------------------------------------------------------------- refusals
def _study(**changes: object) -> Argv:
    def argv(root: Path) -> list[object]:
        return ["study", write_spec(root / "inputs", **changes), "--out", root / "out",
                "--preset", "smoke", "--quiet"]
    return argv


def _study_flags(*flags: object, **changes: object) -> Argv:
    return lambda root: [*_study(**changes)(root), *flags]


def _raw_spec(text: str) -> Argv:
    def argv(root: Path) -> list[object]:
        (root / "inputs" / "spec.yaml").write_text(text, encoding="utf-8")
        return ["study", root / "inputs" / "spec.yaml", "--out", root / "out", "--preset",
                "smoke", "--quiet"]
    return argv


def _one_class_folder(root: Path) -> list[object]:
    image_tree(root / "inputs" / "images", classes=(b"only",))
    return _study_flags("--dataset", root / "inputs" / "images")(root)


def _lock_link(root: Path) -> list[object]:
    (root / "out").mkdir()
    (root / "out" / record.LOCK_FILE).symlink_to(root / "sentinel" / "a.txt")
    return [*TRAIN, "--out", root / "out"]


def _fifo_spec(root: Path) -> list[object]:
    os.mkfifo(root / "inputs" / "spec.fifo")  # reading it would block for ever
    return ["study", root / "inputs" / "spec.fifo", "--out", root / "out", "--quiet"]


def _not_utf8(path: Path) -> str:
    return os.fsdecode(os.fsencode(path) + b"\xffut")


def _axis(values: str) -> str:
    return ("name: x\nexperiments:\n- name: e\n  base: {model: mlp}\n  axes:\n    lr: "
            + values + "\n")


# 482 bytes once expanded to 3.45 GB: nine levels of ten aliases each
ALIAS_BOMB = _axis("\n    - &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"    - &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]\n" for level in range(1, 9)))
# 6 axes x 10 values: 10^6 runs, once 3.4 GB and two minutes before a word was printed
GRID_6X10 = ("name: x\nexperiments:\n- name: e\n  base: {model: mlp}\n  axes:\n" + "".join(
    f"    {axis}: [{', '.join(values)}]\n" for axis, values in {
        "lr": [f"0.0{i}1" for i in range(10)], "momentum": [f"0.{i}" for i in range(10)],
        "weight_decay": [f"{i}.0e-5" for i in range(10)],
        "width": [f"0.{i}5" for i in range(10)], "batch_size": [str(i + 2) for i in range(10)],
        "depth": [str(i + 2) for i in range(10)]}.items()))

REFUSED = [
    # (id, argv, exit code, message): refused before anything is written
    ("study-dataset-missing", _study_flags("--dataset", "/nonexistent/images"), 2,
     r"nothing was trained or written:\n  runs 'plain_stack', 'residual_stack': dataset path "
     r"'/nonexistent/images' does not exist"),
    ("study-dataset-dev-null", _study_flags("--dataset", "/dev/null"), 2,
     r"dataset path '/dev/null' is a file, not a directory"),
    ("study-data-root-dev-null",
     _study(data={"dataset": "fashion-mnist", "data_root": "/dev/null"}), 2,
     r"the data root '/dev/null' \(--data-root; data\.data_root in a spec\) is a file"),
    ("study-data-root-flag", _study_flags("--dataset", "cifar10", "--data-root",
                                          "/nonexistent/data"), 2,
     r"cifar10 was not found offline \(looked in: --data-root /nonexistent/data.*point "
     r"--data-root or \$GRADPROBE_DATA at .*`data: \{download: true\}`"),
    ("study-max-images-3", _study(data={"dataset": "digits", "max_images": 3}), 2,
     r"max_images=3 leaves fewer than 3 images per class for the 10 classes of digits.*at least "
     r"30"),
    ("study-max-images-3-synthetic", _study(data={**SPEC["data"], "max_images": 3}), 2,
     r"max_images=3 leaves fewer than 3 images per class for the 3 classes of synthetic"),
    ("study-max-train-images-below-classes",
     _study(data={"num_classes": 4, "max_train_images": 2, "image_size": 16}), 2,
     r"max_train_images=2 is smaller than the number of classes \(4\)"),
    ("study-one-class-folder", _one_class_folder, 2, r"has one class sub-folder \('only'\)"),
    ("train-max-images-official", lambda root: [*TRAIN, "--dataset", "cifar10", "--download",
                                                "--max-images", "12", "--out", root / "out"], 2,
     r"max_images=12 leaves a split of cifar10 with 2 images, fewer than its 10 classes"),
    ("alias-bomb-in-axis", _raw_spec(ALIAS_BOMB), 2,
     r"spec\.yaml expands to more than 100,000 values \(YAML aliases"),
    ("alias-loop", _raw_spec(_axis("&loop [*loop]")), 2,
     r"nests lists and mappings more than 32 deep \(or an alias refers to itself\)"),
    ("nested-100000", _raw_spec("name: x\nruns: " + "[" * 100_000 + "]" * 100_000 + "\n"), 2,
     r"nests lists and mappings more than 32 deep \(line 2\)"),
    ("duplicate-key", _raw_spec("name: x\nruns: [{model: mlp}]\nruns: [{model: vgg11}]\n"), 2,
     r"the key 'runs' is written twice in one mapping \(lines 2 and 3\)"),
    ("duplicate-key-nested", _raw_spec("name: x\nruns:\n- model: mlp\n  model: vgg11\n"), 2,
     r"the key 'model' is written twice"),
    ("axis-value-a-list", _raw_spec(_axis("[[0.1, 0.2]]")), 2,
     r"axis 'lr' value 1 is a list; each value must be one number, string, true/false or null"),
    ("grid-6x10", _raw_spec(GRID_6X10), 2,
     r"the study declares 1,000,000 runs .* limit is 10,000 runs per study"),
    ("lr-true-axis", _raw_spec(_axis("[true]")), 2,
     r"experiments\[0\]\.axes\):\n  train\.lr: Input should be a valid number"),
    ("lr-true-train", _study(train={**SPEC["train"], "lr": True}), 2,
     r"train\.lr: Input should be a valid number"),
    ("depth-true", _study(model={"width": 0.25, "depth": True}), 2,
     r"model\.depth: Input should be a valid integer"),
    ("split-of-booleans", _study(data={"split": [True, 0.5, 0.5]}), 2,
     r"data\.split: Value error, split fractions must be numbers, got \[True, 0\.5, 0\.5\]"),
    ("split-of-strings", _study(data={"split": ["0.7", "0.15", "0.15"]}), 2,
     r"data\.split: Value error, split fractions must be numbers"),
    ("seeds-negative", _study(seeds=[0, -1]), 2,
     r"seeds\[1\]: Input should be greater than or equal to 0"),
    ("seeds-2-to-the-32", _study(seeds=[2**32]), 2, r"seeds\[0\]: Input should be less than"),
    ("train-seed-negative", _study(train={**SPEC["train"], "seed": -1}), 2,
     r"train\.seed: Input should be greater than or equal to 0"),
    ("threads-100000", _study(train={**SPEC["train"], "threads": 100_000}), 2,
     r"train\.threads: Input should be less than or equal to 1024"),
    ("warmup-1e309", _raw_spec("name: x\ntrain: {warmup_epochs: 1e309}\nruns: [{model: mlp}]\n"),
     2, r"train\.warmup_epochs: Input should be a valid number"),
    ("warmup-inf", _raw_spec("name: x\ntrain: {warmup_epochs: .inf}\nruns: [{model: mlp}]\n"),
     2, r"train\.warmup_epochs: Input should be a finite number"),
    ("epochs-1e21", _study(train={**SPEC["train"], "epochs": 10**21}), 2,
     r"train\.epochs: Input should be less than or equal to 100000"),
    ("train-flag-seed-negative", lambda root: [*TRAIN, "--seed", "-1", "--out", root / "out"],
     2, r"--seed: Input should be greater than or equal to 0"),
    ("train-flag-data-seed-2-to-the-32",
     lambda root: [*TRAIN, "--data-seed", str(2**32), "--out", root / "out"], 2,
     r"--data-seed: Input should be less than 4294967296"),
    ("train-flag-warmup-1e309",
     lambda root: [*TRAIN, "--warmup-epochs", "1e309", "--out", root / "out"], 2,
     r"--warmup-epochs: Input should be a finite number"),
    ("scan-depth-100000", lambda root: ["scan", "--depths", "8", "100000", "--out",
                                        root / "out" / "scan", "--quiet"], 2,
     r"scan depth 100,000 is beyond gradprobe's bound of 2,048"),
    ("scan-theory-depth-100000", lambda root: ["scan", "--theory", "--depths", "100000",
                                               "--out", root / "out", "--quiet"], 2,
     r"depths\.0: Input should be less than or equal to 2048"),
    ("spec-is-a-named-pipe", _fifo_spec, 2, r"study spec .*spec\.fifo is not a regular file"),
    ("train-out-not-utf8", lambda root: [*TRAIN, "--out", _not_utf8(root / "o")], 2,
     r"--out .*/o\\xffut is not valid UTF-8"),
    ("study-out-not-utf8", lambda root: [*_study()(root)[:3], _not_utf8(root / "o"), "--preset",
                                         "smoke", "--quiet"], 2,
     r"--out .*/o\\xffut is not valid UTF-8"),
    ("lock-planted-as-a-link", _lock_link, 2,
     r"the lock file .*/out/\.lock is a symbolic link .* its target is untouched\. Fix: delete "
     r"it"),
]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-image caches go under the test's folder, not the user's ~/.cache."""
    monkeypatch.setenv("GRADPROBE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel" / "a.txt").write_text("keep me", encoding="utf-8")
    (tmp_path / "inputs").mkdir()
    return tmp_path


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("make_argv", "code", "message"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_refused_before_anything_is_written(
        sandbox: Path, capsys: pytest.CaptureFixture[str], make_argv: Argv, code: int,
        message: str) -> None:
    argv = make_argv(sandbox)
    before = snapshot(sandbox)
    got, _out, err = cli(argv, capsys)
    assert got == code, err
    assert re_search(message, err), err
    assert err.count("error:") == 1, err  # one message
    assert snapshot(sandbox) == before  # nothing written, not even an empty --out
    assert (sandbox / "sentinel" / "a.txt").read_text("utf-8") == "keep me"
    assert left_running(sandbox) == []


def test_fashion_mnist_not_available_offline_is_refused_up_front(
        sandbox: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run used to start and fail; now one message, whose hint names flags `study` has."""
    monkeypatch.setattr(torchvision_sets, "DEBIAN_FASHION_MNIST", sandbox / "no-debian")
    monkeypatch.delenv(torchvision_sets.DATA_ENV, raising=False)
    argv = _study_flags("--dataset", "fashion-mnist")(sandbox)
    before = snapshot(sandbox)
    code, _out, err = cli(argv, capsys)
    assert code == 2
    assert re_search(r"runs 'plain_stack', 'residual_stack': fashion-mnist was not found "
                     r"offline .* point --data-root or \$GRADPROBE_DATA", err), err
    assert "pass --download" not in err  # `study` has no --download: the spec key is named
    assert "data: {download: true}" in err
    assert snapshot(sandbox) == before


def test_threads_beyond_the_cores_are_refused(
        sandbox: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "available_cores", lambda: 2)
    before = snapshot(sandbox)
    code, _out, err = cli([*TRAIN, "--threads", "3", "--out", sandbox / "out"], capsys)
    assert code == 2
    assert "--threads (train.threads in a spec) is 3 but this machine has 2 CPU core(s)" in err
    assert snapshot(sandbox) == before


# ---------------------------------------------------------------------------- specs (API)
def test_a_python_dict_spec_is_bounded_like_yaml() -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(InputError, match=r"nests lists and mappings more than 32 deep"):
        load_spec({"name": "x", "runs": nested})
    shared = [1] * 100
    bomb = [shared] * 2000  # 200,000 values once expanded, 2,000 pointers in memory
    with pytest.raises(InputError, match=r"expands to more than 100,000 values"):
        check_document({"axes": {"lr": bomb}}, "spec")
    check_document({"a": [[1]] * 10}, "spec")  # shared but small: fine
    assert MAX_DEPTH == 32


def test_grid_limit_is_inclusive_and_resolving_takes_every_run(tmp_path: Path) -> None:
    """MAX_RUNS runs resolve (names checked through a set: linear); one more is refused."""
    axes = {"lr": [round(0.001 * (i + 1), 6) for i in range(100)],
            "batch_size": list(range(1, 101))}
    spec = load_spec({"name": "x", "experiments": [{"name": "e", "base": {"model": "mlp"},
                                                    "axes": axes}]})
    study = resolve(spec, {}, "none")
    assert len(study.runs) == MAX_RUNS == 10_000
    assert len({run.name for run in study.runs}) == MAX_RUNS
    bigger = load_spec({"name": "x", "runs": [{"model": "mlp"}],
                        "experiments": [{"name": "e", "base": {"model": "mlp"}, "axes": axes}]})
    with pytest.raises(InputError, match=r"declares 10,001 runs .* limit is 10,000"):
        resolve(bigger, {}, "none")


# ---------------------------------------------------------------------------- data walks
def _train_on(folder: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _out, err = cli([*TRAIN[:3], "--dataset", folder, *TRAIN[3:], "--out", out],
                              capsys)
    return code, err + "\n".join(str(w.message) for w in caught)


@pytest.mark.timeout(120)
def test_names_that_are_not_utf8_are_named_and_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = image_tree(tmp_path / "images", classes=(b"a", b"b", b"bad\xffclass"))
    Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(tree) + b"/a/bad\xfe.png"))
    code, said = _train_on(tree, tmp_path / "out", capsys)
    assert code == 0, said
    assert "bad\\xffclass (its name is not valid UTF-8)" in said
    assert "a/bad\\xfe.png (its name is not valid UTF-8)" in said
    config = record.read_run_file(tmp_path / "out" / record.CONFIG_FILE)
    assert config["data_info"]["class_to_idx"] == {"a": 0, "b": 1}
    assert sum(config["data_info"]["counts"].values()) == 8  # 4 per class; bad\xfe.png is out


@pytest.mark.timeout(60)
def test_a_named_pipe_is_never_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO named pipe.png used to block the first open for ever."""
    tree = image_tree(tmp_path / "images")
    os.mkfifo(tree / "a" / "pipe.png")
    code, said = _train_on(tree, tmp_path / "out", capsys)
    assert code == 0, said
    assert "a/pipe.png (a named pipe, not an image file)" in said
    assert left_running(tmp_path) == []


@pytest.mark.timeout(120)
def test_folders_nested_1100_deep_are_bounded(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tree = image_tree(tmp_path / "images")
    deep = tree / "b"
    for _ in range(1100):  # os.makedirs would recurse 1,100 times too
        deep = deep / "n"
        deep.mkdir()
    try:
        code, said = _train_on(tree, tmp_path / "out", capsys)
        assert code == 0, said
        assert "(nested more than 32 folders deep)" in said
    finally:  # and so would shutil.rmtree, when pytest cleans up
        while deep != tree / "b":
            deep.rmdir()
            deep = deep.parent


# ---------------------------------------------------------------------------- full disk
def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.timeout(120)
def test_full_disk_at_the_checkpoint_ends_with_one_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first checkpoint fills the disk (torch.save raising ENOSPC mid-write): exit 1, one
    message naming checkpoint.pt, the run "failed" (never "running"), no temporary left; with
    space again the same command finishes it."""
    from gradprobe.train import checkpoint

    real_save = checkpoint.torch.save

    def half_then_full(payload: object, path: object) -> None:
        Path(str(path)).write_bytes(b"\x00" * 4096)  # some of it made it to disk
        _enospc()

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint.torch, "save", half_then_full)
    code, _out, err = cli([*TRAIN, "--out", out], capsys)
    assert code == 1
    assert err.count("error:") == 1 and "Traceback" not in err
    assert re_search(r"no space left on the device holding .*/run .*while writing "
                     r"checkpoint\.pt\. Fix: free at least 4\.0 KiB there", err), err
    status = record.read_run_file(out / record.STATUS_FILE)
    assert status.state is record.RunState.FAILED
    assert list(out.glob("*.tmp")) == [] and list(out.glob(".*.tmp")) == []

    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    code, _out, err = cli([*TRAIN, "--out", out], capsys)
    assert code == 0, err
    assert record.read_run_file(out / record.STATUS_FILE).state is record.RunState.COMPLETED
    assert not (out / STATUS_FALLBACK).exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failing", ["status", "everything"])
def test_full_disk_when_writing_the_status_never_leaves_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        failing: str) -> None:
    """The end-of-epoch "running" status hits a full disk ("status"), or every write does from
    then on, the "failed" status included ("everything"): the failed status put aside earlier
    is renamed into place, which needs no space."""
    real_replace = os.replace
    full = {"on": False}

    def replace(source: object, target: object) -> None:
        name = Path(str(target)).name
        renaming_fallback = Path(str(source)).name == STATUS_FALLBACK
        if full["on"] and not renaming_fallback and (failing == "everything"
                                                     or name == record.STATUS_FILE):
            _enospc()
        real_replace(source, target)
        if name == "checkpoint.pt":
            full["on"] = True  # the end-of-epoch checkpoint filled the disk

    out = tmp_path / "run"
    monkeypatch.setattr(atomic.os, "replace", replace)
    code, _out, err = cli([*TRAIN, "--out", out], capsys)
    assert code == 1
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "no space left on the device holding" in err
    status = record.read_run_file(out / record.STATUS_FILE)
    assert status.state is record.RunState.FAILED
    assert "NoSpaceError" in status.message
    assert left_running(tmp_path) == []


@pytest.mark.timeout(300)
def test_full_disk_in_the_study_report_is_one_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs finish, then the figures fill the disk: exit 1, one message, no traceback."""
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _enospc)
    out = tmp_path / "out"
    code, _out, err = cli(["study", write_spec(tmp_path), "--out", out, "--preset", "smoke",
                           "--quiet", "--jobs", "1"], capsys)
    assert code == 1
    assert err.count("error:") == 1 and "Traceback" not in err
    assert re_search(r"no space left on the device holding .*figures.* while writing .*\.png",
                     err), err
    assert left_running(tmp_path) == []
    assert not any(path.name.endswith(".tmp") for path in out.rglob("*"))


@pytest.mark.timeout(300)
def test_a_killed_report_writers_temporaries_go_on_the_next_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["study", write_spec(tmp_path), "--out", out, "--preset", "smoke", "--quiet",
            "--jobs", "1"]
    assert cli(argv, capsys)[0] == 0
    stale = [out / record.FIGURES_DIR / ".overview.png.k1ll3d.tmp", out / ".report.md.x1.tmp"]
    for path in stale:
        path.write_bytes(b"")
    assert cli(argv, capsys)[0] == 0
    assert not any(path.exists() for path in stale)
    assert (out / record.REPORT_MD).is_file()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (root only); skips the test with the reason if not."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a real full disk needs `mount -t tmpfs`, which needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_full_disk_then_the_rerun_is_bit_identical(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a 96 KiB tmpfs the first checkpoint (~145 KiB) cannot be written: torch's C++ writer
    fails without an errno. Exit 1, one message, "failed"; on a larger disk the rerun ends
    with the numbers of a run that never met a full disk."""
    reference = tmp_path / "reference"
    assert main([*TRAIN, "--out", str(reference)]) == 0
    with tmpfs(tmp_path / "disk", "96k") as disk:
        code, _out, err = cli([*TRAIN, "--out", disk / "run"], capsys)
        assert code == 1
        assert err.count("error:") == 1 and "Traceback" not in err
        assert re_search(r"no space left on the device holding .*disk/run \(.* free\) while "
                         r"writing checkpoint\.pt", err), err
        assert record.read_run_file(disk / "run" / record.STATUS_FILE).state \
            is record.RunState.FAILED
        assert not any(path.name.endswith(".tmp") for path in (disk / "run").iterdir())
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        code, _out, err = cli([*TRAIN, "--out", disk / "run"], capsys)
        assert code == 0, err
        assert numbers(disk / "run") == numbers(reference)


def test_spec_file_is_read_with_the_bounded_loader(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "runs": [{"model": "mlp"}]}), "utf-8")
    assert load_spec(path).runs[0].model == "mlp"
