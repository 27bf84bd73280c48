"""A run's state in words, for tables, sentences and figure notes."""

from __future__ import annotations

import math

from gradprobe.analysis.load import RunData
from gradprobe.record import Col, RunState


def state_text(run: RunData) -> str:
    """A run's outcome in words: completed, diverged at step N (...), failed: message, ..."""
    state = run.state
    if state is RunState.DIVERGED:
        step = run.diverged_step
        where = f" at step {step}" if step is not None else ""
        return f"diverged{where} ({_divergence_cause(run)})"
    if state is RunState.FAILED:
        return f"failed: {run.message or 'no message recorded'}"
    if state is RunState.RUNNING:
        epoch = run.status.epoch if run.status is not None else None
        return "still running" + (f" (epoch {epoch})" if epoch else "") + ": results are partial"
    if state is RunState.INTERRUPTED:
        epoch = run.status.epoch if run.status is not None else None
        return ("interrupted" + (f" after epoch {epoch}" if epoch else "")
                + ": results are partial; run the study again to resume it")
    if state is RunState.MISSING:
        return "never started: its run directory does not exist"
    return state.value


def _divergence_cause(run: RunData) -> str:
    """"loss became NaN" / "loss became infinite", from the epoch metrics, else from the message."""
    losses = run.metrics[Col.train_loss].to_numpy(dtype="float64") if not run.metrics.empty else []
    bad = [value for value in losses if not math.isfinite(value)]
    message = run.message.strip()
    if bad:
        return "loss became NaN" if math.isnan(bad[0]) else "loss became infinite"
    lowered = message.lower()
    if "nan" in lowered:
        return "loss became NaN"
    if "inf" in lowered:
        return "loss became infinite"
    # a message that says more than "diverged at step N" is worth keeping
    if message and RunState.DIVERGED.value not in lowered:  # the trainer's "diverged at step N"
        return f"loss became non-finite; {message}"
    return "loss became non-finite"
