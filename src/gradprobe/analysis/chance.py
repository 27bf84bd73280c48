"""Chance level: when a run has learned nothing the validation set can tell from guessing.

A run is *at chance* when its last validation accuracy lies within the 95% binomial interval of
a guesser's accuracy (1/classes, on the validation set's size), or when its training loss stays
at ln(classes), the loss of a uniform softmax, at every epoch (within LOSS_TOLERANCE). The
interval, not the point 1/classes, because 270 validation images put a guesser anywhere in
6.7%-13.7% for 10 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from gradprobe.analysis.load import RunData, StudyData
from gradprobe.record import Col

CONFIDENCE = 0.95
LOSS_TOLERANCE = 0.03  # a training loss within 3% of ln(classes) is "at ln(classes)"


@dataclass(frozen=True)
class Chance:
    """A guesser's accuracy on the study's validation set, and the loss of a uniform softmax."""

    classes: int
    val_images: int | None  # None: the runs did not record their split sizes
    low: float  # the 95% binomial interval of a guesser's accuracy (the point without a size)
    high: float

    @property
    def accuracy(self) -> float:
        return 1.0 / self.classes

    @property
    def loss(self) -> float:
        return math.log(self.classes)

    def describe(self) -> str:
        size = f" on {self.val_images} validation images" if self.val_images else ""
        return (f"{100 * self.low:.1f}-{100 * self.high:.1f}% accuracy (1/{self.classes}{size}, "
                f"95% binomial interval) or a training loss that stays at ln {self.classes} = "
                f"{self.loss:.2f}")


def chance_for(classes: int, val_images: int | None) -> Chance:
    """The interval of a guesser's accuracy: binomial(val_images, 1/classes), 95%."""
    if not val_images:
        return Chance(classes, None, 1.0 / classes, 1.0 / classes)
    low, high = stats.binom.interval(CONFIDENCE, val_images, 1.0 / classes)
    return Chance(classes, val_images, float(low) / val_images, float(high) / val_images)


def study_chance(study: StudyData) -> Chance | None:
    """The chance level of the study's data (from the first run that recorded it)."""
    for run in study.runs.values():
        classes = run.num_classes or 0
        if classes >= 2:
            counts = run.data_info.get("counts") or {}
            return chance_for(classes, int(counts["val"]) if counts.get("val") else None)
    return None


def run_at_chance(run: RunData, chance: Chance | None) -> bool | None:
    """True when the run is at chance (see the module), None when it has no epoch to judge."""
    if chance is None or run.metrics.empty:
        return None
    val = run.metrics[Col.val_acc].to_numpy(dtype="float64")
    val = val[np.isfinite(val)]
    loss = run.metrics[Col.train_loss].to_numpy(dtype="float64")
    loss = loss[np.isfinite(loss)]
    if not val.size and not loss.size:
        return None
    guessing = bool(val.size) and float(val[-1]) <= chance.high
    flat = bool(loss.size) and bool(np.all(loss >= chance.loss * (1.0 - LOSS_TOLERANCE)))
    return guessing or flat
