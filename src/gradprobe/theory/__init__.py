"""Theory beside measurement: the predicted per-layer gradient gain at initialisation.

    from gradprobe.theory import predict_for_config
    prediction = predict_for_config("plain_stack", {"depth": 16, "init": "default"})
    prediction.factor   # 0.408 = sqrt(1/3 * 1/2): ||dL/dz_i|| / ||dL/dz_{i+1}||, per layer
    prediction.gains    # one per transition, input first (None: no result covers it)

The quantity predicted is the norm of the gradient with respect to each weight layer's output
(gradprobe's `output_grad_norm`), not the weight gradient. `moments`, `gain` and `predict` are
torch-free (numpy only); `zoo.predict_for_config` builds the model on the meta device to read
its layer shapes. A `NoPrediction` carries the reason no published result applies.
"""

from gradprobe.theory.gain import (
    BATCH_NORM_RELU_GAIN,
    ChainTheory,
    Layer,
    chi1,
    fixed_point,
    propagate_chain,
    weight_variance,
)
from gradprobe.theory.moments import gaussian_moments
from gradprobe.theory.predict import NoPrediction, Prediction, predict_chain
from gradprobe.theory.zoo import predict_for_config

__all__ = [
    "BATCH_NORM_RELU_GAIN",
    "ChainTheory",
    "Layer",
    "NoPrediction",
    "Prediction",
    "chi1",
    "fixed_point",
    "gaussian_moments",
    "predict_chain",
    "predict_for_config",
    "propagate_chain",
    "weight_variance",
]
