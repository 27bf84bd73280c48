"""Theory beside measurement: each run's predicted per-layer factor at initialisation against the
factor fitted to its output-gradient norms at the first recorded step (issue 16, Step 6 (b)).

    from gradprobe.analysis.theory_check import check_run
    check = check_run(load_run("runs/plain"))
    check.predicted, check.measured, check.agreement   # 0.408, 0.401, "agrees"

The theory (`gradprobe.theory`) predicts the profile of `output_grad_norm` at initialisation, so
the measurement is that metric at the run's first recorded step (step 0: the gradient of the
initial weights), never an epoch mean; the last epoch's mean is fitted too, to show how far
training moved the profile. Both are fitted the same way (`segment_fit`) over the transitions
the prediction covers; a transition across a pooling layer has no prediction and is left out.

Torch is imported only inside `predict_run` (the zoo reads a model's layer shapes on the meta
device), so importing `gradprobe.analysis` stays torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.summary import run_epoch_means
from gradprobe.errors import InputError
from gradprobe.record import GradCol
from gradprobe.theory import NoPrediction, Prediction  # torch-free (zoo imports it lazily)

QUANTITY = "output_grad_norm"  # what the theory predicts (gradprobe.theory.predict.QUANTITY)
# Measured and predicted per-layer factors agree when their ratio is within 1 +- TOLERANCE. Why
# 10%: the theory is the infinite-width, infinite-batch limit, and the study's nets are narrow
# (vgg_deep at width 0.125 starts with 8 channels) with 3x3 convs on maps down to 2x2, whose
# zero-padded borders alone lower the gain by up to a third there (see `border_fraction`); the
# scan's 32-channel stacks on 16x16 maps agreed within 5% (README). A wrong constant misses by
# more: fan_out for fan_in, or the batch-norm rate in norm instead of squared norm, is >= 20%.
# And 10% per layer compounds to a factor 0.9^29 = 0.05 over vgg_deep's 29 convs, so a larger
# tolerance would call a profile that is 20x off "agreeing".
TOLERANCE = 0.10

AGREES, WITH_BORDERS, PARTS = "agrees", "agrees once borders are counted", "parts"
NO_PREDICTION, NOT_MEASURED = "no prediction", "not measured"


@dataclass(frozen=True)
class TheoryCheck:
    """One run's predicted and measured per-layer factors (None where there is none).

    `agreement` is AGREES or PARTS when both factors exist, NO_PREDICTION (no theory covers the
    network: `reason` says why) or NOT_MEASURED (the records lack what the comparison needs).
    """

    run: str
    agreement: str
    reason: str = ""  # why there is no comparison (a NoPrediction's reason, missing records)
    predicted: float | None = None  # the same fit applied to the predicted profile
    measured: float | None = None  # fitted to output_grad_norm at `step`
    step: int | None = None  # the first recorded step (0: at initialisation)
    transitions: int = 0  # predicted transitions both fits used
    skipped: int = 0  # transitions with no prediction (across a pooling layer)
    r2: float | None = None  # of the measured fit (log norm on layer index)
    border_predicted: float | None = None  # predicted, counting zero-padded conv borders
    smallest_map: int | None = None  # the smallest conv feature map (pixels a side) fitted
    last_epoch: int | None = None
    measured_last: float | None = None  # the same fit to the last epoch's mean norms
    narrowest: int | None = None  # fewest output channels of a fitted weight layer
    batch_size: int | None = None
    activation: str | None = None  # the run's, as its model_info records it

    @property
    def ratio(self) -> float | None:
        """measured / predicted."""
        if self.measured is None or not self.predicted:
            return None
        return self.measured / self.predicted


# ---------------------------------------------------------------------------- fitting
def segment_fit(log_norms: Sequence[float | None], linked: Sequence[bool]
                ) -> tuple[float | None, float | None, int]:
    """Per-layer factor of a profile: least squares of log(norm) = a_segment + slope * index.

    `log_norms[i]` is layer i's log norm (input first; None: no value); `linked[i]` says whether
    the transition i -> i+1 is covered. Points joined by covered transitions form a segment with
    its own intercept, so a jump across pooling does not bend the common slope. Returns
    (exp(-slope): the factor per layer going backward, R^2 within segments, transitions used);
    (None, None, 0) when no segment has two points.
    """
    segments: list[list[tuple[int, float]]] = []
    for index, value in enumerate(log_norms):
        if value is None:
            continue
        joined = bool(segments) and segments[-1][-1][0] == index - 1 and linked[index - 1]
        if joined:
            segments[-1].append((index, value))
        else:
            segments.append([(index, value)])
    segments = [segment for segment in segments if len(segment) >= 2]
    if not segments:
        return None, None, 0
    sxx = sxy = syy = 0.0
    for segment in segments:  # centred within each segment: one intercept per segment
        x_mean = sum(x for x, _ in segment) / len(segment)
        y_mean = sum(y for _, y in segment) / len(segment)
        sxx += sum((x - x_mean) ** 2 for x, _ in segment)
        sxy += sum((x - x_mean) * (y - y_mean) for x, y in segment)
        syy += sum((y - y_mean) ** 2 for _, y in segment)
    slope = sxy / sxx
    residual = max(syy - slope * sxy, 0.0)
    r2 = 1.0 if syy == 0.0 or residual <= 1e-12 * syy else 1.0 - residual / syy
    return math.exp(-slope), r2, sum(len(segment) - 1 for segment in segments)


def _log_profile(gains: Sequence[float | None], present: Sequence[bool]) -> list[float | None]:
    """log ||g_i|| of a predicted profile up to one constant per segment (None where absent)."""
    values: list[float | None] = [0.0]
    for gain in gains:  # ||g_{i+1}|| = ||g_i|| / gain_i
        previous = values[-1]
        values.append(0.0 if previous is None or not gain else previous - math.log(gain))
    return [value if here else None for value, here in zip(values, present, strict=True)]


def border_fraction(kernel: int, height: int, width: int) -> float:
    """The share of a stride-1 'same' conv's kernel taps that land inside a zero-padded map.

    Per dimension of n pixels, kernel k and padding r = k // 2 the taps inside sum to
    k n - r (r + 1) (3n - 2 for a 3x3 kernel); E||g||^2 through W^T scales by this share.
    """
    reach = kernel // 2
    return ((kernel * height - reach * (reach + 1)) / (kernel * height)
            * (kernel * width - reach * (reach + 1)) / (kernel * width))


# ---------------------------------------------------------------------------- prediction
@dataclass(frozen=True)
class RunTheory:
    """A run's prediction and the facts about its layers the report's reasons use."""

    prediction: Prediction | NoPrediction
    border_gains: tuple[float | None, ...] = ()  # the gains with zero-padded borders counted
    map_sizes: tuple[int | None, ...] = ()  # per layer: its (square) feature map, None: linear
    channels: tuple[int, ...] = ()  # per layer: output channels
    in_channels: int | None = None  # the input channels whose model matched the records


def predict_run(run: RunData, channels: tuple[int, int] = (3, 1)) -> RunTheory:
    """The prediction for a run's model, from its recorded config (model options, image size,
    classes); a `NoPrediction` when the config names no zoo model. Imports torch (meta device)."""
    from gradprobe.theory.predict import predict_chain
    from gradprobe.theory.zoo import describe_chain

    model = dict(run.run_config.get("model") or {})
    name = model.pop("name", None)
    if not name:
        return RunTheory(NoPrediction("the run's config.json names no model"))
    options = {key: value for key, value in model.items() if value is not None}
    data = run.run_config.get("data") or {}
    image_size = int(data.get("image_size") or run.data_info.get("image_size") or 32)
    num_classes = run.num_classes or 10
    recorded = run.model_info.get("parameters")
    try:
        # The input's channels are not recorded; the parameter count tells 3 (RGB) from 1.
        # Each try runs the model on the meta device (~0.1 s): the study's last answer first.
        for in_channels in channels:
            layers, pooled, info = describe_chain(name, options, in_channels, image_size,
                                                  num_classes)
            if recorded is None or info.get("parameters") == recorded:
                break
        else:
            in_channels = 3
            layers, pooled, info = describe_chain(name, options, 3, image_size, num_classes)
        prediction = predict_chain(layers, info["activation"], info["init"],
                                   residual=bool(info.get("residual")),
                                   pooled_before=frozenset(pooled))
    except (InputError, ValueError) as error:
        return RunTheory(NoPrediction(f"model {name!r} with options {options} has no theory: "
                                      f"{error}"))
    shapes = info["shapes"]
    maps: list[int | None] = []
    shares: list[float] = []  # per layer: the share of its kernel taps inside the map
    for layer in layers:
        inputs, outputs = shapes[layer.name]
        same_conv = len(outputs) == 4 and inputs[2:] == outputs[2:]  # stride 1, 'same' padding
        maps.append(int(outputs[2]) if len(outputs) == 4 else None)
        kernel = math.isqrt(layer.fan_out // layer.out_channels)
        share = border_fraction(kernel, outputs[2], outputs[3]) if same_conv else 1.0
        shares.append(share)
    if isinstance(prediction, NoPrediction):
        return RunTheory(prediction)
    # Transition i -> i+1 goes back through layer i+1's weights: E||g||^2 scales by its share.
    # A batch norm after layer i divides by z_i's batch std, whose variance the borders of
    # layer i shrink by its own share: within a stage of equal maps the two cancel.
    corrected = tuple(
        None if gain is None else gain * math.sqrt(
            shares[index + 1] / (shares[index] if layers[index].norm == "batch" else 1.0))
        for index, gain in enumerate(prediction.gains))
    return RunTheory(prediction, corrected, tuple(maps),
                     tuple(layer.out_channels for layer in layers), in_channels)


# ---------------------------------------------------------------------------- the check
def _first_step_norms(run: RunData, layers: Sequence[str]) -> tuple[int | None, dict[str, float]]:
    grads = run.gradients
    rows = grads.loc[(grads[GradCol.metric] == QUANTITY) & grads[GradCol.layer].isin(layers)]
    if rows.empty:
        return None, {}
    step = int(rows[GradCol.step].min())
    at_step = rows.loc[rows[GradCol.step] == step]
    return step, {str(layer): float(value) for layer, value
                  in zip(at_step[GradCol.layer], at_step[GradCol.value], strict=True)}


def _last_epoch_norms(run: RunData) -> tuple[int | None, dict[str, float]]:
    means = run_epoch_means(run, QUANTITY)
    if means.empty:
        return None, {}
    epoch = int(means[GradCol.epoch].max())
    at_epoch = means.loc[means[GradCol.epoch] == epoch]
    return epoch, {str(layer): float(value) for layer, value
                   in zip(at_epoch[GradCol.layer], at_epoch["mean"], strict=True)}


def _logs(layers: Sequence[str], norms: Mapping[str, float]) -> list[float | None]:
    values = [norms.get(layer) for layer in layers]
    return [math.log(v) if v is not None and math.isfinite(v) and v > 0 else None
            for v in values]


def check_run(run: RunData, theory: RunTheory | None = None) -> TheoryCheck:
    """Compare a run's first-step output-gradient profile with the theory's (see the module)."""
    theory = theory or predict_run(run)
    prediction = theory.prediction
    if isinstance(prediction, NoPrediction):
        return TheoryCheck(run.name, NO_PREDICTION, reason=prediction.reason)
    recorded = set(run.gradients[GradCol.metric].unique())
    if QUANTITY not in recorded:
        return TheoryCheck(run.name, NOT_MEASURED, reason=(
            f"the run did not record {QUANTITY}, the quantity the theory predicts; the "
            f"comparison needs it (add {QUANTITY} to the probe's metrics)"))
    layers = prediction.layers
    linked = [gain is not None for gain in prediction.gains]
    step, norms = _first_step_norms(run, layers)
    measured_logs = _logs(layers, norms)
    measured, r2, transitions = segment_fit(measured_logs, linked)
    if measured is None:
        return TheoryCheck(run.name, NOT_MEASURED, step=step, reason=(
            f"no two neighbouring layers of the prediction have finite {QUANTITY} records at "
            "the first recorded step"))
    present = [value is not None for value in measured_logs]
    predicted, _, _ = segment_fit(_log_profile(prediction.gains, present), linked)
    border, _, _ = segment_fit(_log_profile(theory.border_gains, present), linked)
    epoch, last_norms = _last_epoch_norms(run)
    measured_last, _, _ = segment_fit(_logs(layers, last_norms), linked)
    fitted = [index for index, here in enumerate(present) if here]
    maps = [theory.map_sizes[i] for i in fitted if theory.map_sizes[i] is not None]
    train = run.run_config.get("train") or {}
    return TheoryCheck(
        run.name, _agreement(measured, predicted, border),
        predicted=predicted, measured=measured, step=step, transitions=transitions,
        skipped=sum(not link for link in linked), r2=r2, border_predicted=border,
        smallest_map=min(maps) if maps else None, last_epoch=epoch, measured_last=measured_last,
        narrowest=min((theory.channels[i] for i in fitted[:-1]), default=None),  # not the head
        batch_size=train.get("batch_size"), activation=run.model_info.get("activation"))


def _within(measured: float, predicted: float | None) -> bool:
    return bool(predicted) and abs(measured / predicted - 1.0) <= TOLERANCE


def _agreement(measured: float, predicted: float | None, border: float | None) -> str:
    if _within(measured, predicted):
        return AGREES
    return WITH_BORDERS if _within(measured, border) else PARTS


def check_study(study: StudyData) -> list[TheoryCheck]:
    """`check_run` for every run; runs with the same model config share one prediction."""
    cache: dict[str, RunTheory] = {}
    checks = []
    channels = (3, 1)
    for run in study.runs.values():
        key = repr((run.run_config.get("model"), (run.run_config.get("data") or {}).get(
            "image_size"), run.num_classes, run.model_info.get("parameters")))
        if key not in cache:
            cache[key] = predict_run(run, channels)
            if cache[key].in_channels == 1:  # the study's data are grey: try 1 first next time
                channels = (1, 3)
        checks.append(check_run(run, cache[key]))
    return checks
