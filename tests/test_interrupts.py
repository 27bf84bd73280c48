"""Interrupts with real processes and signals: Ctrl-C, SIGTERM, a killed worker, a killed study.

Every case starts `gradprobe study` as a child process in its own session (a process group of
its own, as a terminal would make it), signals it once a run has checkpointed, and checks what a
user would: the exit code, how long it took, that no run is left "running", no worker survives
and no lock is held, and that running the same command again ends bit-identical to a study that
was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from filelock import FileLock, Timeout

from checkout import checkout_env
from gradprobe import interrupts
from gradprobe.cli import main

# The promise: a study stops within a few seconds of the signal (measured: 1.5-3 s, a worker's
# interpreter exit included).
STOP_SECONDS = 5.0
START_TIMEOUT = 120.0  # a loaded machine can take long to import torch in every process

RUN_FILES = ("metrics.csv", "gradients.parquet", "summary.json")


def spec() -> dict:
    """Three runs of 15 tiny epochs: long enough to be caught mid-way, short enough to finish."""
    return {
        "name": "interrupt",
        "data": {"image_size": 16, "images_per_class": 32},
        "train": {"epochs": 15, "batch_size": 8, "max_steps_per_epoch": 8},
        "model": {"width": 0.25},
        "runs": [{"model": "plain_stack", "name": "a", "options": {"depth": 4}},
                 {"model": "plain_stack", "name": "b", "options": {"depth": 5}},
                 {"model": "residual_stack", "name": "c", "options": {"depth": 5}}],
        "comparison": {"runs": ["a", "b"]},
    }


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(yaml.safe_dump(spec()))
    return path


def command(spec_file: Path, out: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "gradprobe", "study", str(spec_file), "--preset", "smoke",
            "--out", str(out), "--jobs", str(jobs)]


class Study:
    """`gradprobe study` in a child process of its own session (the process group a terminal's
    Ctrl-C goes to, and not this test's); its output goes to files, so waiting for it never
    waits for a worker that holds a pipe."""

    def __init__(self, spec_file: Path, out: Path, jobs: int) -> None:
        self.out = out
        self.log = out.parent / f"{out.name}.err"
        with open(self.log, "w") as err:
            self.process = subprocess.Popen(command(spec_file, out, jobs), env=checkout_env(),
                                            start_new_session=True, stdout=subprocess.DEVNULL,
                                            stderr=err, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self) -> tuple[int, str]:
        code = self.process.wait(timeout=300)
        return code, self.log.read_text()

    def wait_until_training(self, runs: int = 1) -> None:
        """Until `runs` runs have a checkpoint (each then resumes from one, not from step 0)."""
        deadline = time.monotonic() + START_TIMEOUT
        while len(list(self.out.glob("runs/*/checkpoint.pt"))) < runs:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "no run checkpointed in time"
            time.sleep(0.05)


def finish(spec_file: Path, out: Path, jobs: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(spec_file, out, jobs), "--quiet"], env=checkout_env(),
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def reference(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study trained without interruption, in one process."""
    out = tmp_path_factory.mktemp("reference") / "study"
    done = finish(spec_file, out, jobs=1)
    assert done.returncode == 0, done.stderr
    return out


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`, each with its command line (Linux /proc)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(
                    b"\0", b" ").decode()
    return found


def workers(pid: int) -> list[int]:
    """The study's worker processes (not multiprocessing's resource tracker)."""
    return [child for child, line in children(pid).items() if "spawn_main" in line]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def states(out: Path) -> dict[str, str]:
    return {status.parent.name: json.loads(status.read_text())["state"]
            for status in sorted(out.glob("runs/*/status.json"))}


def assert_no_lock_held(out: Path) -> None:
    for lock_file in out.glob("runs/*/.lock"):
        lock = FileLock(str(lock_file), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            pytest.fail(f"{lock_file} is still held")
        lock.release()


def assert_identical_runs(out: Path, reference: Path) -> None:
    """Every run file and the final weights equal the uninterrupted study's, bit for bit
    (wall-clock seconds aside)."""
    names = sorted(path.name for path in (reference / "runs").iterdir())
    assert sorted(path.name for path in (out / "runs").iterdir()) == names
    for name in names:
        run, expected = out / "runs" / name, reference / "runs" / name
        metrics = pd.read_csv(run / "metrics.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(
            metrics, pd.read_csv(expected / "metrics.csv").drop(columns="seconds"),
            check_exact=True)
        gradients = pd.read_parquet(run / "gradients.parquet")
        assert len(gradients) > 0
        pd.testing.assert_frame_equal(gradients, pd.read_parquet(expected / "gradients.parquet"),
                                      check_exact=True)
        summary, want = (json.loads((path / "summary.json").read_text())
                         for path in (run, expected))
        summary.pop("seconds"), want.pop("seconds")
        assert summary == want, name
        weights, want_weights = (torch.load(path / "checkpoint.pt", weights_only=True)["model"]
                                 for path in (run, expected))
        assert list(weights) == list(want_weights)
        for key, tensor in weights.items():
            assert np.array_equal(tensor.numpy(), want_weights[key].numpy()), (name, key)


# ----------------------------------------------------------------- the signal, as exceptions


def test_sigterm_and_sigint_become_interrupted_with_their_exit_codes() -> None:
    assert (interrupts.Interrupted(signal.SIGINT).exit_code,
            interrupts.Interrupted(signal.SIGTERM).exit_code) == (130, 143)
    with pytest.raises(interrupts.Interrupted, match="SIGTERM") as caught, interrupts.handling():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once, in this (the main) thread
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_deferred_signals_are_counted_not_raised() -> None:
    with interrupts.handling(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert interrupts.received() == [signal.SIGINT, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------- whole studies


@pytest.mark.slow
@pytest.mark.parametrize(("jobs", "signum", "to_group"), [
    (2, signal.SIGINT, True),  # Ctrl-C in a terminal: the whole process group
    (2, signal.SIGTERM, False),  # `kill PID`, a scheduler's stop: the main process only
    (2, signal.SIGINT, False),  # SIGINT to the main process alone
    (1, signal.SIGINT, True),
    (1, signal.SIGTERM, False),
], ids=["pool-ctrl-c", "pool-sigterm", "pool-sigint-main", "local-ctrl-c", "local-sigterm"])
def test_an_interrupted_study_stops_within_seconds_and_resumes_bit_identically(
        spec_file: Path, reference: Path, tmp_path: Path, jobs: int, signum: int,
        to_group: bool) -> None:
    out = tmp_path / "study"
    study = Study(spec_file, out, jobs)
    study.wait_until_training()
    pool = workers(study.pid)
    assert len(pool) == (2 if jobs == 2 else 0)
    sent = time.monotonic()
    (os.killpg if to_group else os.kill)(study.pid, signum)
    code, err = study.wait()
    seconds = time.monotonic() - sent
    print(f"{signal.Signals(signum).name} {'group' if to_group else 'main'} jobs={jobs}: "
          f"exit {code} after {seconds:.2f} s")
    assert code == 128 + signum, err
    assert seconds < STOP_SECONDS, err
    assert wait_gone(pool, 0) == []  # no orphan: every worker ended with the study
    left = states(out)
    assert "running" not in left.values(), left
    assert "interrupted" in left.values(), left
    assert len(left) < 3, left  # queued runs never started
    assert "not started" in err
    assert_no_lock_held(out)
    assert "no report was written" in err
    assert not (out / "report.html").exists()
    again = finish(spec_file, out, jobs=1)  # any executor resumes any run (test_study)
    assert again.returncode == 0, again.stderr
    assert set(states(out).values()) == {"completed"}
    assert_identical_runs(out, reference)


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_own_run(spec_file: Path, reference: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "study"
    study = Study(spec_file, out, jobs=2)
    study.wait_until_training(runs=2)
    victim = workers(study.pid)[0]
    os.kill(victim, signal.SIGKILL)
    code, err = study.wait()
    assert code == 1, err
    left = states(out)
    failed = [name for name, state in left.items() if state == "failed"]
    assert len(failed) == 1 and len(left) == 3, left  # the other two finished
    assert set(left.values()) == {"failed", "completed"}
    status = json.loads((out / "runs" / failed[0] / "status.json").read_text())
    assert "worker process died (killed by SIGKILL)" in status["message"]
    assert f"run '{failed[0]}' failed" in err and "1 of 3 runs did not finish" in err
    assert_no_lock_held(out)
    again = finish(spec_file, out, jobs=1)
    assert again.returncode == 0, again.stderr
    assert_identical_runs(out, reference)


@pytest.mark.slow
def test_workers_end_when_the_study_process_is_killed(spec_file: Path, reference: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "study"
    study = Study(spec_file, out, jobs=2)
    study.wait_until_training(runs=2)
    pool = workers(study.pid)
    assert len(pool) == 2
    killed = time.monotonic()
    study.process.kill()  # SIGKILL: no handler runs in the main process
    assert wait_gone(pool, STOP_SECONDS) == [], "workers outlived the study"
    study.process.wait(timeout=60)
    print(f"workers gone {time.monotonic() - killed:.2f} s after SIGKILL of the study")
    left = states(out)
    assert "running" not in left.values(), left  # each worker recorded its own interrupt
    assert_no_lock_held(out)
    again = finish(spec_file, out, jobs=1)
    assert again.returncode == 0, again.stderr
    assert_identical_runs(out, reference)


@pytest.mark.slow
def test_an_interrupted_scan_says_it_starts_over_and_leaves_no_empty_out(
        tmp_path: Path) -> None:
    out = tmp_path / "scan"
    process = subprocess.Popen(
        [sys.executable, "-m", "gradprobe", "scan", "--out", str(out), "--depths", "4", "8", "16",
         "32", "--seeds", "8"], env=checkout_env(), start_new_session=True,
        stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first = process.stderr.readline()  # "[1/...] ...": measuring
    assert first.startswith("[1/"), first
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "a scan does not resume: the same command starts it over" in err
    assert not out.exists()


# ------------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_address_nothing_listens_on_is_refused_at_once_and_nothing_is_written(
        spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="Ray is the optional extra gradprobe[ray]")
    out = tmp_path / "study"
    assert main(["study", str(spec_file), "--preset", "smoke", "--out", str(out),
                 "--executor", "ray", "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in err
    assert "ray start --head" in err
    assert not out.exists()


# ------------------------------------------------------------------------ stale temporaries


@pytest.mark.slow
def test_a_killed_report_writers_temporary_files_go_on_the_next_start(
        tmp_path: Path) -> None:
    from gradprobe.study import run_study

    out = tmp_path / "study"
    stale = [out / "figures" / ".ratios.png.x1y2.tmp", out / ".report.html.abc.tmp",
             out / "runs" / "plain_stack" / ".checkpoint.pt.q9.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    small = {"name": "tiny", "data": {"image_size": 16, "images_per_class": 16},
             "train": {"epochs": 1, "batch_size": 8}, "model": {"width": 0.25},
             "runs": [{"model": "plain_stack", "options": {"depth": 3}}]}
    run_study(small, out, preset="smoke", write_report=False)
    assert [path for path in stale if path.exists()] == []
