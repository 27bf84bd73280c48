"""Ray: each run a Ray task with its own CPU/GPU share, writing into the shared study directory.

`ray_cluster` connects (or starts Ray) and checks the cluster before the study writes a file;
`run_ray` runs the tasks and, on SIGINT or SIGTERM, cancels them (a running task gets a
KeyboardInterrupt and records its run as interrupted).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gradprobe import interrupts, record
from gradprobe.errors import InputError
from gradprobe.progress import EpochBar, NullProgress, Progress, StudyClock, for_worker
from gradprobe.record import RunState
from gradprobe.study.executors import (
    GRACE_SECONDS,
    POLL_SECONDS,
    RunOutcome,
    RunTask,
    in_study_order,
    interrupted,
    mark_run,
    not_started,
    report_outcome,
    run_one,
)


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


def run_ray(tasks: list[RunTask], progress: Progress, gpus_per_run: float) -> list[RunOutcome]:
    """The runs as Ray tasks on the cluster `ray_cluster` connected to. On SIGINT or SIGTERM
    the tasks are cancelled (a running one gets a KeyboardInterrupt and records it).

    The tasks' lines reach `progress` through a Ray queue, each once: Ray's own forwarding of a
    worker's stderr prints a line once per Ray node on the worker's machine (ray#10392), and
    drops the last lines when Ray shuts down."""
    import ray

    remote = ray.remote(num_gpus=gpus_per_run, max_retries=0)(run_one)
    lines = _Lines(progress)
    outcomes: dict[str, RunOutcome] = {}
    clock = StudyClock(progress, len(tasks))
    try:
        with interrupts.handling(), interrupts.deferred():
            # Each task reserves as many CPUs as the threads its run computes with.
            pending = {remote.options(num_cpus=task.config.train.threads)
                       .remote(task, lines.worker_progress): task for task in tasks}
            while pending and not interrupts.received():
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                lines.print()
                for ref in done:
                    task = pending.pop(ref)
                    outcome = outcomes[task.name] = _ray_outcome(ray, ref, task)
                    if outcome.message.startswith(_TASK_FAILED) or \
                            outcome.state is RunState.RUNNING:  # else the task printed its end
                        report_outcome(progress, outcome)
                    clock.run_ended(trained=not outcome.skipped)
            caught = interrupts.received()
            if caught:
                for ref in pending:
                    ray.cancel(ref)
                # cancelled tasks end once their runs recorded the interrupt (or the grace ends)
                ray.wait(list(pending), num_returns=len(pending), timeout=GRACE_SECONDS)
                lines.print()
                for task in pending.values():
                    outcomes[task.name] = _cancelled_outcome(task, caught[0])
    finally:
        lines.close()
    return in_study_order(tasks, outcomes, caught)


class _QueueProgress:
    """A Ray task's Progress: each line onto the driver's queue; no bars."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def message(self, text: str) -> None:
        self._queue.put(text)

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> EpochBar:
        return NullProgress().epoch_bar(description, total, initial)


class _Lines:
    """The driver's end of the tasks' lines: a Ray queue (none when `progress` is silent)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._queue: Any = None
        self.worker_progress: Progress = for_worker(progress)
        if not isinstance(self.worker_progress, NullProgress):
            from ray.util.queue import Queue

            self._queue = Queue(actor_options={"num_cpus": 0})
            self.worker_progress = _QueueProgress(self._queue)

    def print(self) -> None:
        if self._queue is not None:
            for text in self._queue.get_nowait_batch(self._queue.qsize()):
                self._progress.message(text)

    def close(self) -> None:
        if self._queue is not None:
            self.print()
            self._queue.shutdown()


_TASK_FAILED = "Ray task failed"  # the task's own process died: nobody printed its end


def _ray_outcome(ray: Any, ref: Any, task: RunTask) -> RunOutcome:
    try:
        return ray.get(ref)
    except Exception as error:  # the task's worker died (node lost, OOM kill, ...)
        return RunOutcome(task.name, RunState.FAILED, f"{_TASK_FAILED}: {error}")


def _cancelled_outcome(task: RunTask, signum: int) -> RunOutcome:
    """A cancelled Ray task, from what its run recorded: finished (the result had not reached
    this process yet), interrupted, or not started. A worker killed before it recorded the
    interrupt left "running": marked "interrupted" here."""
    mark_run(task, RunState.INTERRUPTED, interrupted(task, signum).message)
    try:
        status = record.read_run_file(task.run_dir / record.STATUS_FILE)
    except InputError:
        status = None
    if status is not None and status.state in record.FINISHED_STATES:
        return RunOutcome(task.name, status.state)
    if status is not None and status.state is RunState.INTERRUPTED:
        return interrupted(task, signum)
    return not_started(task)
