"""Predictions with their provenance: a `Prediction`, or a `NoPrediction` that says why not.

A prediction is never a guess: where no published result covers a network (residual blocks with
an activation after the addition, batch norm with a non-ReLU activation, pooling between two
layers), the answer is a `NoPrediction` with the reason, or the transition's gain is None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradprobe.theory.gain import Layer, propagate_chain
from gradprobe.theory.moments import CLOSED_FORM

QUANTITY = "output_grad_norm"

SOURCES = {
    "closed_form": "He et al. 2015 (ReLU: E[phi'^2] = 1/2); Poole et al. 2016, eq. 7",
    "quadrature": "Poole et al. 2016; Schoenholz et al. 2017 (chi_1), Gauss-Hermite quadrature",
    "batch_norm": "Yang et al. 2019, A Mean Field Theory of Batch Normalization (ReLU: pi/(pi-1))",
}

# Residual stacks and resnets: gradprobe's BasicBlock applies the activation AFTER the addition
# (He et al. 2016a), so the block input is not a centred Gaussian and E[phi'(x + F(x))^2] has no
# closed form; Yang & Schoenholz 2017 ("Mean Field Residual Networks") treat x + F(x) without it.
NO_RESIDUAL_RESULT = (
    "residual blocks with the activation after the addition (He et al. 2016a): no mean-field "
    "result covers this block (Yang & Schoenholz 2017 treat x + F(x) without a post-activation)"
)
NO_BATCH_NORM_RESULT = (
    "batch norm with {activation}: Yang et al. 2019 give the closed form for ReLU only"
)


@dataclass(frozen=True)
class Prediction:
    """Predicted output-gradient norm per layer at initialisation, relative to the last layer.

    `gains[i]` = ||dL/dz_i|| / ||dL/dz_{i+1}|| (None where no result covers the transition, e.g.
    across a pooling layer); `factor` is their geometric mean over the predicted transitions,
    comparable with a fitted per-layer factor (< 1: the gradient shrinks toward the input).
    """

    layers: tuple[str, ...]  # input first
    gains: tuple[float | None, ...]  # len(layers) - 1
    factor: float
    source: str  # the paper(s) each formula comes from
    quantity: str = QUANTITY  # ||dL/d(weight layer output)||, before norm and activation

    def profile(self) -> tuple[float | None, ...]:
        """||g_i|| relative to the last layer (1.0); None before an unpredicted transition."""
        values: list[float | None] = [1.0]
        for gain in reversed(self.gains):
            previous = values[-1]
            values.append(None if previous is None or gain is None else previous * gain)
        return tuple(reversed(values))


@dataclass(frozen=True)
class NoPrediction:
    """No theory covers this network; `reason` says why."""

    reason: str
    quantity: str = QUANTITY


def predict_chain(
    layers: list[Layer],
    activation: str,
    init: str,
    *,
    residual: bool = False,
    pooled_before: frozenset[int] = frozenset(),
    input_second_moment: float = 1.0,
) -> Prediction | NoPrediction:
    """Predict a plain chain of `layers` (every one followed by its norm and `activation`).

    `pooled_before` holds the indices of layers whose input was pooled (their incoming
    transition gets no gain). The forward variances are propagated from `input_second_moment`
    (1 for standard Gaussian images).
    """
    if residual:
        return NoPrediction(NO_RESIDUAL_RESULT)
    if len(layers) < 2:
        return NoPrediction("fewer than two weight layers: no per-layer gain to predict")
    norms = {layer.norm for layer in layers[:-1]}
    if "batch" in norms and activation != "relu":
        return NoPrediction(NO_BATCH_NORM_RESULT.format(activation=activation))
    theory = propagate_chain(layers, activation, init, input_second_moment)
    # No gain across a pooling layer. For ReLU-like activations the gain does not depend on the
    # signal's variance, so the layers after a pool are still predicted; for tanh, sigmoid and
    # GELU it does, and the pooled variance is not modelled: nothing after the first pool.
    first_pool = min(pooled_before, default=len(layers))
    homogeneous = activation in CLOSED_FORM or norms == {"batch"}
    gains = tuple(None if index + 1 in pooled_before or (not homogeneous and index >= first_pool)
                  else gain for index, gain in enumerate(theory.gains))
    known = [gain for gain in gains if gain is not None]
    if not known:
        return NoPrediction("every transition crosses a pooling layer: no gain predicted")
    if "batch" in norms:
        source = f"{SOURCES['batch_norm']}; {SOURCES['closed_form']}"
    else:
        source = SOURCES["closed_form" if activation in CLOSED_FORM else "quadrature"]
    factor = math.exp(sum(math.log(gain) for gain in known) / len(known)) if all(known) else 0.0
    return Prediction(tuple(layer.name for layer in layers), gains, factor, source)
