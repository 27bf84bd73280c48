"""GradientProbe against naive autograd references, and its lifecycle in the hard cases.

Every reference here is computed the slow, obvious way on a deep copy of the model with
in-place activations turned off: layer outputs kept by forward hooks, `torch.autograd.grad`
of the loss with respect to them, `p.grad` read by hand, weights compared before and after the
optimiser step.
"""

from __future__ import annotations

import copy
import gc
import io
import math
import weakref
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
import torch
import torchvision
from torch import Tensor, nn

from gradprobe.errors import InputError
from gradprobe.probe import GradientProbe, LayerInfo, list_metrics
from gradprobe.probe.norms import norms, squared_norm

BASIC_METRICS = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm")
RTOL = 1e-5


# ------------------------------------------------------------------------------ small models
class SharedConvNet(nn.Module):
    """A conv applied twice (weights shared), each time followed by an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.stem(x))
        x = self.act(self.shared(x))
        x = self.act(self.shared(x))
        return self.head(x.mean(dim=(2, 3)))


class ActivationNet(nn.Module):
    """conv1 -> ReLU, conv2 -> BN -> ReLU6, conv3 -> tanh, fc (no activation after it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.relu6 = nn.ReLU6()
        self.conv3 = nn.Conv2d(6, 4, 3, padding=1)
        self.tanh = nn.Tanh()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu6(self.bn(self.conv2(x)))
        x = self.tanh(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


# Which activation module's output "follows" each layer of ActivationNet, written by hand.
ACTIVATION_AFTER = {"conv1": "relu", "conv2": "relu6", "conv3": "tanh"}


class ReversedNet(nn.Module):
    """Modules registered in the opposite order to the one in which they run."""

    def __init__(self) -> None:
        super().__init__()
        self.last = nn.Linear(8, 2)
        self.middle = nn.Linear(8, 8)
        self.first = nn.Linear(4, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(torch.relu(self.middle(torch.relu(self.first(x)))))


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def small_cnn() -> nn.Module:
    """Conv directly followed by an in-place ReLU (as torchvision's VGG), then BN, then a head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def resnet50() -> nn.Module:
    return torchvision.models.resnet50(weights=None, num_classes=7)


def image_batch(batch: int, classes: int, size: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator)
    return images, torch.randint(0, classes, (batch,), generator=generator)


def vector_batch(batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 6, generator=generator), torch.randint(
        0, 3, (batch,), generator=generator
    )


# ------------------------------------------------------------------------------- references
def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy computing the same function with every in-place activation made out-of-place."""
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return reference


def naive_gradients(
    model: nn.Module, names: list[str], inputs: Tensor, targets: Tensor
) -> dict[str, dict[str, float]]:
    """weight_grad_norm, weight_grad_rms and output_grad_norm per layer, the obvious way."""
    reference = without_inplace(model)
    modules = dict(reference.named_modules())
    outputs: dict[str, list[Tensor]] = {name: [] for name in names}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: outputs[name].append(out)
        )
        for name in names
    ]
    loss = nn.functional.cross_entropy(reference(inputs), targets)
    flat = [(name, out) for name in names for out in outputs[name] if out.requires_grad]
    grads = torch.autograd.grad(loss, [out for _, out in flat], retain_graph=True)
    loss.backward()
    for handle in handles:
        handle.remove()
    result: dict[str, dict[str, float]] = {name: {} for name in names}
    for (name, _), grad in zip(flat, grads, strict=True):
        squares = result[name].get("output_grad_sq", 0.0)
        result[name]["output_grad_sq"] = squares + float((grad.double() ** 2).sum())
    for name in names:
        squares = result[name].pop("output_grad_sq", None)
        if squares is not None:
            result[name]["output_grad_norm"] = math.sqrt(squares)
        weight = modules[name].weight
        if weight.grad is not None:
            norm = math.sqrt(float((weight.grad.double() ** 2).sum()))
            result[name]["weight_grad_norm"] = norm
            result[name]["weight_grad_rms"] = norm / math.sqrt(weight.numel())
    return result


def probe_values(probe: GradientProbe, step: int | None = None) -> dict[str, dict[str, float]]:
    frame = probe.to_frame()
    if step is not None:
        frame = frame[frame.step == step]
    values: dict[str, dict[str, float]] = {}
    for row in frame.itertuples():
        values.setdefault(row.layer, {})[row.metric] = row.value
    return values


def assert_close(
    actual: dict[str, dict[str, float]], expected: dict[str, dict[str, float]], rtol: float = RTOL
) -> None:
    assert set(actual) == {name for name, metrics in expected.items() if metrics}
    for name, metrics in expected.items():
        assert set(actual.get(name, {})) == set(metrics), name
        for metric, value in metrics.items():
            assert actual[name][metric] == pytest.approx(value, rel=rtol, abs=1e-30), (name, metric)


def train_step(
    model: nn.Module,
    probe: GradientProbe,
    inputs: Tensor,
    targets: Tensor,
    step: int,
    **record: object,
) -> bool:
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    return probe.record(step, 0, **record)


# ------------------------------------------------------------------- gradients vs reference
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[Tensor, Tensor]]] = {
    "mlp": (mlp, vector_batch(8)),
    "cnn_inplace_relu": (small_cnn, image_batch(4, 4)),
    "shared_module": (SharedConvNet, image_batch(4, 5)),
    "resnet50_inplace": (resnet50, image_batch(2, 7, size=32)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_metrics_match_naive_autograd(name: str) -> None:
    build, (inputs, targets) = MODELS[name]
    torch.manual_seed(0)
    model = build()
    expected_names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    expected = naive_gradients(model, expected_names, inputs, targets)
    with GradientProbe(model, metrics=BASIC_METRICS) as probe:
        assert train_step(model, probe, inputs, targets, step=0)
    assert [layer.name for layer in probe.layers] == expected_names
    assert_close(probe_values(probe), expected)


def test_shared_module_records_norm_of_concatenated_gradients() -> None:
    torch.manual_seed(0)
    model = SharedConvNet()
    inputs, targets = image_batch(4, 5)
    expected = naive_gradients(model, ["shared"], inputs, targets)
    with GradientProbe(model, layers=["shared"], metrics=["output_grad_norm"]) as probe:
        train_step(model, probe, inputs, targets, step=0)
    # Two calls: sqrt(||g1||^2 + ||g2||^2), not either call alone.
    assert probe_values(probe)["shared"]["output_grad_norm"] == pytest.approx(
        expected["shared"]["output_grad_norm"], rel=RTOL
    )


def test_activation_metrics_match_naive_reference() -> None:
    torch.manual_seed(0)
    model = ActivationNet()
    inputs, targets = image_batch(4, 3)
    reference = copy.deepcopy(model)
    modules = dict(reference.named_modules())
    activations: dict[str, Tensor] = {}
    for layer, activation in ACTIVATION_AFTER.items():
        modules[activation].register_forward_hook(
            lambda _m, _i, out, layer=layer: activations.__setitem__(layer, out.detach())
        )
    reference(inputs)
    metrics = ("activation_mean", "activation_std", "dead_fraction")
    with GradientProbe(model, metrics=metrics) as probe:
        train_step(model, probe, inputs, targets, step=0)
    expected = {
        layer: {
            "activation_mean": float(out.double().mean()),
            "activation_std": float(out.double().std(unbiased=False)),
            "dead_fraction": float((out == 0).double().mean()),
        }
        for layer, out in activations.items()
    }
    expected["fc"] = {}  # nothing follows the head: no values
    assert expected["conv1"]["dead_fraction"] > 0.2  # the check below is not about zeros only
    assert_close(probe_values(probe), expected)


def test_dead_fraction_of_a_shared_module_counts_both_calls() -> None:
    torch.manual_seed(0)
    model = SharedConvNet()
    inputs, targets = image_batch(4, 5)
    reference = without_inplace(model)
    outputs: list[Tensor] = []
    reference.act.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    reference(inputs)
    shared_outputs = torch.cat([outputs[1].flatten(), outputs[2].flatten()])  # calls 2 and 3
    with GradientProbe(model, layers=["shared"], metrics=["dead_fraction"]) as probe:
        train_step(model, probe, inputs, targets, step=0)
    assert probe_values(probe)["shared"]["dead_fraction"] == pytest.approx(
        float((shared_outputs == 0).double().mean()), rel=RTOL
    )


@pytest.mark.parametrize("optimizer_name", ["sgd_momentum", "adam"])
def test_update_ratio_matches_manual_update(optimizer_name: str) -> None:
    torch.manual_seed(0)
    model = mlp()
    if optimizer_name == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe = GradientProbe(model, metrics=["update_ratio", "weight_grad_norm"])
    probe.watch_optimizer(optimizer)
    expected: dict[int, dict[str, dict[str, float]]] = {}
    with probe:
        for step in range(3):
            inputs, targets = vector_batch(8, seed=step)
            optimizer.zero_grad()
            train_step(model, probe, inputs, targets, step=step)
            before = {
                n: m.weight.detach().clone()
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear)
            }
            optimizer.step()
            expected[step] = {
                name: {
                    "update_ratio": float(
                        (
                            dict(model.named_modules())[name].weight.detach().double() - w.double()
                        ).norm()
                        / w.double().norm()
                    )
                }
                for name, w in before.items()
            }
    for step, layers in expected.items():
        values = probe_values(probe, step)
        for name, metrics in layers.items():
            assert values[name]["update_ratio"] == pytest.approx(metrics["update_ratio"], rel=RTOL)


def test_update_ratio_is_undefined_for_a_step_the_grad_scaler_skips() -> None:
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    probe = GradientProbe(model, metrics=["update_ratio", "weight_grad_norm"], every=2)
    probe.watch_optimizer(optimizer)
    with probe:
        # Step 0 overflows, so the scaler skips its update; step 1's update must not be taken
        # for it.
        for step, scale in enumerate((math.inf, 1.0, 1.0)):
            inputs, targets = vector_batch(8, seed=step)
            optimizer.zero_grad()
            scaler.scale(nn.functional.cross_entropy(model(inputs * scale), targets)).backward()
            probe.record(step, 0, scaler=scaler)
            scaler.step(optimizer)
            scaler.update()
    frame = probe.to_frame()
    updates = frame[frame.metric == "update_ratio"]
    assert set(updates.step) == {2} and len(updates) == 3 and (updates.value > 0).all()
    assert (frame.metric == "weight_grad_norm").sum() == 6  # non-finite at step 0, but recorded


def test_update_ratio_requires_a_watched_optimizer() -> None:
    model = mlp()
    with (
        GradientProbe(model, metrics=["update_ratio"]) as probe,
        pytest.raises(InputError, match="watch_optimizer"),
    ):
        train_step(model, probe, *vector_batch(4), step=0)


# ----------------------------------------------------------------------- physics identities
class ConvBnNet(nn.Module):
    """conv0 -> ReLU -> conv1 -> BN -> ReLU -> conv2 -> pool -> fc; BN makes conv1 scale-free."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1, bias=False)  # a bias would not scale
        self.bn = nn.BatchNorm2d(6, eps=1e-12)  # eps breaks exact invariance: make it tiny
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.conv1(torch.relu(self.conv0(x)))))
        return self.fc(self.conv2(x).mean(dim=(2, 3)))


def test_batch_norm_scale_invariance() -> None:
    """BN((aW)u) = BN(Wu): earlier gradients unchanged, dL/dW scaled by 1/a (Ioffe & Szegedy)."""
    torch.manual_seed(0)
    model = ConvBnNet().double()  # float64, so the identity is checked to 1e-6
    scaled = copy.deepcopy(model)
    scale = 7.0
    with torch.no_grad():
        scaled.conv1.weight.mul_(scale)
    inputs, targets = image_batch(4, 3)
    values = []
    for network in (model, scaled):
        with GradientProbe(network, metrics=BASIC_METRICS) as probe:
            train_step(network, probe, inputs.double(), targets, step=0)
        values.append(probe_values(probe))
    plain, rescaled = values
    assert rescaled["conv0"]["output_grad_norm"] == pytest.approx(
        plain["conv0"]["output_grad_norm"], rel=1e-6
    )
    assert rescaled["conv0"]["weight_grad_norm"] == pytest.approx(
        plain["conv0"]["weight_grad_norm"], rel=1e-6
    )
    assert rescaled["conv1"]["weight_grad_norm"] == pytest.approx(
        plain["conv1"]["weight_grad_norm"] / scale, rel=1e-6
    )
    assert rescaled["conv1"]["output_grad_norm"] == pytest.approx(
        plain["conv1"]["output_grad_norm"] / scale, rel=1e-6
    )


# ------------------------------------------------------------------------ AMP, freezing, DDP
@pytest.mark.parametrize("unscale_first", [False, True])
def test_grad_scaler_values_are_unscaled(unscale_first: bool) -> None:
    torch.manual_seed(0)
    model = small_cnn()
    inputs, targets = image_batch(4, 4)
    names = ["0", "2", "7"]
    expected = naive_gradients(model, names, inputs, targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    with GradientProbe(model, metrics=BASIC_METRICS) as probe:
        loss = nn.functional.cross_entropy(model(inputs), targets)
        scaler.scale(loss).backward()
        assert model[0].weight.grad.norm() > 100 * expected["0"]["weight_grad_norm"]
        if unscale_first:  # e.g. before gradient clipping: .grad is already divided
            scaler.unscale_(optimizer)
        probe.record(0, 0, scaler=scaler)
        scaler.step(optimizer)
        scaler.update()
    assert_close(probe_values(probe), expected)


def test_auto_record_through_the_optimizer_was_removed() -> None:
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(InputError, match="before clipping"):
        GradientProbe(model).watch_optimizer(optimizer, record=True)


@pytest.mark.parametrize(
    ("frozen", "left"),
    [
        ("2", {"0": 3, "2": 1, "4": 3}),  # a middle layer: its output still needs grad
        ("0", {"2": 3, "4": 3}),  # the first layer, whose input needs no grad: nothing left
    ],
)
def test_frozen_layers_lose_weight_metrics(frozen: str, left: dict[str, int]) -> None:
    torch.manual_seed(0)
    model = mlp()
    dict(model.named_modules())[frozen].requires_grad_(False)
    inputs, targets = vector_batch(8)
    expected = naive_gradients(model, ["0", "2", "4"], inputs, targets)
    assert {name: len(metrics) for name, metrics in expected.items() if metrics} == left
    with GradientProbe(model, metrics=BASIC_METRICS) as probe:
        train_step(model, probe, inputs, targets, step=0)
    assert_close(probe_values(probe), expected)


def test_gradient_accumulation_records_once_per_optimizer_step() -> None:
    torch.manual_seed(0)
    model = mlp()
    inputs, targets = vector_batch(8)
    expected = naive_gradients(model, ["0", "2", "4"], inputs, targets)
    with GradientProbe(model, metrics=BASIC_METRICS) as probe:
        for micro in range(2):  # two micro-batches of 4; the loss is the mean over all 8
            part = slice(4 * micro, 4 * micro + 4)
            loss = nn.functional.cross_entropy(model(inputs[part]), targets[part]) / 2
            loss.backward()
        assert probe.record(0, 0)
    assert_close(probe_values(probe), expected)
    assert len(probe.to_frame()) == 9


def test_nan_from_a_diverged_step_is_kept() -> None:
    model = mlp()
    inputs, targets = vector_batch(4)
    with GradientProbe(model, metrics=BASIC_METRICS) as probe:
        train_step(model, probe, inputs * math.inf, targets, step=0)
    frame = probe.to_frame()
    assert len(frame) == 9 and frame.value.isna().all()


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-3, 1.0, 1e15, 1e25])
def test_norms_neither_underflow_nor_overflow(scale: float) -> None:
    """float32 sums of squares lose entries below ~1e-19, overflow above ~1e19, and drift on
    long tensors (torch's CPU float32 norm: ~1e-4 relative at 5M entries)."""
    generator = torch.Generator().manual_seed(0)
    shapes = ((64, 3, 3), (1000,), (5_000_003,))
    tensors = [(torch.randn(shape, generator=generator) + 1) * scale for shape in shapes]
    tensors.append((torch.randn(50, generator=generator) * min(scale, 1e4)).half())
    expected = [float(t.double().pow(2).sum().sqrt()) for t in tensors]
    assert expected[0] > 0 and math.isfinite(expected[1])
    assert [float(n) for n in norms(tensors)] == pytest.approx(expected, rel=1e-7)
    squares = [float(squared_norm(t)) for t in tensors]
    assert squares == pytest.approx([value**2 for value in expected], rel=2e-7)


# ------------------------------------------------------------------------------- lifecycle
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def hook_count(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    module_hooks = sum(len(getattr(m, name)) for m in model.modules() for name in HOOK_DICTS)
    return (
        module_hooks
        + len(optimizer._optimizer_step_pre_hooks)
        + len(optimizer._optimizer_step_post_hooks)
    )


def test_detach_leaves_no_hook() -> None:
    torch.manual_seed(0)
    model = ActivationNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = GradientProbe(model, metrics=list_metrics())
    probe.watch_optimizer(optimizer)
    inputs, targets = image_batch(4, 3)
    for _ in range(2):  # attach again after detach: still nothing left behind
        with probe:
            assert hook_count(model, optimizer) > 0
            loss = nn.functional.cross_entropy(model(inputs), targets)  # graph built attached
        assert hook_count(model, optimizer) == 0
        loss.backward()  # the output hooks of that graph fire after detach and do nothing
        assert not probe._collector.held and not probe._collector.host_sums
        assert all(not partials for partials in probe._collector.partials.values())


def test_eval_mode_and_no_grad_record_nothing() -> None:
    torch.manual_seed(0)
    model = ActivationNet()
    inputs, targets = image_batch(4, 3)
    metrics = ("weight_grad_norm", "output_grad_norm", "dead_fraction", "activation_std")
    with GradientProbe(model, metrics=metrics) as probe:
        model.eval()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()  # gradients in eval mode: weights get .grad, the probe ignores outputs
        model.train()
        with torch.no_grad():
            model(inputs)
        assert all(layer.depth == -1 for layer in probe.layers)  # not even depth discovery
        assert probe.record(0, 0)
    frame = probe.to_frame()
    assert set(frame.metric) == {"weight_grad_norm"}  # read from .grad, which eval mode filled
    assert len(frame) == 4 and frame.depth.eq(-1).all()


def test_every_k_and_schedule_callable() -> None:
    torch.manual_seed(0)
    model = mlp()
    inputs, targets = vector_batch(8)
    expected = naive_gradients(model, ["0", "2", "4"], inputs, targets)
    for every, recorded in ((3, [0, 3, 6]), (lambda step: step in (1, 4), [1, 4])):
        with GradientProbe(model, metrics=BASIC_METRICS, every=every) as probe:
            flags = []
            for step in range(8):
                model.zero_grad()
                flags.append(train_step(model, probe, inputs, targets, step=step))
        assert [step for step, flag in enumerate(flags) if flag] == recorded
        assert sorted(probe.to_frame().step.unique()) == recorded
        for step in recorded:  # skipped steps' output gradients were dropped, not accumulated
            assert_close(probe_values(probe, step), expected)


def test_depth_is_forward_execution_order() -> None:
    model = ReversedNet()
    probe = GradientProbe(model)
    assert [layer.name for layer in probe.layers] == ["last", "middle", "first"]
    assert [layer.depth for layer in probe.layers] == [-1, -1, -1]
    with probe:
        model(torch.randn(2, 4)).sum().backward()
        probe.record(0, 0)
    assert probe.layers == [
        LayerInfo("last", "linear", 2),
        LayerInfo("middle", "linear", 1),
        LayerInfo("first", "linear", 0),
    ]
    frame = probe.to_frame()
    assert list(frame.layer.drop_duplicates()) == ["first", "middle", "last"]


def test_layer_selection_and_input_errors() -> None:
    model = ActivationNet()
    convs = ["conv1", "conv2", "conv3"]
    assert [layer.name for layer in GradientProbe(model, layers=[nn.Conv2d]).layers] == convs
    assert [layer.name for layer in GradientProbe(model, layers=["conv3", "fc"]).layers] == [
        "conv3",
        "fc",
    ]
    by_predicate = GradientProbe(model, layers=lambda name, module: name.startswith("conv"))
    assert [layer.name for layer in by_predicate.layers] == convs
    bn = GradientProbe(model, layers=[nn.BatchNorm2d]).layers
    assert bn == [LayerInfo("bn", "batchnorm2d", -1)]
    for bad, message in (
        ({"layers": ["nope"]}, "no submodule named 'nope'"),
        ({"layers": [nn.LSTM]}, "no layer of .* matches"),
        ({"layers": "conv1"}, "is not a list"),
        ({"layers": [nn.Conv2d, "fc"]}, "mixes kinds"),
        ({"metrics": ["weight_grad_norm", "no_such_metric"]}, "unknown probe metric"),
        ({"metrics": ["output_grad_norm", "output_grad_norm"]}, "twice"),
        ({"metrics": []}, "non-empty list"),
        ({"every": 0}, "positive integer"),
        ({"every": 1.5}, "positive integer"),
        ({"parameters": "biases"}, "'weights' or 'all'"),
    ):
        with pytest.raises(InputError, match=message):
            GradientProbe(model, **bad)


def test_to_frame_types() -> None:
    model = mlp()
    with GradientProbe(model) as probe:
        train_step(model, probe, *vector_batch(4), step=5)
    frame = probe.to_frame()
    assert list(frame.columns) == ["step", "epoch", "layer", "depth", "kind", "metric", "value"]
    for column in ("step", "epoch", "depth"):
        assert frame[column].dtype == "int64"
    assert frame.value.dtype == "float64"
    for column in ("layer", "kind", "metric"):
        assert pd.api.types.is_string_dtype(frame[column])
    assert frame.step.eq(5).all() and set(frame.kind) == {"linear"}
    assert list(frame.metric[:3]) == list(BASIC_METRICS)


def test_state_dict_round_trip_and_continued_recording() -> None:
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def run(probe: GradientProbe, steps: range) -> None:
        with probe:
            for step in steps:
                optimizer.zero_grad()
                train_step(model, probe, *vector_batch(8, seed=step), step=step)
                optimizer.step()
                if step == 1:
                    probe.flush()  # some rows on the host, some on the device

    first = GradientProbe(model)
    run(first, range(3))
    buffer = io.BytesIO()
    torch.save({"probe": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["probe"]

    resumed = GradientProbe(model)
    resumed.load_state_dict(state)
    assert resumed.layers == first.layers  # depths come back before any forward pass
    pd.testing.assert_frame_equal(resumed.to_frame(), first.to_frame())
    run(resumed, range(3, 5))
    frame = resumed.to_frame()
    assert sorted(frame.step.unique()) == [0, 1, 2, 3, 4]
    assert not frame.duplicated(["step", "layer", "metric"]).any()
    pd.testing.assert_frame_equal(frame[frame.step < 3].reset_index(drop=True), first.to_frame())

    with resumed, pytest.raises(ValueError, match="truncate_after"):
        train_step(model, resumed, *vector_batch(8), step=4)  # already recorded
    resumed.truncate_after(2)  # resuming from the step-2 checkpoint instead
    assert sorted(resumed.to_frame().step.unique()) == [0, 1, 2]
    with resumed:
        train_step(model, resumed, *vector_batch(8), step=3)
    assert sorted(resumed.to_frame().step.unique()) == [0, 1, 2, 3]

    other = GradientProbe(model, metrics=["output_grad_norm"])
    with pytest.raises(InputError, match="same model, layers and metrics"):
        other.load_state_dict(state)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models step faster on one thread: hand-offs between threads cost more than math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_no_reference_to_graph_or_activations_between_steps() -> None:
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = GradientProbe(model, metrics=list_metrics())
    probe.watch_optimizer(optimizer)
    seen: list[weakref.ref[Tensor]] = []
    for module in model:
        module.register_forward_hook(lambda _m, _i, out: seen.append(weakref.ref(out)))

    def step(index: int) -> None:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        seen.append(weakref.ref(loss))
        loss.backward()
        probe.record(index, 0)
        optimizer.step()

    inputs, targets = vector_batch(8)

    def live_tensors() -> int:
        gc.collect()
        # type(), not isinstance: isinstance reads __class__, which some torch modules warn on
        return sum(issubclass(type(obj), Tensor) for obj in gc.get_objects())

    with probe:
        step(0)
        gc.collect()
        assert seen and all(ref() is None for ref in seen)  # outputs, loss and graph are gone
        for index in range(1, 100):
            step(index)
        probe.flush()
        baseline = live_tensors()
        for index in range(100, 1000):
            step(index)
        probe.flush()
        assert live_tensors() == baseline  # nothing accumulates per step but history rows
    assert probe.to_frame().step.nunique() == 1000
