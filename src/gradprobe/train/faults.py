"""Crash injection for the resume tests: kill this process hard after a given optimiser step.

`GRADPROBE_CRASH_AFTER_STEP=N` makes the trainer SIGKILL itself right after step N, the way an
out-of-memory kill or a pre-empted node would, so tests can prove resume is exact without racing
a timer. Unset (always, outside tests) it costs one dictionary lookup per step.
"""

from __future__ import annotations

import os
import signal

_ENV = "GRADPROBE_CRASH_AFTER_STEP"


def maybe_crash(step: int) -> None:
    target = os.environ.get(_ENV)
    if target is not None and step == int(target):
        os.kill(os.getpid(), signal.SIGKILL)
