"""SIGINT and SIGTERM as one exception, `Interrupted`, so every layer stops the same way.

A run that is interrupted is marked "interrupted" in its status.json and resumes from its last
checkpoint (every file of a run is written atomically, so stopping at any instant is safe). The
command exits 128 + the signal's number: 130 for SIGINT (Ctrl-C), 143 for SIGTERM.

`handling()` installs the handlers for as long as a command or a worker process lives: the first
signal raises `Interrupted` in the main thread, later ones are only counted (a second Ctrl-C must
not break the writes that record the first). Inside `deferred()` signals are counted and not
raised: the study's scheduler polls `received()` at points where stopping is safe.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: list[int] = []  # signals caught since handling() began, in order
_deferring = 0  # > 0: inside deferred(), signals are recorded, not raised


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM. A KeyboardInterrupt, so code that handles Ctrl-C handles both."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signum_of(interrupt: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: Python's own Ctrl-C is SIGINT."""
    return getattr(interrupt, "signum", signal.SIGINT)


def received() -> list[int]:
    """The signals caught since `handling()` began (the first one is the one that counts)."""
    return list(_received)


def _handler(signum: int, frame: FrameType | None) -> None:
    first = not _received
    _received.append(signum)
    if first and not _deferring:
        raise Interrupted(signum)


@contextmanager
def handling(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Raise `Interrupted` on the first of `signals` while inside; restore the previous
    handlers afterwards. Nested calls share the outer one; off the main thread it does nothing
    (Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is _handler:
        yield
        return
    previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in signals}
    _received.clear()
    for signum in signals:
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Record signals without raising while inside (the caller polls `received()`)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def exit_with_parent(parent_pid: int) -> None:
    """End this (worker) process with SIGTERM when `parent_pid` dies, however it dies (SIGKILL
    included): Linux's PR_SET_PDEATHSIG where there is one, else a thread polling the parent."""
    if _set_parent_death_signal():
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        import time

        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="gradprobe-parent-watch", daemon=True).start()


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
