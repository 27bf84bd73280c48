"""Events in one run's records, and the diagnosis they add up to.

Pure, torch-free functions over the frames of one run: the per-step frame (steps.csv:
`record.STEP_COLUMNS`), the tidy gradient records (gradients.parquet) and the per-epoch metrics
(metrics.csv). Each detector looks for one kind of event and states its threshold as a module
constant; `method_text()` is the sentence a report puts in its method section.

Kinds, in the order a cause is looked for:

- `vanishing_at_init`: at the first recorded step (step 0: the initialisation) the first-to-last
  ratio of the weight-gradient norm, or of the output-gradient norm, is below the report's
  vanishing verdict threshold.
- `dead_units`: the share of zeros after the ReLU is at least `DEAD_SHARE` in most layers, from
  a step on to the end of the run.
- `instability`: a step whose global gradient norm exceeds `SPIKE_FACTOR` times the running
  median of the `RUNNING_WINDOW` steps before it while its batch loss rose less than
  `HARD_BATCH_SHARE` as much (relative to its own running median: a hard batch in a converged
  net raises both, measured on digits), or whose loss exceeds `LOSS_SPIKE_FACTOR` times its
  running median and `LOSS_CHANCE_MULTIPLE` x ln(classes). Under gradient clipping, the
  clipped norm the update used.
- `divergence`: the training loss became non-finite, or its last-epoch mean exceeds
  `DIVERGENCE_LOSS_FACTOR` x ln(classes).
- `collapse`: the training loss ends at ln(classes) and, from the step after the last batch
  whose loss fell `COLLAPSE_DIP` below it, the logits' output gradient is at its uniform-softmax
  value sqrt((C - 1) / (C B)): the output does not depend on the input.
- `plateau`: the training loss fell by less than `PLATEAU_LOSS_DROP` over the last
  `PLATEAU_EPOCHS` epochs or more, with training accuracy below `PLATEAU_MAX_TRAIN_ACC`.
- `still_improving`: the last epoch's validation accuracy beat every earlier epoch's by at least
  `STILL_IMPROVING_POINTS` while the training loss still fell: the run stopped before it
  converged, so comparisons with it are about speed of learning.

`diagnose(events)` names the cause (the earliest of the first four kinds, unless a collapse began
before it; else collapse, plateau or still improving; else "healthy") and says what happened
and when.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.configurations import METRIC_WORDS
from gradprobe.analysis.load import RunData
from gradprobe.analysis.summary import VERDICT_THRESHOLDS, fit_kind, fitted_layers
from gradprobe.record import Col, GradCol, StepCol

# ---------------------------------------------------------------------------- thresholds
SPIKE_FACTOR = 10.0  # global gradient norm over its running median
HARD_BATCH_SHARE = 1 / 3  # a batch loss up by this share of the norm's jump explains it
LOSS_SPIKE_FACTOR = 3.0  # batch loss over its running median (and above ln(classes) x 2)
# A batch loss above twice chance is confidently wrong, not just uninformed: a broken update.
# (Below it: a batch-norm net's last, partial batch of 10 images measured 20x its median.)
LOSS_CHANCE_MULTIPLE = 2.0
RUNNING_WINDOW = 25  # steps before a step whose median it is compared with
MIN_HISTORY = 10  # finite steps needed before a step can be called a spike
DEAD_SHARE = 0.9  # a layer is dead when at least this share of its ReLU outputs is zero
DEAD_LAYERS_SHARE = 0.5  # "most layers": more than this share of the layers with a ReLU
COLLAPSE_LOSS_TOLERANCE = 0.02  # |loss - ln C| within this share of ln C
COLLAPSE_GRAD_TOLERANCE = 0.05  # logits' gradient within this share of the uniform value
COLLAPSE_DIP = 0.1  # a batch loss this share below ln(classes): the output carried information
DIVERGENCE_LOSS_FACTOR = 10.0  # last-epoch training loss over ln(classes)
PLATEAU_EPOCHS = 3  # epochs without progress
PLATEAU_LOSS_DROP = 0.01  # relative fall of the training loss that counts as progress
PLATEAU_MAX_TRAIN_ACC = 0.95  # above it a flat loss is convergence, not a plateau
STILL_IMPROVING_POINTS = 0.01  # validation accuracy gained at the last epoch (a fraction)
VANISHING_BELOW = VERDICT_THRESHOLDS.vanishing_below  # the report's verdict threshold

GRADIENT_METRIC = "weight_grad_norm"  # the ratio at initialisation: the report's default
DEAD_METRIC = "dead_fraction"
LOGITS_METRIC = "output_grad_norm"
VANISHING_METRICS = (GRADIENT_METRIC, LOGITS_METRIC)  # either one vanishing at step 0 counts

VANISHING = "vanishing_at_init"
DEAD_UNITS = "dead_units"
INSTABILITY = "instability"
DIVERGENCE = "divergence"
COLLAPSE = "collapse"
PLATEAU = "plateau"
STILL_IMPROVING = "still_improving"
HEALTHY = "healthy"
KINDS = (VANISHING, DEAD_UNITS, INSTABILITY, DIVERGENCE, COLLAPSE, PLATEAU, STILL_IMPROVING)
ROOT_KINDS = (VANISHING, DEAD_UNITS, INSTABILITY, DIVERGENCE)  # can start a failure
SYMPTOM_KINDS = (COLLAPSE, PLATEAU, STILL_IMPROVING)  # the cause when no root event exists


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run, at a step (None: only the epoch is known)."""

    run: str
    kind: str  # one of KINDS
    step: int | None
    epoch: int | None
    value: float  # the measured number (a norm, a loss, a count of layers, a ratio)
    threshold: float  # what it was compared with
    detail: str  # one clause for people: "at step 41 the global gradient norm reached 14.5 ..."

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: non-finite numbers become None."""
        return {"run": self.run, "kind": self.kind, "step": self.step, "epoch": self.epoch,
                "value": _json_number(self.value), "threshold": _json_number(self.threshold),
                "detail": self.detail}


@dataclass(frozen=True)
class Diagnosis:
    """What a run's events add up to: the cause, and what happened and when."""

    run: str
    cause: str  # one of KINDS, or "healthy"
    text: str  # "at step 41, ...; by epoch 3, ...; from then on ..."
    events: tuple[Event, ...] = field(default_factory=tuple)  # all of them, in step order
    cause_event: Event | None = None

    @property
    def consequences(self) -> tuple[Event, ...]:
        """The events after the cause (its symptoms)."""
        return tuple(event for event in self.events if event.kind != self.cause)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "cause": self.cause, "text": self.text,
                "events": [event.as_dict() for event in self.events]}


def method_text() -> str:
    """The thresholds in one paragraph, for a report's method section."""
    return (
        f"Events are found in each run's records. Instability: a step whose global gradient "
        f"norm exceeds {SPIKE_FACTOR:g}x the median of the {RUNNING_WINDOW} steps before it "
        f"(at least {MIN_HISTORY} of them) while its batch loss rose, against its own running "
        f"median, by less than {HARD_BATCH_SHARE:.2g} of that factor (a hard batch in a "
        f"converged net raises both), or whose batch loss exceeds {LOSS_SPIKE_FACTOR:g}x its "
        f"running median and {LOSS_CHANCE_MULTIPLE:g}x ln(classes); with gradient clipping, "
        f"the clipped norm the update used. Dead units: at least {DEAD_SHARE:.0%} of the "
        f"activations after the ReLU are zero in more than {DEAD_LAYERS_SHARE:.0%} of the "
        f"layers, from a step to the end of the run. Collapse: the last epoch's training loss "
        f"is within {COLLAPSE_LOSS_TOLERANCE:.0%} of ln(classes) and, from the step after the "
        f"last batch whose loss fell {COLLAPSE_DIP:.0%} below ln(classes), the logits' output "
        f"gradient is within {COLLAPSE_GRAD_TOLERANCE:.0%} of its uniform-softmax value "
        f"sqrt((C - 1) / (C B)) for C classes and batch B: the output does not depend on the "
        f"input. Divergence: a non-finite training loss, or a last-epoch training loss above "
        f"{DIVERGENCE_LOSS_FACTOR:g}x ln(classes). Plateau: the training loss fell by less than "
        f"{PLATEAU_LOSS_DROP:.0%} over the last {PLATEAU_EPOCHS} epochs or more while training "
        f"accuracy stayed below {PLATEAU_MAX_TRAIN_ACC:.0%}. Still improving: the last epoch's "
        f"validation accuracy beat every earlier epoch's by at least "
        f"{STILL_IMPROVING_POINTS * 100:g} point(s) while the training loss fell. Vanishing at "
        f"initialisation: the first-to-last ratio of the weight- or the output-gradient norm at "
        f"step 0 is below {VANISHING_BELOW:g}, the report's vanishing verdict. The cause is the "
        f"earliest of vanishing at initialisation, dead units, instability and divergence (a "
        f"collapse that began before all of them is the cause itself); without any, a "
        f"collapse, a plateau or a run still improving; the other events are its symptoms."
    )


# ---------------------------------------------------------------------------- detectors
def detect_instability(steps: pd.DataFrame, *, num_classes: int, run: str = "",
                       warmup_end: int | None = None,
                       grad_clip: float | None = None) -> list[Event]:
    """Steps whose global gradient norm (or loss) jumped far above its running median.

    With gradient clipping (`grad_clip`) the norm judged is the one the update used,
    min(norm, grad_clip): a spike the clip cut down did not make an unstable step.
    """
    if steps.empty:
        return []
    frame = steps.sort_values(StepCol.step).reset_index(drop=True)
    events: list[Event] = []
    norm = _finite(frame[StepCol.global_grad_norm])
    if grad_clip is not None:
        norm = np.minimum(norm, grad_clip)
    norm_median = _running_median(norm)
    loss = _finite(frame[StepCol.train_loss])
    loss_median = _running_median(loss)
    chance = math.log(num_classes)
    for index in range(len(frame)):
        step, epoch = int(frame.at[index, StepCol.step]), int(frame.at[index, StepCol.epoch])
        median = norm_median[index]
        jump = norm[index] / median if median > 0 else math.nan
        loss_jump = loss[index] / loss_median[index] if loss_median[index] > 0 else math.nan
        # A hard batch in a converged net raises its loss with its gradient: not unstable.
        explained = loss_jump >= jump * HARD_BATCH_SHARE
        if jump > SPIKE_FACTOR and not explained:
            events.append(Event(
                run, INSTABILITY, step, epoch, float(norm[index]), SPIKE_FACTOR * median,
                f"at step {step}{_after_warmup(step, warmup_end)}, the global gradient norm "
                f"reached {norm[index]:.3g} (running median {median:.2g})"))
            continue
        median = loss_median[index]
        if median > 0 and loss[index] > max(LOSS_SPIKE_FACTOR * median,
                                            LOSS_CHANCE_MULTIPLE * chance):
            events.append(Event(
                run, INSTABILITY, step, epoch, float(loss[index]), LOSS_SPIKE_FACTOR * median,
                f"at step {step}{_after_warmup(step, warmup_end)}, the batch loss jumped to "
                f"{loss[index]:.3g} (running median {median:.3g})"))
    return events


def detect_divergence(steps: pd.DataFrame, epochs: pd.DataFrame, *, num_classes: int,
                      run: str = "") -> list[Event]:
    """A non-finite training loss (the trainer stops there), or a loss far above chance."""
    if not steps.empty:
        losses = steps[StepCol.train_loss].to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            row = steps.iloc[int(bad[0])]
            return [Event(run, DIVERGENCE, int(row[StepCol.step]), int(row[StepCol.epoch]),
                          float(losses[bad[0]]), math.inf,
                          f"at step {int(row[StepCol.step])} the training loss became "
                          f"{losses[bad[0]]}")]
    if epochs.empty:
        return []
    train_loss = epochs[Col.train_loss].to_numpy(dtype="float64")
    last_epoch = int(epochs[Col.epoch].iloc[-1])
    if not np.isfinite(train_loss).all():
        epoch = int(epochs[Col.epoch].iloc[int(np.flatnonzero(~np.isfinite(train_loss))[0])])
        return [Event(run, DIVERGENCE, None, epoch, math.nan, math.inf,
                      f"in epoch {epoch} the training loss became non-finite")]
    limit = DIVERGENCE_LOSS_FACTOR * math.log(num_classes)
    if train_loss[-1] > limit:
        return [Event(run, DIVERGENCE, None, last_epoch, float(train_loss[-1]), limit,
                      f"by epoch {last_epoch} the training loss had grown to "
                      f"{train_loss[-1]:.3g}, {train_loss[-1] / math.log(num_classes):.0f}x "
                      f"chance level")]
    return []


def detect_dead_units(gradients: pd.DataFrame, *, run: str = "") -> list[Event]:
    """Most layers dead (>= DEAD_SHARE zeros after the ReLU) from a step to the end."""
    rows = gradients.loc[gradients[GradCol.metric] == DEAD_METRIC]
    if rows.empty:
        return []
    table = rows.pivot_table(index=GradCol.step, columns=GradCol.layer, values=GradCol.value,
                             aggfunc="first").sort_index()
    layers = table.shape[1]
    dead = (table >= DEAD_SHARE).sum(axis=1)
    most = dead > DEAD_LAYERS_SHARE * layers
    if not bool(most.iloc[-1]):
        return []
    failing = np.flatnonzero(~most.to_numpy())
    start = 0 if failing.size == 0 else int(failing[-1]) + 1
    step = int(table.index[start])
    epoch = int(rows.loc[rows[GradCol.step] == step, GradCol.epoch].iloc[0])
    count = int(dead.iloc[start])
    final = int(dead.iloc[-1])
    kinds = rows.drop_duplicates(GradCol.layer)[GradCol.kind]
    noun = "conv layers" if (kinds == "conv").all() else "layers"
    when = "from the first step" if start == 0 else f"by epoch {epoch} (step {step})"
    return [Event(run, DEAD_UNITS, step, epoch, float(count), DEAD_SHARE,
                  f"{when}, {DEAD_SHARE:.0%} or more of the units after the ReLU were dead "
                  f"in {count} of {layers} {noun}" +
                  (f" ({final} at the end)" if final != count else ""))]


def detect_collapse(epochs: pd.DataFrame, gradients: pd.DataFrame, steps: pd.DataFrame, *,
                    num_classes: int, batch_size: int | None = None,
                    run: str = "") -> list[Event]:
    """Loss at ln(classes) to the end, and the logits' gradient at the uniform-softmax value."""
    if epochs.empty:
        return []
    chance = math.log(num_classes)
    loss = epochs[Col.train_loss].to_numpy(dtype="float64")
    near = np.isfinite(loss) & (np.abs(loss - chance) <= COLLAPSE_LOSS_TOLERANCE * chance)
    if not near[-1]:
        return []
    onset = _collapse_onset(steps, chance)
    if onset is None:  # no per-step records: the first epoch from which the mean stays there
        failing = np.flatnonzero(~near)
        start = 0 if failing.size == 0 else int(failing[-1]) + 1
        epoch = int(epochs[Col.epoch].iloc[start])
        step = _first_step_of(steps, gradients, epoch)
        from_step = -1 if step is None else step
        when = "from the start" if start == 0 else f"from epoch {epoch} on"
    else:
        if onset > int(steps[StepCol.step].max()):
            return []  # its last step still did better than chance
        step = from_step = onset
        epoch = int(steps.loc[steps[StepCol.step] == onset, StepCol.epoch].iloc[0])
        when = "from the start" if onset == 0 else f"from step {onset} (epoch {epoch}) on"
    gradient_clause = ""
    logits = _logits_gradient(gradients, from_step)
    if logits is not None and batch_size is not None:
        uniform = math.sqrt((num_classes - 1) / (num_classes * batch_size))
        if abs(logits - uniform) > COLLAPSE_GRAD_TOLERANCE * uniform:
            return []  # the loss is at chance but the output still depends on the input
        gradient_clause = (f" and the logits' gradient at {logits:.3g}, the uniform-softmax "
                           f"value {uniform:.3g}")
    return [Event(run, COLLAPSE, step, epoch, float(loss[-1]), chance,
                  f"{when} the output did not depend on the input: the training loss stayed "
                  f"at ln({num_classes}) = {chance:.3f}{gradient_clause}")]


def _collapse_onset(steps: pd.DataFrame, chance: float) -> int | None:
    """The step after the last batch loss clearly below chance (None: no per-step records)."""
    if steps.empty:
        return None
    loss = steps[StepCol.train_loss].to_numpy(dtype="float64")
    dipped = steps.loc[np.isfinite(loss) & (loss < (1.0 - COLLAPSE_DIP) * chance), StepCol.step]
    return 0 if dipped.empty else int(dipped.max()) + 1


def detect_plateau(epochs: pd.DataFrame, steps: pd.DataFrame, gradients: pd.DataFrame, *,
                   run: str = "") -> list[Event]:
    """The training loss stalled for PLATEAU_EPOCHS epochs or more before the net fit the data."""
    if len(epochs) < PLATEAU_EPOCHS + 1:
        return []
    loss = epochs[Col.train_loss].to_numpy(dtype="float64")
    accuracy = epochs[Col.train_acc].to_numpy(dtype="float64")
    if not np.isfinite(loss).all() or accuracy[-1] >= PLATEAU_MAX_TRAIN_ACC:
        return []
    last = len(loss) - 1
    for start in range(last - PLATEAU_EPOCHS + 1):
        if loss[start:].min() >= (1.0 - PLATEAU_LOSS_DROP) * loss[start]:
            epoch = int(epochs[Col.epoch].iloc[start])
            return [Event(run, PLATEAU, _first_step_of(steps, gradients, epoch), epoch,
                          float(loss[-1]), float(loss[start]),
                          f"from epoch {epoch} on the training loss stayed at "
                          f"{loss[start]:.3g} (within {PLATEAU_LOSS_DROP:.0%}) with training "
                          f"accuracy {accuracy[-1]:.0%}")]
    return []


def detect_still_improving(epochs: pd.DataFrame, *, run: str = "") -> list[Event]:
    """The last epoch gave a new best validation accuracy by a margin, the loss still falling."""
    if len(epochs) < 2:
        return []
    accuracy = epochs[Col.val_acc].to_numpy(dtype="float64")
    loss = epochs[Col.train_loss].to_numpy(dtype="float64")
    if not (np.isfinite(accuracy).all() and np.isfinite(loss).all()):
        return []
    earlier = float(accuracy[:-1].max())
    falling = loss[-1] < (1.0 - PLATEAU_LOSS_DROP) * loss[-2]
    if accuracy[-1] < earlier + STILL_IMPROVING_POINTS or not falling:
        return []
    epoch = int(epochs[Col.epoch].iloc[-1])
    return [Event(run, STILL_IMPROVING, None, epoch, float(accuracy[-1]),
                  earlier + STILL_IMPROVING_POINTS,
                  f"at the last epoch ({epoch}) the validation accuracy was still rising "
                  f"({earlier:.1%} before, {accuracy[-1]:.1%} then) and the training loss "
                  f"still falling: the run stopped before it converged")]


def first_step_ratio(gradients: pd.DataFrame, metric: str
                     ) -> tuple[float, str, str, int, int] | None:
    """`metric`'s first-to-last ratio at the first recorded step over the report's fitted layers:
    (ratio, first layer, last layer, step, epoch); None when it cannot be computed."""
    rows = gradients.loc[gradients[GradCol.metric] == metric]
    if rows.empty:
        return None
    layers = fitted_layers(rows, fit_kind(rows))
    if len(layers) < 2:
        return None
    (first, _), (last, _) = layers[0], layers[-1]
    step = int(rows[GradCol.step].min())
    at_step = rows.loc[rows[GradCol.step] == step].set_index(GradCol.layer)[GradCol.value]
    if first not in at_step.index or last not in at_step.index:
        return None
    numerator, denominator = float(at_step[first]), float(at_step[last])
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    if numerator == 0:  # no gradient at all: dead units (their own event), not a vanished one
        return None
    epoch = int(rows.loc[rows[GradCol.step] == step, GradCol.epoch].iloc[0])
    return numerator / denominator, first, last, step, epoch


def detect_vanishing_at_init(gradients: pd.DataFrame, *, run: str = "") -> list[Event]:
    """The first-to-last ratio at the first recorded step below the verdict's threshold, on
    either gradient metric (weight or output gradient); the detail names which."""
    found = {metric: ratio for metric in VANISHING_METRICS
             if (ratio := first_step_ratio(gradients, metric)) is not None}
    vanished = [metric for metric, ratio in found.items() if ratio[0] < VANISHING_BELOW]
    if not vanished:
        return []
    metric = vanished[0]  # the weight gradient when both vanished
    value, first, last, step, epoch = found[metric]
    where = "at initialisation (step 0)" if step == 0 else f"at step {step}"
    healthy = [other for other in found if other not in vanished]
    if healthy:
        detail = (f"{where} the {METRIC_WORDS[metric]}'s first-to-last ratio was {value:.2g} "
                  f"while the {METRIC_WORDS[healthy[0]]}'s was {found[healthy[0]][0]:.2g}")
    else:
        detail = (f"{where} the gradient had already vanished: {first}'s "
                  f"{METRIC_WORDS[metric].replace(' ', '-')} norm was {value:.2g}x that of "
                  f"{last}")
    return [Event(run, VANISHING, step, epoch, value, VANISHING_BELOW, detail)]


def detect_events(steps: pd.DataFrame, gradients: pd.DataFrame, epochs: pd.DataFrame, *,
                  num_classes: int, run: str = "", batch_size: int | None = None,
                  warmup_end: int | None = None, grad_clip: float | None = None) -> list[Event]:
    """Every event of one run, in step order (events known only by epoch at that epoch's
    first step). A collapse is a plateau at chance, so it is reported once, as a collapse; a
    run that collapsed, stalled or diverged is not "still improving"."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    events = [
        *detect_vanishing_at_init(gradients, run=run),
        *detect_dead_units(gradients, run=run),
        *detect_instability(steps, num_classes=num_classes, run=run, warmup_end=warmup_end,
                            grad_clip=grad_clip),
        *detect_divergence(steps, epochs, num_classes=num_classes, run=run),
    ]
    collapse = detect_collapse(epochs, gradients, steps, num_classes=num_classes,
                               batch_size=batch_size, run=run)
    events += collapse
    if not collapse:
        events += detect_plateau(epochs, steps, gradients, run=run)
    if not any(event.kind in (COLLAPSE, PLATEAU, DIVERGENCE) for event in events):
        events += detect_still_improving(epochs, run=run)
    return sorted(events, key=_order)


def diagnose(events: Sequence[Event], *, run: str | None = None) -> Diagnosis:
    """The cause and the story of one run's events (see the module docstring)."""
    ordered = tuple(sorted(events, key=_order))
    name = run if run is not None else (ordered[0].run if ordered else "")
    # A collapse that began before every root event is itself the cause: the output never
    # depended on the input before they happened. At one step the root event comes first.
    candidates = [event for event in ordered if event.kind in (*ROOT_KINDS, COLLAPSE)]
    if any(event.kind in ROOT_KINDS for event in candidates):
        cause_event = min(candidates, key=_cause_order)
    else:
        symptoms = [event for event in ordered if event.kind in SYMPTOM_KINDS]
        cause_event = min(symptoms, key=lambda e: SYMPTOM_KINDS.index(e.kind), default=None)
    if cause_event is None:
        return Diagnosis(name, HEALTHY, "no event: the run trained without instability, dead "
                         "units, collapse, divergence or plateau", ordered, None)
    clauses: list[str] = []
    spikes = [event for event in ordered if event.kind == INSTABILITY]
    # the cause, then what followed in step order, then the state the run ended in
    rest = [e for e in ordered if e is not cause_event]
    story = [cause_event, *(e for e in rest if e.kind in ROOT_KINDS),
             *(e for e in rest if e.kind in SYMPTOM_KINDS)]
    for event in story:
        if event.kind == INSTABILITY and event is not spikes[0]:
            continue  # one clause for every spike
        clause = event.detail
        if event.kind == INSTABILITY and len(spikes) > 1:
            shown = ", ".join(str(e.step) for e in spikes[:6])
            more = ", ..." if len(spikes) > 6 else ""
            clause += f" ({len(spikes)} such steps: {shown}{more})"
        clauses.append(clause)
    return Diagnosis(name, cause_event.kind, "; ".join(clauses), ordered, cause_event)


def events_for_run(run: RunData, *, num_classes: int | None = None) -> list[Event]:
    """`detect_events` of a loaded run: classes, batch size and the warm-up's end are read from
    its config (`num_classes` for a run without one, such as a probe's frame; ValueError when
    neither says)."""
    train = run.section("train")
    if num_classes is None:
        num_classes = getattr(run, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"run {run.name!r} does not say how many classes it has: pass "
                         "num_classes= to events_for_run")
    return detect_events(run.steps, run.gradients, run.metrics, num_classes=int(num_classes),
                         run=run.name, batch_size=train.get("batch_size"),
                         warmup_end=run_warmup_end(run), grad_clip=train.get("grad_clip"))


def run_warmup_end(run: RunData) -> int | None:
    """`warmup_end_step` of a loaded run, from its steps and its config's warm-up."""
    return warmup_end_step(run.steps, run.section("train").get("warmup_epochs") or 0.0)


def warmup_end_step(steps: pd.DataFrame, warmup_epochs: float) -> int | None:
    """The first step at the full learning rate after a linear warm-up (None: no warm-up),
    as `gradprobe.train.optim.warmup_factor` counts it: ceil(warmup_epochs x steps per epoch)."""
    if warmup_epochs <= 0 or steps.empty:
        return None
    per_epoch = int((steps[StepCol.epoch] == steps[StepCol.epoch].min()).sum())
    return math.ceil(warmup_epochs * per_epoch)


# ---------------------------------------------------------------------------- helpers
def _finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype="float64")
    return np.where(np.isfinite(array), array, np.nan)


def _running_median(values: np.ndarray) -> np.ndarray:
    """Median of the RUNNING_WINDOW values before each one (NaN until MIN_HISTORY exist)."""
    previous = pd.Series(values).shift(1)
    return previous.rolling(RUNNING_WINDOW, min_periods=MIN_HISTORY).median().to_numpy()


def _after_warmup(step: int, warmup_end: int | None) -> str:
    if warmup_end is None or not warmup_end <= step <= warmup_end + 2:
        return ""
    if step == warmup_end:
        return ", the first step after warm-up ended"
    return f", {step - warmup_end + 1} steps after warm-up ended"


def _logits_gradient(gradients: pd.DataFrame, from_step: int) -> float | None:
    """Median output-gradient norm of the deepest layer (the logits) from `from_step` on."""
    rows = gradients.loc[gradients[GradCol.metric] == LOGITS_METRIC]
    if rows.empty:
        return None
    deepest = rows.loc[rows[GradCol.depth] == rows[GradCol.depth].max()]
    values = deepest.loc[deepest[GradCol.step] >= from_step, GradCol.value].to_numpy("float64")
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _first_step_of(steps: pd.DataFrame, gradients: pd.DataFrame, epoch: int) -> int | None:
    for frame, column in ((steps, StepCol.step), (gradients, GradCol.step)):
        if not frame.empty:
            at = frame.loc[frame[StepCol.epoch] == epoch, column]
            if not at.empty:
                return int(at.min())
    return None


def _order(event: Event) -> tuple[int, float, int]:
    """Step order; an event known only by its epoch after every stepped event of that epoch."""
    epoch = event.epoch if event.epoch is not None else 10**9
    step = event.step if event.step is not None else math.inf
    return (epoch, step, KINDS.index(event.kind))


def _cause_order(event: Event) -> tuple[int, float, int, int]:
    """The earliest event; at one step a root event before a collapse."""
    epoch = event.epoch if event.epoch is not None else 10**9
    step = event.step if event.step is not None else math.inf
    return (epoch, step, int(event.kind not in ROOT_KINDS), KINDS.index(event.kind))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
