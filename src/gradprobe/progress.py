"""The one channel through which the library reports progress.

Library code never prints; it calls a `Progress`. The CLI passes a `ConsoleProgress` (or a
`NullProgress` for --quiet); library users get `NullProgress` (silence) unless they pass their
own. A study's worker processes report through `for_worker(progress)`, so --quiet reaches them.

Besides the protocol, two helpers that only compose lines and hand them to a `Progress`:
`StudyClock` (runs done of N, elapsed, time left) and `RunPace` (how long a long run will take,
from its first timed steps).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from tqdm.auto import tqdm

# Without a terminal, a line inside an epoch this often: enough to see a run is alive (a log
# file, a pool worker, CI), few enough to read.
LINE_INTERVAL_SECONDS = 20.0
# A run estimated to take longer than this says so, and how long, after its first steps.
LONG_RUN_SECONDS = 180.0
# Steps timed before the estimate; the first step of a process (allocations, kernel choice) is
# left out of the timing.
TIMED_STEPS = 3
# An evaluation batch (forward only) costs about a third of a training step (forward + backward).
EVAL_STEP_FRACTION = 1 / 3

Clock = Callable[[], float]


class EpochBar(Protocol):
    def update(self, loss: float, accuracy: float | None) -> None: ...
    def close(self) -> None: ...


class Progress(Protocol):
    def message(self, text: str) -> None:
        """One line for the user (run started, resumed, completed, diverged...)."""

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> EpochBar:
        """A bar for one epoch's optimiser steps."""


class _NullBar:
    def update(self, loss: float, accuracy: float | None) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress:
    """Reports nothing."""

    def message(self, text: str) -> None:
        pass

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> EpochBar:
        return _NullBar()


class _TqdmBar:
    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._accuracy: float | None = None  # unknown until the trainer first measures it

    def update(self, loss: float, accuracy: float | None) -> None:
        if accuracy is not None:
            self._accuracy = accuracy
        postfix = {"loss": f"{loss:.4f}"}
        if self._accuracy is not None:
            postfix["acc"] = f"{self._accuracy:.3f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


class _LineBar:
    """An epoch's progress as a line every `interval` seconds: a bar's redraws would fill a log
    file, and no line at all leaves a long epoch silent."""

    def __init__(self, write: Callable[[str], None], description: str, total: int, initial: int,
                 interval: float, clock: Clock) -> None:
        self._write = write
        self._description = description
        self._total = total
        self._done = initial
        self._interval = interval
        self._clock = clock
        self._started = self._last = clock()
        self._timed_steps = 0
        self._accuracy: float | None = None

    def update(self, loss: float, accuracy: float | None) -> None:
        self._done += 1
        self._timed_steps += 1
        if accuracy is not None:
            self._accuracy = accuracy
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        left = elapsed / self._timed_steps * (self._total - self._done)
        accuracy_text = "" if self._accuracy is None else f", acc {self._accuracy:.3f}"
        self._write(f"{self._description}: step {self._done}/{self._total} "
                    f"({100 * self._done // max(self._total, 1)}%), loss {loss:.4f}"
                    f"{accuracy_text}, {format_duration(elapsed)} in, about "
                    f"{format_duration(left)} left in the epoch")

    def close(self) -> None:
        pass


class ConsoleProgress:
    """Lines on `stream`; a tqdm bar per epoch when `stream` is a terminal, else a line every
    `interval` seconds inside an epoch."""

    def __init__(self, stream: TextIO | None = None, bars: bool | None = None,
                 interval: float = LINE_INTERVAL_SECONDS, clock: Clock = time.monotonic) -> None:
        self._own_stream = stream  # None: whatever sys.stderr is where the lines are written
        self._bars = self._stream.isatty() if bars is None else bars
        self._interval = interval
        self._clock = clock

    @property
    def _stream(self) -> TextIO:
        return self._own_stream or sys.stderr

    def message(self, text: str) -> None:
        tqdm.write(text, file=self._stream)

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> EpochBar:
        if not self._bars:
            return _LineBar(self.message, description, total, initial, self._interval,
                            self._clock)
        return _TqdmBar(tqdm(total=total, initial=initial, desc=description, leave=False,
                             file=self._stream, dynamic_ncols=True))


def for_worker(progress: Progress) -> Progress:
    """What a worker process (process pool, Ray task) reports through, in place of `progress`.

    Picklable, and silent when `progress` is: a --quiet study stays quiet in every worker.
    Anything else becomes lines on the worker's stderr without bars (bars of concurrent runs
    would overwrite each other), each naming its run; the main process reports the study's
    progress (`StudyClock`).
    """
    if isinstance(progress, NullProgress):
        return NullProgress()
    return ConsoleProgress(bars=False)


def format_duration(seconds: float) -> str:
    """`42s`, `4m05s`, `1h10m`: a duration as a person reads it."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StudyClock:
    """A study's progress: after each run that trained (and after the last run), "k of N runs
    done", the elapsed time and, once a run has trained, the time left at the pace so far.

    The pace counts only runs trained in this invocation (finished ones left alone take no
    time) and is wall-clock per run, so runs training side by side in a pool are accounted for.
    """

    def __init__(self, progress: Progress, runs: int, clock: Clock = time.monotonic) -> None:
        self._progress = progress
        self._runs = runs
        self._clock = clock
        self._started = clock()
        self._done = 0
        self._trained = 0

    def run_ended(self, *, trained: bool) -> None:
        self._done += 1
        self._trained += trained
        if not trained and self._done < self._runs:
            return  # a run left as it was said so itself; a line per skip would be noise
        elapsed = self._clock() - self._started
        line = f"study: {self._done} of {self._runs} runs done, {format_duration(elapsed)} elapsed"
        left = self._runs - self._done
        if left and self._trained:
            line += f", about {format_duration(elapsed / self._trained * left)} left"
        self._progress.message(line)


class RunPace:
    """Times a run's first steps and, when the whole run will take longer than
    `LONG_RUN_SECONDS`, says once how long, so nobody waits an hour unawares."""

    def __init__(self, progress: Progress, name: str, *, train_steps: int, eval_batches: int,
                 clock: Clock = time.monotonic) -> None:
        self._progress = progress
        self._name = name
        self._train_steps = train_steps  # optimiser steps left in the run
        self._eval_batches = eval_batches  # validation and test batches left in the run
        self._clock = clock
        self._steps = 0
        self._timing_since: float | None = None

    def step_done(self) -> None:
        self._steps += 1
        if self._steps == 1:  # the first step pays one-off costs: time the ones after it
            self._timing_since = self._clock()
            return
        if self._steps != 1 + TIMED_STEPS or self._timing_since is None:
            return
        per_step = (self._clock() - self._timing_since) / TIMED_STEPS
        total = per_step * (self._train_steps + EVAL_STEP_FRACTION * self._eval_batches)
        if total > LONG_RUN_SECONDS:
            self._progress.message(
                f"{self._name}: this run will take about {format_duration(total)} here "
                f"({self._train_steps} steps at {per_step:.2g} s each, timed on its first "
                "steps); fewer epochs, a smaller width or image size, or a smaller preset "
                "shorten it")
