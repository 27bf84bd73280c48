"""Executors: who trains a study's runs. In process, worker processes, or Ray tasks.

Every executor calls the same `run_one`, and gradprobe's own checkpoints are the source of truth
for resuming, whoever runs a run: an executor never restarts a run from step 0 behind the
trainer's back (Ray Tune's experiment restore can; we use plain Ray tasks instead). Nor does an
executor change a run's numbers: the trainer sets the run's own thread count
(`TrainConfig.threads`), so local, pool and Ray runs are bit-identical.

Interrupts (see `gradprobe.interrupts`): on SIGINT or SIGTERM every executor stops within
seconds: queued runs never start (reported "not started"), running runs are marked
"interrupted" and resume from their last checkpoint, and `StudyInterrupted` carries every run's
outcome up to the command line.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gradprobe import interrupts, record
from gradprobe.config import DataConfig, RunConfig
from gradprobe.data import Splits, load_dataset_from_config
from gradprobe.errors import InputError
from gradprobe.interrupts import Interrupted, signal_name, signum_of
from gradprobe.progress import Progress, for_worker
from gradprobe.record import RunState
from gradprobe.train.rundir import RunBusyError, RunDirectory

# How long interrupted workers get to record "interrupted" before they are killed (a second
# signal kills them at once). Measured: a training worker stops in well under a second.
GRACE_SECONDS = 3.0
_POLL_SECONDS = 0.25  # how often a waiting scheduler looks at the signals it caught


@dataclass(frozen=True)
class RunTask:
    name: str
    config: RunConfig
    run_dir: Path


@dataclass(frozen=True)
class RunOutcome:
    name: str
    # completed | diverged (results) | failed | running (busy: another process trains it)
    # | interrupted (resumable) | missing (not started: the study was interrupted first)
    state: RunState
    message: str = ""
    skipped: bool = False  # finished before this study invocation: left alone

    @property
    def started(self) -> bool:
        return self.state is not RunState.MISSING


class StudyInterrupted(Interrupted):
    """A study stopped by SIGINT or SIGTERM; `outcomes` holds every run's, in the study's order."""

    def __init__(self, signum: int, outcomes: list[RunOutcome]) -> None:
        super().__init__(signum)
        self.outcomes = outcomes


def not_started(task: RunTask) -> RunOutcome:
    return RunOutcome(task.name, RunState.MISSING, "not started")


def interrupted(task: RunTask, signum: int) -> RunOutcome:
    return RunOutcome(task.name, RunState.INTERRUPTED,
                      f"interrupted by {signal_name(signum)}; resumes from its last checkpoint")


def run_one(task: RunTask, progress: Progress,
            load_data: Callable[[DataConfig], Splits] = load_dataset_from_config) -> RunOutcome:
    """Train one run; never raises for a run's own failure (the run directory records it).
    An interrupt (KeyboardInterrupt, `Interrupted`) propagates: the trainer recorded it."""
    from gradprobe.train import train

    try:
        result = train(task.config, task.run_dir, name=task.name, progress=progress,
                       load_data=load_data, record_refusal=True)
    except RunBusyError as error:
        return RunOutcome(task.name, RunState.RUNNING, str(error))
    except Exception as error:  # recorded with its traceback in the run's status.json
        progress.message(f"{task.name}: failed: {type(error).__name__}: {error}")
        return RunOutcome(task.name, RunState.FAILED, f"{type(error).__name__}: {error}")
    return RunOutcome(task.name, result.state, skipped=result.skipped)


def execute_local(tasks: list[RunTask], progress: Progress) -> list[RunOutcome]:
    """One run after another in this process; each distinct dataset is loaded once."""
    # The trainer's own loader, memoised: DataConfig is frozen, hence a hashable key.
    load_data = functools.cache(load_dataset_from_config)
    outcomes: list[RunOutcome] = []
    with interrupts.handling():
        for task in tasks:
            try:
                outcomes.append(run_one(task, progress, load_data))
            except KeyboardInterrupt as interrupt:
                signum = signum_of(interrupt)
                outcomes.append(interrupted(task, signum))
                outcomes += [not_started(rest) for rest in tasks[len(outcomes):]]
                raise StudyInterrupted(signum, outcomes) from None
    return outcomes


# ------------------------------------------------------------------------- worker processes


def execute_pool(tasks: list[RunTask], jobs: int, progress: Progress) -> list[RunOutcome]:
    """At most `jobs` runs at once, each in a worker process this process owns.

    A worker takes one run at a time, so the scheduler always knows which run each holds: a
    worker that dies fails that run alone (its status says so) and is replaced. SIGINT or
    SIGTERM stop the queue, ask every worker to stop (SIGTERM: the run is marked "interrupted"),
    kill those still alive after `GRACE_SECONDS`, and raise `StudyInterrupted`. Workers ignore
    the terminal's Ctrl-C (this process forwards it) and end themselves if this process dies.
    """
    context = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    worker_progress = for_worker(progress)
    queue = deque(tasks)
    outcomes: dict[str, RunOutcome] = {}
    workers: list[_Worker] = []
    leaving: list[_Worker] = []  # told there is nothing more: exiting by themselves
    caught: list[int] = []

    def settle(worker: _Worker, outcome: RunOutcome) -> None:
        outcomes[outcome.name] = outcome
        _report(progress, outcome)
        if not worker.alive and worker in workers:
            worker.end()
            workers.remove(worker)

    with interrupts.handling(), interrupts.deferred():
        try:
            while (queue or any(worker.task for worker in workers)) and \
                    not interrupts.received():
                for worker in [w for w in workers if w.task is None]:
                    if queue:
                        worker.assign(queue.popleft())
                    else:  # nothing left to give it: let it go (joined at the end)
                        worker.release()
                        workers.remove(worker)
                        leaving.append(worker)
                while queue and len(workers) < jobs:
                    workers.append(_Worker(context, worker_progress))
                    workers[-1].assign(queue.popleft())
                for worker, outcome in _collect(workers, _POLL_SECONDS):
                    settle(worker, outcome)
            caught = interrupts.received()
            if caught:
                _stop_workers(workers, caught[0], progress, settle)
        finally:  # also on an error of this process's own: no worker outlives the study
            for worker in workers + leaving:
                if caught:  # every run is recorded: a worker's slow exit must not delay ours
                    worker.end()
                else:
                    worker.retire()
    ordered = [outcomes.get(task.name) or not_started(task) for task in tasks]
    if caught:
        raise StudyInterrupted(caught[0], ordered)
    return ordered


def _stop_workers(workers: list[_Worker], signum: int, progress: Progress,
                  settle: Callable[[_Worker, RunOutcome], None]) -> None:
    """Ask every worker to stop, collect what the busy ones report, kill the rest."""
    busy = [worker for worker in workers if worker.task is not None]
    progress.message(f"{signal_name(signum)}: stopping {len(busy)} running run(s); queued runs "
                     "will not start")
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + GRACE_SECONDS
    # a second signal: stop waiting, kill them now
    while any(w.task for w in workers) and time.monotonic() < deadline and \
            len(interrupts.received()) < 2:
        for worker, outcome in _collect(workers, 0.05):
            if outcome.state is RunState.INTERRUPTED:  # named by the study's signal, not SIGTERM
                outcome = RunOutcome(outcome.name, outcome.state,
                                     interrupted(worker.last_task, signum).message)
            settle(worker, outcome)
    for worker in [w for w in workers if w.task is not None]:
        task = worker.task
        worker.end()
        outcome = interrupted(task, signum)
        _mark_run(task, RunState.INTERRUPTED, outcome.message)
        settle(worker, outcome)


class _Worker:
    """One worker process and the pipe that gives it runs and returns their outcomes."""

    def __init__(self, context: SpawnContext, progress: Progress) -> None:
        self.conn, child = context.Pipe()
        self.process: SpawnProcess = context.Process(
            target=_worker_main, args=(child, os.getpid(), progress), daemon=True,
            name="gradprobe-worker")
        # The terminal's Ctrl-C reaches this process only, which then stops the workers itself
        # (SIGTERM): a worker never dies half-way through recording its run.
        with _sigint_ignored_by_children():
            self.process.start()
        child.close()
        self.task: RunTask | None = None
        self.last_task: RunTask | None = None
        self.died = False
        self.stopping = False  # told to stop: a death now is the interrupt's, not a failure

    @property
    def alive(self) -> bool:
        return not self.died and self.process.is_alive()

    def assign(self, task: RunTask) -> None:
        self.task = self.last_task = task
        with suppress(OSError):  # it is already dead: collect() reports the run as its worker's
            self.conn.send(task)

    def receive(self) -> RunOutcome | None:
        """The outcome of its run, a failure if the process died, None if neither yet."""
        task = self.task
        assert task is not None  # only busy workers are polled; not user input
        try:
            if self.conn.poll():
                outcome: RunOutcome = self.conn.recv()
                self.task = None
                return outcome
        except (EOFError, OSError):
            pass
        if self.process.is_alive():
            return None
        self.process.join()
        self.task, self.died = None, True
        how = _exit_text(self.process.exitcode)
        state = RunState.INTERRUPTED if self.stopping else RunState.FAILED
        message = (f"its worker process ended ({how}) while stopping; it resumes from its last "
                   "checkpoint" if self.stopping else
                   f"its worker process died ({how}) while training it; rerun the study to "
                   "resume it from its last checkpoint")
        _mark_run(task, state, message)
        return RunOutcome(task.name, state, message)

    def stop(self) -> None:
        """Ask it to stop (SIGTERM): its run is recorded "interrupted", then it exits."""
        self.stopping = True
        if self.process.is_alive():
            with suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)  # type: ignore[arg-type]

    def release(self) -> None:
        """No more runs for it: it exits by itself."""
        if self.task is None and not self.died:
            with suppress(OSError):
                self.conn.send(None)

    def retire(self) -> None:
        """Release it and wait for its exit (a little); kill it if it is still alive then."""
        if self.task is None and not self.died:
            self.release()
            self.process.join(timeout=5)
        self.end()

    def end(self) -> None:
        """Make sure the process is gone (killed if it is still alive)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        self.died = True


def _collect(workers: list[_Worker], timeout: float) -> list[tuple[_Worker, RunOutcome]]:
    """Outcomes that arrived (or deaths that happened) within `timeout` seconds."""
    busy = [worker for worker in workers if worker.task is not None]
    if not busy:
        return []
    handles: list[Any] = [worker.conn for worker in busy]
    handles += [worker.process.sentinel for worker in busy]
    ready = wait(handles, timeout)
    results = []
    for worker in busy:
        if worker.conn in ready or worker.process.sentinel in ready:
            outcome = worker.receive()
            if outcome is not None:
                results.append((worker, outcome))
    return results


def _worker_main(conn: Connection, parent_pid: int, progress: Progress) -> None:
    """A worker process: train the runs it is sent, one at a time, until told to stop."""
    interrupts.exit_with_parent(parent_pid)
    # tqdm's default lock is a multiprocessing one, a semaphore that a killed worker would leak;
    # this process's lines need only a thread lock.
    tqdm.set_lock(threading.RLock())
    load_data = functools.cache(load_dataset_from_config)  # each dataset loaded once per worker
    task: RunTask | None = None
    # SIGTERM only: SIGINT stays ignored (see _Worker), the main process stops its workers
    with interrupts.handling((signal.SIGTERM,)):
        try:
            while not interrupts.received():
                task = conn.recv()
                if task is None:
                    return
                outcome = run_one(task, progress, load_data)
                with interrupts.deferred():  # a signal must not cut a message in half
                    conn.send(outcome)
                task = None
        except KeyboardInterrupt as interrupt:  # the trainer marked the run "interrupted"
            if task is not None:
                _send(conn, interrupted(task, signum_of(interrupt)))
            # Everything is recorded (every file was written atomically): skip the interpreter's
            # slow teardown (torch's, seconds on a loaded machine), the study waits for it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(interrupt.exit_code if isinstance(interrupt, Interrupted) else 130)
        except (EOFError, OSError):  # the main process is gone
            pass


def _send(conn: Connection, outcome: RunOutcome) -> None:
    try:
        with interrupts.deferred():
            conn.send(outcome)
    except OSError:  # the main process is gone: the run's status.json says it all
        pass


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Processes started inside ignore SIGINT (an ignored signal stays ignored across exec, and
    Python then leaves it so). SIGINT is blocked meanwhile, so one that arrives is not lost but
    delivered to this process's own handler afterwards."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _exit_text(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal_name(-exitcode)}"
    return f"exit code {exitcode}"


def _mark_run(task: RunTask, state: RunState, message: str) -> None:
    """Record `state` for a run whose process ended without recording it (status "running").
    Only under the run's lock, which a killed process no longer holds; a run another process
    trains, or one that never wrote a status, is left alone."""
    if not (task.run_dir / record.STATUS_FILE).is_file():
        return
    try:
        lock = RunDirectory(task.run_dir).lock()
    except (InputError, OSError):
        return
    try:
        status = record.read_run_file(task.run_dir / record.STATUS_FILE)
        if status is not None and status.state is RunState.RUNNING:
            record.write_status(task.run_dir, state, epoch=status.epoch, step=status.step,
                                message=message)
    except (InputError, OSError):  # damaged or unwritable: the resume repairs it
        pass
    finally:
        lock.release()


# ------------------------------------------------------------------------------------- Ray


@contextmanager
def ray_cluster(tasks: list[RunTask], address: str | None = None) -> Iterator[float]:
    """Connect to (or start) Ray and check the cluster can run `tasks`; yield the GPUs per run.

    Everything here fails fast and before the study writes a file: Ray missing, an address
    nothing listens on (Ray itself would retry for minutes), runs asking for more threads than
    the cluster has CPUs."""
    try:
        import ray
    except ImportError as error:
        raise InputError('--executor ray needs Ray: pip install "gradprobe[ray]".') from error

    started_here = not ray.is_initialized()
    if started_here:
        check_ray_address(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=True,
                     include_dashboard=False)
        except (ConnectionError, RuntimeError) as error:  # e.g. the cluster wants a token
            cause = error.__cause__ or error
            raise InputError(
                f"cannot connect to the Ray cluster at {address or 'this machine'}: "
                f"{str(cause).splitlines()[0]}\nFix the address or the cluster's access (see "
                "`ray status` on its head node), or leave --ray-address out to start Ray here."
            ) from None
    try:
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 0)
        threads = max((task.config.train.threads for task in tasks), default=1)
        if threads > cpus:  # such a task would wait for its CPUs forever
            raise InputError(f"a run asks for {threads} threads (train.threads) but the Ray "
                             f"cluster has {cpus:g} CPUs; lower train.threads in the spec.")
        yield 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    finally:
        if started_here:
            ray.shutdown()


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Refuse at once a `host:port` (or `ray://host:port`) that nothing answers on."""
    if not address or address == "auto" or address.startswith("local"):
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT, or "
                         "auto); pass the address `ray start --head` printed.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"cannot reach a Ray cluster at {address} ({reason}). Start one with `ray start "
            "--head` and pass the address it prints, or leave --ray-address out to start Ray "
            "on this machine.") from None


def execute_ray(tasks: list[RunTask], progress: Progress, address: str | None = None,
                gpus_per_run: float | None = None) -> list[RunOutcome]:
    """Each run a Ray task with its own CPU/GPU share, writing into the (shared) study directory."""
    with ray_cluster(tasks, address) as gpus:
        return run_ray(tasks, progress, gpus if gpus_per_run is None else gpus_per_run)


def run_ray(tasks: list[RunTask], progress: Progress, gpus_per_run: float) -> list[RunOutcome]:
    """The runs as Ray tasks on the cluster `ray_cluster` connected to. On SIGINT or SIGTERM
    the tasks are cancelled (a running one gets a KeyboardInterrupt and records it)."""
    import ray

    remote = ray.remote(num_gpus=gpus_per_run, max_retries=0)(run_one)
    worker_progress = for_worker(progress)
    outcomes: dict[str, RunOutcome] = {}
    with interrupts.handling(), interrupts.deferred():
        # Each task reserves as many CPUs as the threads its run computes with.
        pending = {remote.options(num_cpus=task.config.train.threads)
                   .remote(task, worker_progress): task for task in tasks}
        while pending and not interrupts.received():
            done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
            for ref in done:
                task = pending.pop(ref)
                outcomes[task.name] = _ray_outcome(ray, ref, task)
                _report(progress, outcomes[task.name])
        caught = interrupts.received()
        if caught:
            for ref in pending:
                ray.cancel(ref)
            # cancelled tasks end once their runs recorded the interrupt (or after the grace)
            ray.wait(list(pending), num_returns=len(pending), timeout=GRACE_SECONDS)
            for task in pending.values():
                outcomes[task.name] = _cancelled_outcome(task, caught[0])
    ordered = [outcomes.get(task.name) or not_started(task) for task in tasks]
    if caught:
        raise StudyInterrupted(caught[0], ordered)
    return ordered


def _ray_outcome(ray: Any, ref: Any, task: RunTask) -> RunOutcome:
    try:
        return ray.get(ref)
    except Exception as error:  # the task's worker died (node lost, OOM kill, ...)
        return RunOutcome(task.name, RunState.FAILED, f"Ray task failed: {error}")


def _cancelled_outcome(task: RunTask, signum: int) -> RunOutcome:
    """A cancelled Ray task, from what its run recorded: finished (the result had not reached
    this process yet), interrupted, or not started. A worker killed before it recorded the
    interrupt left "running": marked "interrupted" here."""
    _mark_run(task, RunState.INTERRUPTED, interrupted(task, signum).message)
    try:
        status = record.read_run_file(task.run_dir / record.STATUS_FILE)
    except InputError:
        status = None
    if status is not None and status.state in record.FINISHED_STATES:
        return RunOutcome(task.name, status.state)
    if status is not None and status.state is RunState.INTERRUPTED:
        return interrupted(task, signum)
    return not_started(task)


def _report(progress: Progress, outcome: RunOutcome) -> None:
    detail = f": {outcome.message}" if outcome.message else ""
    progress.message(f"{outcome.name}: {outcome.state}{detail}")
