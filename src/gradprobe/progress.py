"""The one channel through which the library reports progress.

Library code never prints; it calls a `Progress`. The CLI passes a `ConsoleProgress` (or a
`NullProgress` for --quiet); library users get `NullProgress` (silence) unless they pass their
own. A study's worker processes report through `for_worker(progress)`, so --quiet reaches them.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from tqdm.auto import tqdm


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
        self._accuracy = float("nan")

    def update(self, loss: float, accuracy: float | None) -> None:
        if accuracy is not None:
            self._accuracy = accuracy
        self._bar.set_postfix(loss=f"{loss:.4f}", acc=f"{self._accuracy:.3f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


class ConsoleProgress:
    """Lines on `stream`; a tqdm bar per epoch only when `stream` is a terminal."""

    def __init__(self, stream: TextIO | None = None, bars: bool | None = None) -> None:
        self._own_stream = stream  # None: whatever sys.stderr is where the lines are written
        self._bars = self._stream.isatty() if bars is None else bars

    @property
    def _stream(self) -> TextIO:
        return self._own_stream or sys.stderr

    def message(self, text: str) -> None:
        tqdm.write(text, file=self._stream)

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> EpochBar:
        if not self._bars:
            return _NullBar()
        return _TqdmBar(tqdm(total=total, initial=initial, desc=description, leave=False,
                             file=self._stream, dynamic_ncols=True))


def for_worker(progress: Progress) -> Progress:
    """What a worker process (process pool, Ray task) reports through, in place of `progress`.

    Picklable, and silent when `progress` is: a --quiet study stays quiet in every worker.
    Anything else becomes lines on the worker's stderr without bars (bars of concurrent runs
    would overwrite each other); the main process still reports each run's outcome.
    """
    if isinstance(progress, NullProgress):
        return NullProgress()
    return ConsoleProgress(bars=False)
