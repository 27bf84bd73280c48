"""The run-directory contract in one place: file names, columns, states and typed records.

Everything that writes or reads a run or study directory (the trainer, the study runner, the
analysis, the tests) takes its names from here, so a renamed file or column is one edit. This
module and `gradprobe.record.io` import neither torch nor the rest of gradprobe's layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

# ---------------------------------------------------------------------------- file names
CONFIG_FILE = "config.json"  # the resolved config, model_info, data_info, versions
STATUS_FILE = "status.json"  # state, epoch, step, message, traceback, updated
METRICS_FILE = "metrics.csv"  # one row per epoch, METRIC_COLUMNS
GRADIENTS_FILE = "gradients.parquet"  # tidy probe records, GRADIENT_COLUMNS
STEPS_FILE = "steps.csv"  # one row per optimiser step, STEP_COLUMNS
SUMMARY_FILE = "summary.json"  # the finished run's numbers, RunSummary
TENSORBOARD_DIR = "tensorboard"  # optional event files
LOCK_FILE = ".lock"  # held while a process trains the run
STUDY_FILE = "study.yaml"  # a study directory's resolved spec
RUNS_DIR = "runs"  # a study directory's run directories, one per run name
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
ANALYSIS_FILE = "analysis.json"  # the report's analysis as data (see record.analysis)
REPORT_LOCK = ".report.lock"  # held while a report is written (`record.report_lock`)


class ConfigKey:
    """The top-level keys of config.json (what the trainer writes, what the analysis reads)."""

    name = "name"  # the run's name
    run = "run"  # the resolved RunConfig: model, data, train, probe sections
    model_info = "model_info"  # the built model: family, residual, norm, activation, layers
    data_info = "data_info"  # the loaded data: classes, counts per split, fingerprint
    versions = "versions"  # library versions of the training process
    device = "device"

# ---------------------------------------------------------------------------- columns


class Col:
    """metrics.csv column names as attributes: `frame[Col.val_acc]` fails loudly on a typo."""

    epoch = "epoch"
    train_loss = "train_loss"
    train_acc = "train_acc"
    val_loss = "val_loss"
    val_acc = "val_acc"
    lr = "lr"
    seconds = "seconds"


class GradCol:
    """gradients.parquet column names as attributes."""

    step = "step"
    epoch = "epoch"
    layer = "layer"
    depth = "depth"
    kind = "kind"
    metric = "metric"
    value = "value"


class StepCol:
    """steps.csv column names as attributes."""

    step = "step"
    epoch = "epoch"
    train_loss = "train_loss"
    lr = "lr"
    global_grad_norm = "global_grad_norm"


GRADIENT_COLUMNS = (GradCol.step, GradCol.epoch, GradCol.layer, GradCol.depth, GradCol.kind,
                    GradCol.metric, GradCol.value)


class RunState(str, Enum):
    """A run's state in status.json. MISSING is never written: the analysis uses it for a run the
    study lists whose directory does not exist. INTERRUPTED (SIGINT, SIGTERM, the study's main
    process gone) resumes from its last checkpoint exactly like RUNNING (a crash)."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    MISSING = "missing"

    def __str__(self) -> str:  # f-strings print "completed", not "RunState.COMPLETED"
        return self.value


FINISHED_STATES = frozenset({RunState.COMPLETED, RunState.DIVERGED})


@dataclass(frozen=True)
class RunStatus:
    """status.json: where a run stands, rewritten at every epoch and at the end."""

    state: RunState
    epoch: int | None = None  # epochs finished (running), or the epoch it stopped in
    step: int | None = None  # optimiser steps done, or the step whose loss diverged
    message: str = ""  # one line for people: "test accuracy 0.912", the error of a failure
    traceback: str | None = None  # a failed run's traceback
    updated: str | None = None  # ISO time of the last write (UTC)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class EpochRow:
    """One row of metrics.csv: an epoch's training and validation numbers."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's training batches (non-finite if it diverged)
    train_acc: float  # fraction correct over the epoch's training images
    val_loss: float  # NaN in a diverged run's last, partial epoch
    val_acc: float  # fraction; NaN in a diverged run's last, partial epoch
    lr: float  # the learning rate the epoch trained with
    seconds: float  # training wall time of the epoch

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# metrics.csv's columns, in file order: EpochRow's fields, so the two cannot drift apart
METRIC_COLUMNS = tuple(f.name for f in fields(EpochRow))


@dataclass(frozen=True)
class StepRow:
    """One row of steps.csv: what one optimiser step saw, written by the trainer at every step
    whatever the probe's schedule, so a failure can be placed on the step it happened.

    No wall-clock column: a resumed run writes this file byte for byte as an uninterrupted one.
    """

    step: int  # 0-based optimiser step, as in gradients.parquet
    epoch: int  # 1-based
    train_loss: float  # this step's batch loss, before its update (non-finite: it diverged)
    lr: float  # the learning rate of this step's update, linear warm-up included
    # L2 norm of every trainable parameter's gradient (weights and biases) together, as
    # torch.nn.utils.clip_grad_norm_ computes it: before any clipping, unscaled under AMP.
    # NaN on a step whose loss was non-finite (it had no backward pass).
    global_grad_norm: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# steps.csv's columns, in file order: StepRow's fields
STEP_COLUMNS = tuple(f.name for f in fields(StepRow))


def best_validation(rows: Iterable[tuple[int, float]]) -> tuple[float, int] | None:
    """The best validation accuracy and its epoch from (epoch, val_acc) pairs, or None.

    The one definition of "best": the highest finite accuracy, the earliest epoch on a tie.
    """
    best: tuple[float, int] | None = None
    for epoch, accuracy in rows:
        accuracy = float(accuracy)
        if math.isfinite(accuracy) and (best is None or accuracy > best[0]):
            best = (accuracy, int(epoch))
    return best


@dataclass(frozen=True)
class RunSummary:
    """summary.json: what a finished (completed or diverged) run reports."""

    state: RunState
    test_loss: float | None  # None when the run never tested (diverged)
    test_acc: float | None
    best_val_acc: float | None  # see best_validation
    best_epoch: int | None
    final_val_acc: float | None  # the last finite validation accuracy
    final_train_loss: float | None
    epochs_completed: int | None  # epochs with a finite validation accuracy
    steps: int | None  # optimiser steps done
    diverged_step: int | None  # the step whose loss was non-finite
    seconds: float | None  # training wall time over all epochs

    @classmethod
    def from_rows(cls, state: RunState, rows: list[EpochRow], *, steps: int,
                  test_loss: float | None, test_acc: float | None,
                  diverged_step: int | None = None) -> RunSummary:
        finite_val = [row for row in rows if math.isfinite(row.val_acc)]
        best = best_validation((row.epoch, row.val_acc) for row in rows)
        return cls(
            state=state, test_loss=test_loss, test_acc=test_acc,
            best_val_acc=best[0] if best else None, best_epoch=best[1] if best else None,
            final_val_acc=finite_val[-1].val_acc if finite_val else None,
            final_train_loss=rows[-1].train_loss if rows else None,
            epochs_completed=len(finite_val), steps=steps, diverged_step=diverged_step,
            seconds=round(sum(row.seconds for row in rows), 3),
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data
