"""Mean-field forward and backward propagation through a chain of weight layers at init.

The quantity predicted is the OUTPUT-GRADIENT norm: g_l = dL/dz_l, with z_l the output of weight
layer l (the conv or linear output, before its norm and activation), i.e. gradprobe's
`output_grad_norm`. `ChainTheory.gains[i]` is ||g_i|| / ||g_{i+1}||, the factor by which the
gradient's norm changes per layer on its way toward the input (< 1: it vanishes).

Wide-layer, gradient-independence assumptions throughout (Schoenholz et al. 2017, section 2;
Yang et al. 2019, Axiom 3.2): weights are i.i.d. with zero mean, so every pre-activation is a
centred Gaussian whose variance q_l follows the forward map. The backward pass through W^T
multiplies the squared norm of the WHOLE gradient tensor, E||g||^2, by Var(w) * fan_in: each
entry of g_{l+1} reaches fan_in inputs through distinct weights (also for a strided conv). Per
unit (an RMS) the factor is Var(w) * fan_out instead (Glorot & Bengio 2010's backward
condition); the two agree when fan_in = fan_out, and gradprobe's probe reports norms. Not
modelled: finite width, finite batch, zero-padding at image borders, pooling, and training
moving the weights.

A weight-gradient profile is NOT this profile: ||dL/dW_l|| also carries the size of the layer's
input, sqrt(E[a_{l-1}^2]), which the forward pass sets (see `ChainTheory.input_second_moments`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradprobe.theory.moments import LEAKY_RELU_SLOPE, gaussian_moments, variance_after

INITS = ("default", "kaiming", "xavier", "orthogonal")
MAX_VARIANCE = 1e12  # the forward map may diverge (ReLU with sigma_w^2 > 2); gains stay defined


@dataclass(frozen=True)
class Layer:
    """One weight layer: a conv (fans include the kernel area) or a linear layer."""

    name: str
    fan_in: int  # in_channels * kernel area (torch's fan_in)
    fan_out: int  # out_channels * kernel area (torch's fan_out)
    out_channels: int  # rows of the flattened weight (for orthogonal init)
    norm: str = "none"  # the norm that follows it: "none" or "batch"
    bias: bool = True  # whether it has a bias (the zoo: iff no norm follows)


def init_gain_squared(activation: str) -> float:
    """torch.nn.init.calculate_gain(activation)^2, GELU given ReLU's (gradprobe.models.init)."""
    return {
        "relu": 2.0,
        "gelu": 2.0,
        "leaky_relu": 2.0 / (1.0 + LEAKY_RELU_SLOPE**2),
        "tanh": (5.0 / 3.0) ** 2,
        "sigmoid": 1.0,
    }[activation]


def weight_variance(init: str, activation: str, layer: Layer) -> float:
    """Var(w) of one weight entry under gradprobe's init schemes (gradprobe.models.init)."""
    if init == "default":
        # PyTorch's kaiming_uniform_(a=sqrt(5)): gain^2 = 2 / (1 + 5) = 1/3, U(-b, b) with
        # b = sqrt(3) * gain / sqrt(fan_in), so Var = b^2 / 3 = 1 / (3 fan_in)
        # (Glorot & Bengio 2010 for the uniform variance; torch.nn.Conv2d.reset_parameters).
        return 1.0 / (3.0 * layer.fan_in)
    gain2 = init_gain_squared(activation)
    if init == "kaiming":
        return gain2 / layer.fan_in  # He et al. 2015, fan_in mode
    if init == "xavier":
        return gain2 * 2.0 / (layer.fan_in + layer.fan_out)  # Glorot & Bengio 2010
    if init == "orthogonal":
        # Orthonormal rows (or columns, if there are more rows) of the (out, fan_in) matrix:
        # each entry has variance 1 / max(rows, columns) (Saxe et al. 2014).
        return gain2 / max(layer.out_channels, layer.fan_in)
    raise ValueError(f"no theory for init {init!r}; known: {', '.join(INITS)}")


def bias_variance(init: str, layer: Layer) -> float:
    """Var(b): PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the other schemes zero it."""
    return 1.0 / (3.0 * layer.fan_in) if init == "default" and layer.bias else 0.0


def fixed_point(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """The fixed point q* of q -> sigma_w2 E[phi(z)^2] + sigma_b2 reached from q0.

    Poole et al. 2016, eq. 3 (the "length map"); iterated to convergence. Capped at
    MAX_VARIANCE when the map diverges.
    """
    q = q0
    for _ in range(10_000):
        new = min(sigma_w2 * gaussian_moments(activation, q)[0] + sigma_b2, MAX_VARIANCE)
        if abs(new - q) <= 1e-13 * max(1.0, q):
            return new
        q = new
    return q


def chi1(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """chi_1 = sigma_w2 E[phi'(z)^2] at the fixed point (Schoenholz et al. 2017, eq. 5)."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2)
    return sigma_w2 * gaussian_moments(activation, q_star)[1]


# Yang et al. 2019, "A Mean Field Theory of Batch Normalization", ICLR: in a plain ReLU network
# with batch norm, in the large-batch limit, E||g||^2 grows by pi / (pi - 1) per layer toward the
# input (their gradient-explosion rate for ReLU). It follows from the same backward step: after
# BN the pre-activation is N(0, 1), so the gain^2 is E[relu'(h)^2] / Var(relu(h)) =
# (1/2) / ((pi - 1) / (2 pi)) = pi / (pi - 1) ~ 1.467, i.e. 1.211 per layer in norm.
BATCH_NORM_RELU_GAIN = math.sqrt(math.pi / (math.pi - 1.0))


@dataclass(frozen=True)
class ChainTheory:
    """Mean-field propagation through a chain; index i is layer i, input first."""

    pre_activation_variances: tuple[float, ...]  # q_i = E[z_i^2] (before the norm)
    input_second_moments: tuple[float, ...]  # E[a_{i-1}^2], the input of layer i
    gains: tuple[float, ...]  # ||g_i|| / ||g_{i+1}||, len = layers - 1


def propagate_chain(
    layers: list[Layer], activation: str, init: str, input_second_moment: float = 1.0
) -> ChainTheory:
    """Forward variances and backward gains of a plain chain (no skips) of `layers`.

    Every layer but the last is followed by its norm and `activation`. Without a norm after
    layer i: q_i = Var(w_i) fan_in_i E[a_{i-1}^2] + Var(b_i) and gain_i^2 = Var(w_{i+1})
    fan_in_{i+1} E[phi'(z_i)^2] (Poole et al. 2016; Schoenholz et al. 2017). With batch norm
    after layer i (ReLU only, Yang et al. 2019): z_i is divided by its batch std sigma_i,
    sigma_i^2 = Var(w_i) fan_in_i Var(a_{i-1}), and gain_i^2 = Var(w_{i+1}) fan_in_{i+1}
    E[phi'(h)^2] / sigma_i^2 with h ~ N(0, 1); for equal layers this is pi / (pi - 1).
    """
    if activation != "relu" and any(layer.norm == "batch" for layer in layers[:-1]):
        raise ValueError("the batch-norm result (Yang et al. 2019) is for ReLU only")
    variances, moments, gains = [], [], []
    second_moment, input_variance = input_second_moment, input_second_moment  # centred inputs
    derivative_moments, scales = [], []
    for layer in layers:
        var_w = weight_variance(init, activation, layer)
        q = var_w * layer.fan_in * second_moment + bias_variance(init, layer)
        variances.append(q)
        moments.append(second_moment)
        if layer.norm == "batch":
            scales.append(var_w * layer.fan_in * input_variance)  # sigma_i^2, the batch variance
            second_moment, phi_prime2 = gaussian_moments(activation, 1.0)
            input_variance = variance_after(activation, 1.0)
        elif layer.norm == "none":
            scales.append(1.0)
            second_moment, phi_prime2 = gaussian_moments(activation, q)
            input_variance = variance_after(activation, q)
        else:
            raise ValueError(f"no theory for norm {layer.norm!r}; known: none, batch")
        derivative_moments.append(phi_prime2)
    for index in range(len(layers) - 1):
        following = layers[index + 1]
        backward = weight_variance(init, activation, following) * following.fan_in  # norm
        gains.append(math.sqrt(backward * derivative_moments[index] / scales[index]))
    return ChainTheory(tuple(variances), tuple(moments), tuple(gains))
