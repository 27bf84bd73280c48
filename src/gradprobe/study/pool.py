"""The worker processes a study owns: `execute_pool` trains at most N runs at once.

A worker takes one run at a time, so the scheduler always knows which run each holds: a worker
that dies fails that run alone and is replaced. The study's main process owns its workers:
they ignore the terminal's Ctrl-C (the main process stops them with SIGTERM), and end
themselves, recording their runs as interrupted, if the main process dies (even by SIGKILL).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from tqdm.auto import tqdm

from gradprobe import interrupts
from gradprobe.data import load_dataset_from_config
from gradprobe.interrupts import Interrupted, signal_name, signum_of
from gradprobe.progress import Progress, StudyClock, for_worker
from gradprobe.record import RunState
from gradprobe.study.executors import (
    GRACE_SECONDS,
    POLL_SECONDS,
    RunOutcome,
    RunTask,
    in_study_order,
    interrupted,
    mark_run,
    report_outcome,
    run_one,
)

# Outcomes a worker does not print itself: the study says them (a run another process holds,
# one stopped by the study's signal).
_UNSAID = (RunState.RUNNING, RunState.INTERRUPTED)


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

    clock = StudyClock(progress, len(tasks))

    def settle(worker: _Worker, outcome: RunOutcome) -> None:
        outcomes[outcome.name] = outcome
        if worker.died or outcome.state in _UNSAID:  # else the worker printed the run's end
            report_outcome(progress, outcome)
        if outcome.state is not RunState.INTERRUPTED:
            clock.run_ended(trained=not outcome.skipped)
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
                for worker, outcome in _collect(workers, POLL_SECONDS):
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
    return in_study_order(tasks, outcomes, caught)


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
        mark_run(task, RunState.INTERRUPTED, outcome.message)
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
        mark_run(task, state, message)
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
