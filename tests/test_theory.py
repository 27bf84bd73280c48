"""`gradprobe.theory`: every formula against an independent Monte Carlo estimate, and the
prediction against gradprobe's own scan measurement.

The theory is torch-free; these tests use torch only to draw weights with gradprobe's real init
code (so `weight_variance` is checked too) and to back-propagate through random networks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gradprobe.models.init import init_weights
from gradprobe.scan import ScanConfig, measure, predict_networks, summarise
from gradprobe.theory import (
    BATCH_NORM_RELU_GAIN,
    Layer,
    NoPrediction,
    Prediction,
    chi1,
    gaussian_moments,
    predict_chain,
    predict_for_config,
    propagate_chain,
)
from gradprobe.theory.moments import variance_after

INITS = ("default", "kaiming", "xavier", "orthogonal")


def linear_layer(fan_in: int, fan_out: int, init: str, activation: str) -> nn.Linear:
    """A float64 Linear initialised by gradprobe's own init code (the default: PyTorch's)."""
    torch.manual_seed(fan_in + 7 * fan_out + len(init) + len(activation))
    layer = nn.Linear(fan_in, fan_out).double()
    init_weights(layer, init, activation)
    return layer


# --- Gaussian moments ---------------------------------------------------------------------------


TORCH_ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": nn.functional.gelu}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("q", [0.3, 1.0, 4.0])
def test_quadrature_matches_monte_carlo(activation: str, q: float) -> None:
    # Independent of the module: torch's own activation, its derivative by autograd.
    generator = torch.Generator().manual_seed(0)
    z = (torch.randn(1_000_000, generator=generator, dtype=torch.float64) * math.sqrt(q))
    z.requires_grad_(True)
    phi = TORCH_ACTIVATIONS[activation](z)
    (phi_prime,) = torch.autograd.grad(phi.sum(), z)
    phi = phi.detach()
    second, derivative = gaussian_moments(activation, q)
    # standard errors are below 0.1% at a million samples
    assert second == pytest.approx(float((phi**2).mean()), rel=5e-3)
    assert derivative == pytest.approx(float((phi_prime**2).mean()), rel=5e-3)
    assert variance_after(activation, q) == pytest.approx(float(phi.var()), rel=5e-3)


@pytest.mark.parametrize(("activation", "slope"), [("relu", 0.0), ("leaky_relu", 0.01)])
def test_relu_closed_forms_match_monte_carlo(activation: str, slope: float) -> None:
    q = 2.5
    z = np.random.default_rng(1).normal(0.0, math.sqrt(q), 1_000_000)
    phi = np.where(z > 0, z, slope * z)
    phi_prime = np.where(z > 0, 1.0, slope)
    second, derivative = gaussian_moments(activation, q)
    assert second == pytest.approx(np.mean(phi**2), rel=5e-3)
    assert derivative == pytest.approx(np.mean(phi_prime**2), rel=5e-3)
    assert variance_after(activation, q) == pytest.approx(np.var(phi), rel=5e-3)


def test_edge_of_chaos_for_tanh() -> None:
    # Poole et al. 2016: with sigma_b = 0, tanh's order-to-chaos transition is at sigma_w^2 = 1,
    # where q* = 0 and chi_1 = 1; chi_1 < 1 below it, > 1 above it.
    assert chi1("tanh", 1.0, 0.0) == pytest.approx(1.0, abs=1e-3)
    assert chi1("tanh", 0.8, 0.0) < 1.0 < chi1("tanh", 1.5, 0.0)


# --- one layer: the backward gain through a random matrix ---------------------------------------


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize(("fan_in", "fan_out"), [(768, 768), (1024, 256)])
def test_closed_form_gain_matches_random_matrices(
    init: str, activation: str, fan_in: int, fan_out: int
) -> None:
    layer = linear_layer(fan_in, fan_out, init, activation)
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(64, fan_in, generator=generator, dtype=torch.float64)  # layer l's output
    g = torch.randn(64, fan_out, generator=generator, dtype=torch.float64)  # dL/dz_{l+1}
    slope = 0.0 if activation == "relu" else 0.01
    derivative = torch.where(z > 0, 1.0, slope)
    with torch.no_grad():
        measured = float((derivative * (g @ layer.weight)).norm() / g.norm())
    chain = [Layer("l", 64, fan_in, fan_in, bias=False),
             Layer("l+1", fan_in, fan_out, fan_out, bias=init == "default")]
    (predicted,) = propagate_chain(chain, activation, init).gains
    assert measured == pytest.approx(predicted, rel=0.03)


# --- a deep chain: forward variances and backward gains together -------------------------------


def random_chain_measurement(
    activation: str, init: str, width: int, depth: int, seed: int
) -> tuple[list[float], list[float]]:
    """One random float64 MLP: per-layer ||dL/dz_i|| / ||dL/dz_{i+1}|| and E[z_i^2]."""
    torch.manual_seed(seed)
    layers = [nn.Linear(width, width).double() for _ in range(depth)]
    for layer in layers:
        init_weights(layer, init, activation)
    act = {"relu": torch.relu, **TORCH_ACTIVATIONS}[activation]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, width, generator=generator, dtype=torch.float64)
    outputs = []
    for index, layer in enumerate(layers):
        z = layer(x)
        z.retain_grad()
        outputs.append(z)
        x = act(z) if index < depth - 1 else z
    (x * torch.randn(x.shape, generator=generator, dtype=torch.float64)).sum().backward()
    norms = [float(z.grad.norm()) for z in outputs]
    gains = [norms[i] / norms[i + 1] for i in range(depth - 1)]
    return gains, [float((z.detach() ** 2).mean()) for z in outputs]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("init", ["default", "kaiming", "xavier"])
def test_chain_matches_monte_carlo_network(activation: str, init: str) -> None:
    width, depth, networks = 512, 8, 4
    runs = [random_chain_measurement(activation, init, width, depth, seed)
            for seed in range(networks)]
    gains = np.mean([run[0] for run in runs], axis=0)
    second_moments = np.mean([run[1] for run in runs], axis=0)
    theory = propagate_chain([Layer(f"{i}", width, width, width) for i in range(depth)],
                             activation, init)
    # One network's per-layer ratio scatters by 1.5-2.5% (measured over seeds: one draw of W
    # serves every example); the mean of 4 networks by about 1%.
    assert gains == pytest.approx(theory.gains, rel=0.05)
    assert np.exp(np.mean(np.log(gains))) == pytest.approx(
        np.exp(np.mean(np.log(theory.gains))), rel=0.03)
    # The forward variances are noisier: a post-ReLU, GELU or sigmoid input has a mean, and W
    # times a constant vector is the same for every example, so each network's row sums leave
    # about sqrt(2 / width) = 6% per layer that the batch does not average away, and it
    # compounds with depth (18% seen at layer 7 for GELU); the first three layers are checked.
    assert second_moments[:3] == pytest.approx(theory.pre_activation_variances[:3], rel=0.1)


def test_batch_norm_relu_gain_matches_monte_carlo() -> None:
    # Yang et al. 2019: E||g||^2 grows by pi / (pi - 1) per layer in a wide BN-ReLU chain with a
    # large batch; 512 units and 512 examples leave O(1/B) corrections below 2%.
    width, depth, batch = 512, 8, 512
    torch.manual_seed(4)
    blocks = [nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width))
              for _ in range(depth)]
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(batch, width, generator=generator)
    outputs = []
    for block in blocks:
        z = block[0](x)
        z.retain_grad()
        outputs.append(z)
        x = torch.relu(block[1](z))
    (x * torch.randn(x.shape, generator=generator)).sum().backward()
    norms = [float(z.grad.double().norm()) for z in outputs]
    measured = [norms[i] / norms[i + 1] for i in range(1, depth - 1)]  # past the first layer
    assert math.sqrt(math.pi / (math.pi - 1)) == pytest.approx(BATCH_NORM_RELU_GAIN)
    assert np.exp(np.mean(np.log(measured))) == pytest.approx(BATCH_NORM_RELU_GAIN, rel=0.03)
    chain = [Layer(f"{i}", width, width, width, "batch", bias=False) for i in range(depth)]
    assert propagate_chain(chain, "relu", "default").gains[1:] == pytest.approx(
        [BATCH_NORM_RELU_GAIN] * (depth - 2))


# --- what is predicted, and what is not ----------------------------------------------------------


def test_issue_numbers_for_pytorch_default_init() -> None:
    relu = predict_for_config("plain_stack", {"depth": 16, "init": "default"})
    assert isinstance(relu, Prediction) and relu.quantity == "output_grad_norm"
    assert relu.factor == pytest.approx(math.sqrt(1 / 6))  # sqrt(1/3 * 1/2) = 0.408
    tanh = predict_for_config("plain_stack", {"depth": 16, "init": "default",
                                              "activation": "tanh"})
    assert isinstance(tanh, Prediction) and tanh.factor < math.sqrt(1 / 3)
    he = predict_for_config("plain_stack", {"depth": 16})
    assert isinstance(he, Prediction) and he.factor == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("model", "options", "reason"),
    [
        ("residual_stack", {}, "activation after the addition"),
        ("resnet18", {}, "activation after the addition"),
        ("plain_stack", {"norm": "batch", "activation": "tanh"}, "ReLU only"),
        ("vgg16", {"norm": "batch", "activation": "gelu"}, "ReLU only"),
    ],
)
def test_no_prediction_says_why(model: str, options: dict[str, object], reason: str) -> None:
    prediction = predict_for_config(model, options)
    assert isinstance(prediction, NoPrediction)
    assert reason in prediction.reason


def test_vgg_with_batch_norm_and_tanh_across_pools() -> None:
    # BN convs then a plain linear head: each transition uses the norm that follows its layer.
    vgg = predict_for_config("vgg16", {"norm": "batch", "width": 0.25})
    assert isinstance(vgg, Prediction)
    assert vgg.gains[4:6] == pytest.approx([BATCH_NORM_RELU_GAIN] * 2)  # inside stage 3
    assert vgg.gains[-2:] == pytest.approx([math.sqrt(0.5 * 2.0)] * 2)  # kaiming ReLU head
    # tanh's gain depends on the signal variance, which pooling changes: nothing after a pool
    tanh = predict_for_config("vgg16", {"activation": "tanh", "width": 0.25})
    assert isinstance(tanh, Prediction)
    assert tanh.gains[0] is not None and set(tanh.gains[1:]) == {None}


def test_pooling_transitions_are_not_predicted() -> None:
    chain = [Layer(f"{i}", 64, 64, 64) for i in range(4)]
    prediction = predict_chain(chain, "relu", "kaiming", pooled_before=frozenset({2}))
    assert isinstance(prediction, Prediction)
    assert prediction.gains[1] is None and prediction.profile()[:2] == (None, None)
    assert prediction.factor == pytest.approx(1.0)


# --- against gradprobe's own measurement ---------------------------------------------------------


def test_prediction_matches_scan_at_depth_16_width_64() -> None:
    """Predicted vs measured per-layer factor on the scan's plain stacks (16 convs, 64 channels).

    Tolerance 5% on the per-layer factor (the geometric mean over 15 layers). Why: mean-field
    theory is exact for infinitely wide layers and batches; here each conv has fan-in 576 and
    16x16 zero-padded maps (the border convs see fewer inputs, which lowers the gain by about 1%
    per layer), batch norm sees a batch of 32, and one network is drawn per configuration.
    Measured deviations were 0.5-2.5% (README's table); a wrong constant (e.g. fan_out for
    fan_in, or pi/(pi-1) in norm rather than squared norm) would miss by 10% or more.
    """
    config = ScanConfig(architectures=["plain", "plain_bn"], depths=[16], seeds=1, width=2.0,
                        batch_size=32, image_size=16)
    cases = [("plain", "relu", "default"), ("plain", "relu", "kaiming"),
             ("plain", "tanh", "default"), ("plain", "sigmoid", "kaiming"),
             ("plain_bn", "relu", "kaiming")]
    table = pd.concat([measure(config, arch, act, init, 16, seed=0) for arch, act, init in cases])
    summary = summarise(table, predict_networks(config.model_copy(update={
        "activations": ("relu", "tanh", "sigmoid"), "inits": ("default", "kaiming")})))
    assert len(summary) == len(cases)
    for row in summary.itertuples():
        assert row.measured_factor == pytest.approx(row.predicted_factor, rel=0.05), row
