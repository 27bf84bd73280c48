"""Executors: who trains a study's runs. In process, a process pool, or Ray tasks.

Every executor calls the same `run_one`, and gradprobe's own checkpoints are the source of truth
for resuming, whoever runs a run: an executor never restarts a run from step 0 behind the
trainer's back (Ray Tune's experiment restore can; we use plain Ray tasks instead). Nor does an
executor change a run's numbers: the trainer sets the run's own thread count
(`TrainConfig.threads`), so local, pool and Ray runs are bit-identical.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradprobe.config import DataConfig, RunConfig
from gradprobe.data import Splits, load_dataset_from_config
from gradprobe.errors import InputError
from gradprobe.progress import Progress, StudyClock, for_worker
from gradprobe.record import RunState
from gradprobe.train.rundir import RunBusyError


@dataclass(frozen=True)
class RunTask:
    name: str
    config: RunConfig
    run_dir: Path
    force: bool = False  # train it again from scratch even when finished


@dataclass(frozen=True)
class RunOutcome:
    name: str
    # completed | diverged (results) | failed | running (busy: another process trains it)
    state: RunState
    message: str = ""
    skipped: bool = False  # finished before this study invocation: left alone


def run_one(task: RunTask, progress: Progress,
            load_data: Callable[[DataConfig], Splits] = load_dataset_from_config) -> RunOutcome:
    """Train one run; never raises for a run's own failure (the run directory records it)."""
    from gradprobe.train import train

    try:
        result = train(task.config, task.run_dir, name=task.name, force=task.force,
                       progress=progress, load_data=load_data, record_refusal=True)
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
    clock = StudyClock(progress, len(tasks))
    outcomes = []
    for task in tasks:
        outcomes.append(run_one(task, progress, load_data))
        clock.run_ended(trained=not outcomes[-1].skipped)
    return outcomes


def execute_pool(tasks: list[RunTask], jobs: int, progress: Progress) -> list[RunOutcome]:
    """N runs at once in worker processes; each run sets its own thread count."""
    context = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    worker_progress = for_worker(progress)
    clock = StudyClock(progress, len(tasks))
    outcomes: dict[str, RunOutcome] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(run_one, task, worker_progress): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()  # the worker printed the run's end itself
            except Exception as error:  # the worker process itself died
                outcome = RunOutcome(task.name, RunState.FAILED, f"worker died: {error}")
                _report(progress, outcome)
            clock.run_ended(trained=not outcome.skipped)
            outcomes[task.name] = outcome
    return [outcomes[task.name] for task in tasks]


def execute_ray(tasks: list[RunTask], progress: Progress, address: str | None = None,
                gpus_per_run: float | None = None) -> list[RunOutcome]:
    """Each run a Ray task with its own CPU/GPU share, writing into the (shared) study directory."""
    try:
        import ray
    except ImportError as error:
        raise InputError('--executor ray needs Ray: pip install "gradprobe[ray]".') from error

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=True,
                 include_dashboard=False)
    try:
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        cpus = ray.cluster_resources().get("CPU", 0)
        threads = max(task.config.train.threads for task in tasks)
        if threads > cpus:  # such a task would wait for its CPUs forever
            raise InputError(f"a run asks for {threads} threads (train.threads) but the Ray "
                             f"cluster has {cpus:g} CPUs; lower train.threads in the spec.")
        remote = ray.remote(num_gpus=gpus_per_run, max_retries=0)(run_one)
        worker_progress = for_worker(progress)
        # Each task reserves as many CPUs as the threads its run computes with.
        pending = {remote.options(num_cpus=task.config.train.threads)
                   .remote(task, worker_progress): task for task in tasks}
        clock = StudyClock(progress, len(tasks))
        outcomes: dict[str, RunOutcome] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])  # the task printed the run's end itself
            except Exception as error:  # the task's worker died (node lost, OOM kill, ...)
                outcome = RunOutcome(task.name, RunState.FAILED, f"Ray task failed: {error}")
                _report(progress, outcome)
            clock.run_ended(trained=not outcome.skipped)
            outcomes[task.name] = outcome
        return [outcomes[task.name] for task in tasks]
    finally:
        if started_here:
            ray.shutdown()


def _report(progress: Progress, outcome: RunOutcome) -> None:
    detail = f": {outcome.message}" if outcome.message else ""
    progress.message(f"{outcome.name}: {outcome.state}{detail}")
