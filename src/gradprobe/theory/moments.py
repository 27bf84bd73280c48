"""Gaussian moments of an activation: E[phi(z)^2] and E[phi'(z)^2] for z ~ N(0, q).

These two numbers are all the mean-field theory of a wide network at initialisation needs: the
forward second moment of the next layer's pre-activation is sigma_w^2 E[phi(z)^2] + sigma_b^2,
and the backward gain in squared norm is sigma_w^2 E[phi'(z)^2] (Poole et al. 2016, "Exponential
expressivity in deep neural networks through transient chaos", eqs. 3 and 7; Schoenholz et al.
2017, "Deep Information Propagation", chi_1 in eq. 5). ReLU and leaky ReLU have closed forms;
tanh, sigmoid and GELU are integrated with Gauss-Hermite quadrature, as in those papers.
Torch-free: numpy and math only.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

# nn.LeakyReLU's default slope, the one the zoo uses (gradprobe.models.layers.LEAKY_RELU_SLOPE;
# not imported, so this package needs no torch).
LEAKY_RELU_SLOPE = 0.01
QUADRATURE_POINTS = 121  # probabilists' Gauss-Hermite nodes; exact for polynomials of degree 241
CLOSED_FORM = ("relu", "leaky_relu")
QUADRATURE = ("tanh", "sigmoid", "gelu")
ACTIVATIONS = (*CLOSED_FORM, *QUADRATURE)

_erf = np.vectorize(math.erf, otypes=[float])


def _gelu(z: np.ndarray) -> np.ndarray:
    return z * 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))  # torch's exact (erf) GELU


def _gelu_prime(z: np.ndarray) -> np.ndarray:
    # d/dz [z Phi(z)] = Phi(z) + z phi(z)
    density = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * density


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + e^-z)


FUNCTIONS = {
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "gelu": (_gelu, _gelu_prime),
}


@cache
def _nodes() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    return nodes, weights / math.sqrt(2.0 * math.pi)  # weights now sum to 1: E over N(0, 1)


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        known = ", ".join(ACTIVATIONS)
        raise ValueError(f"no theory for activation {activation!r}; known: {known}")


def gaussian_moments(activation: str, q: float) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(0, q), q >= 0 the pre-activation variance."""
    check_activation(activation)
    if q < 0 or not math.isfinite(q):
        raise ValueError(f"pre-activation variance must be finite and >= 0, got {q}")
    if activation == "relu":
        return q / 2.0, 0.5  # half the mass is positive; phi' = 1 there (He et al. 2015)
    if activation == "leaky_relu":
        slope2 = LEAKY_RELU_SLOPE**2
        return (1.0 + slope2) * q / 2.0, (1.0 + slope2) / 2.0
    phi, phi_prime = FUNCTIONS[activation]
    nodes, weights = _nodes()
    z = math.sqrt(q) * nodes
    return float(weights @ phi(z) ** 2), float(weights @ phi_prime(z) ** 2)


def variance_after(activation: str, q: float) -> float:
    """Var(phi(z)) for z ~ N(0, q): the second moment minus the squared mean."""
    check_activation(activation)
    if activation in CLOSED_FORM:
        slope = 0.0 if activation == "relu" else LEAKY_RELU_SLOPE
        # E[relu(z)] = sqrt(q / 2 pi); a leaky ReLU is (1 - s) relu(z) + s z.
        mean = (1.0 - slope) * math.sqrt(q / (2.0 * math.pi))
        return gaussian_moments(activation, q)[0] - mean**2
    phi, _ = FUNCTIONS[activation]
    nodes, weights = _nodes()
    values = phi(math.sqrt(q) * nodes)
    return float(weights @ values**2 - (weights @ values) ** 2)
