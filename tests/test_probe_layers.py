"""Every layer type measured or named, on models gradprobe did not write, against float64 autograd.

An LSTM language model with tied embedding/decoder weights, a bidirectional two-layer GRU, a
UNet with a transposed convolution and functional ReLUs, and a manual update loop (no torch
optimiser) that records every 4th step. Numbers are checked against `probe_reference` (a
float64 deep copy run through `torch.autograd.grad`); the warnings' wording is tested apart.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradprobe.probe import DEFAULT_LAYER_TYPES, GradientProbe
from gradprobe.probe.params import measured_parameters
from probe_reference import assert_matches, float64_reference, frame_values

ALL_METRICS = ("weight_grad_norm", "output_grad_norm", "global_grad_norm")
ACTIVATION_METRICS = ("activation_mean", "activation_std", "dead_fraction")
VOCAB, WIDTH = 11, 6


class TiedLstm(nn.Module):
    """Embedding -> 2-layer LSTM -> Linear decoder sharing the embedding's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.lstm = nn.LSTM(WIDTH, WIDTH, num_layers=2, batch_first=True)
        self.dec = nn.Linear(WIDTH, VOCAB)
        self.dec.weight = self.emb.weight  # tied (Press & Wolf 2017)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.dec(self.lstm(self.emb(tokens))[0])


class BiGru(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gru(x)[0][:, -1])


class UNet(nn.Module):
    """down (F.relu) -> pool -> mid (Conv + nn.ReLU) -> up (ConvTranspose2d, F.relu) -> out."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, padding=1)
        self.mid = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        skip = F.relu(self.down(x))
        middle = self.mid(F.max_pool2d(skip, 2))
        return self.out(torch.cat([F.relu(self.up(middle)), skip], dim=1))


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def token_batch(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (3, 5), generator=generator)
    return tokens, torch.randint(0, VOCAB, (3, 5), generator=generator)


def sequence_batch(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, 4, generator=generator), torch.randint(0, 3, (4,),
                                                                    generator=generator)


def image_batch(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 8, 8, generator=generator), torch.randn(2, 2, 8, 8,
                                                                    generator=generator)


def recurrent_weights(module: nn.RNNBase) -> list[str]:
    return [name for name, _ in module.named_parameters() if name.startswith("weight_")]


def train_with_optimizer(
    model: nn.Module, probe: GradientProbe, batches: list[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor], layers: dict[str, list[str]],
) -> dict[int, dict[str, dict[str, float]]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = {}
    with probe:
        for step, (inputs, targets) in enumerate(batches):
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
            expected[step] = float64_reference(model, layers, [(inputs, targets)], loss_fn)
            probe.record()
            optimizer.step()
    return expected


# ---------------------------------------------------------------------------------- numbers
def test_tied_lstm_language_model_matches_float64_reference() -> None:
    torch.manual_seed(0)
    model = TiedLstm()
    layers = {"lstm": recurrent_weights(model.lstm), "dec": ["weight"]}
    probe = GradientProbe(model, metrics=ALL_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'emb' is named in a warning: tested below
        expected = train_with_optimizer(model, probe, [token_batch(s) for s in range(3)],
                                        lm_loss, layers)
    assert [(layer.name, layer.kind, layer.depth) for layer in probe.layers] == [
        ("lstm", "recurrent", 0), ("dec", "linear", 1)]
    assert len(measured_parameters(model.lstm, "weights")) == 4  # ih, hh of both layers
    frame = probe.to_frame()
    for step, values in expected.items():
        assert_matches(frame, step, values)
    assert set(frame[frame.layer == "lstm"].metric) == {"weight_grad_norm", "output_grad_norm"}


def test_tied_embedding_opt_in_measures_the_shared_weight_once() -> None:
    torch.manual_seed(0)
    model = TiedLstm()
    layers = {"emb": ["weight"], "lstm": recurrent_weights(model.lstm), "dec": ["weight"]}
    probe = GradientProbe(model, layers="all", metrics=ALL_METRICS)
    expected = train_with_optimizer(model, probe, [token_batch(s) for s in range(2)],
                                    lm_loss, layers)
    assert [layer.name for layer in sorted(probe.layers, key=lambda x: x.depth)] == [
        "emb", "lstm", "dec"]
    frame = probe.to_frame()
    for step, values in expected.items():
        assert_matches(frame, step, values)  # global norm counts the tied weight once
    values = frame_values(frame, 1)
    assert values["emb"]["weight_grad_norm"] == values["dec"]["weight_grad_norm"]


def test_bidirectional_two_layer_gru_matches_float64_reference() -> None:
    torch.manual_seed(0)
    model = BiGru()
    names = recurrent_weights(model.gru)
    assert sorted(names) == sorted(f"weight_{kind}_l{layer}{direction}" for kind in ("ih", "hh")
                                   for layer in (0, 1) for direction in ("", "_reverse"))
    layers = {"gru": names, "head": ["weight"]}
    probe = GradientProbe(model, metrics=(*ALL_METRICS, "activation_mean", "activation_std"))
    expected = train_with_optimizer(model, probe, [sequence_batch(s) for s in range(3)],
                                    F.cross_entropy, layers)
    frame = probe.to_frame()
    for step, values in expected.items():
        assert_matches(frame, step, values)
    # A recurrent layer's activation is its own output sequence (tanh of its state).
    inputs, _ = sequence_batch(2)
    model = BiGru()
    with GradientProbe(model, metrics=("activation_mean", "activation_std")) as probe:
        model(inputs).sum().backward()
        probe.record()
    with torch.no_grad():
        output = model.double().gru(inputs.double())[0]
    values = frame_values(probe.to_frame(), 0)["gru"]
    assert values["activation_mean"] == pytest.approx(float(output.mean()), rel=1e-5)
    assert values["activation_std"] == pytest.approx(float(output.std(unbiased=False)), rel=1e-5)
    assert "head" not in frame_values(probe.to_frame(), 0)


def test_unet_upsampling_path_is_measured_in_depth_order() -> None:
    torch.manual_seed(0)
    model = UNet()
    layers = {"down": ["weight"], "mid.0": ["weight"], "up": ["weight"], "out": ["weight"]}
    probe = GradientProbe(model, metrics=ALL_METRICS)
    expected = train_with_optimizer(model, probe, [image_batch(s) for s in range(3)],
                                    F.mse_loss, layers)
    assert [(layer.name, layer.kind, layer.depth) for layer in probe.layers] == [
        ("down", "conv", 0), ("mid.0", "conv", 1), ("up", "conv", 2), ("out", "conv", 3)]
    frame = probe.to_frame()
    for step, values in expected.items():
        assert_matches(frame, step, values)


def test_activation_statistics_are_never_another_layers() -> None:
    """'down' and 'up' use F.relu: unmeasured, not mid.0's ReLU output copied."""
    torch.manual_seed(0)
    model = UNet()
    inputs, targets = image_batch(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GradientProbe(model, metrics=ACTIVATION_METRICS) as probe:
            F.mse_loss(model(inputs), targets).backward()
            probe.record()
    values = frame_values(probe.to_frame(), 0)
    assert set(values) == {"mid.0"}
    reference = model.double()
    with torch.no_grad():
        after = reference.mid(F.max_pool2d(F.relu(reference.down(inputs.double())), 2))
    assert values["mid.0"]["activation_mean"] == pytest.approx(float(after.mean()), rel=1e-5)
    assert values["mid.0"]["activation_std"] == pytest.approx(
        float(after.std(unbiased=False)), rel=1e-5)
    assert values["mid.0"]["dead_fraction"] == pytest.approx(float((after == 0).double().mean()))


def update_in_place(model: nn.Module) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param -= 0.1 * param.grad
    model.zero_grad()  # set_to_none


def update_data_zero_in_place(model: nn.Module) -> None:
    for param in model.parameters():
        param.data.add_(param.grad.data, alpha=-0.1)  # invisible to version counters
    model.zero_grad(set_to_none=False)


def update_data_set_to_none(model: nn.Module) -> None:
    for param in model.parameters():
        param.data.add_(param.grad.data, alpha=-0.1)
    model.zero_grad(set_to_none=True)


def update_data_only(model: nn.Module) -> None:
    for param in model.parameters():
        param.data.add_(param.grad.data, alpha=-0.1)  # gradients reset before backward


def mid_activation_mean(model: UNet, inputs: Tensor) -> float:
    """mean of mid's ReLU output, in float64, for `inputs` under the model's weights now."""
    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        pooled = F.max_pool2d(F.relu(reference.down(inputs.double())), 2)
        return float(reference.mid(pooled).mean())


@pytest.mark.parametrize("zero_before_backward", [False, True])
@pytest.mark.parametrize(
    "update", [update_in_place, update_data_zero_in_place, update_data_set_to_none]
)
def test_manual_update_loop_with_sparse_record(
    update: Callable[[nn.Module], None], zero_before_backward: bool
) -> None:
    """No torch optimiser, record() every 4th step: each recorded step's own gradients,
    activations and step number, not a pool of the 4 passes since the last record().
    `zero_before_backward`: gradients are reset after the forward pass instead of after the
    update (then an update through .data is seen only there)."""
    torch.manual_seed(0)
    model = UNet()
    layers = {"down": ["weight"], "mid.0": ["weight"], "up": ["weight"], "out": ["weight"]}
    step_update = update
    if zero_before_backward and update is not update_in_place:
        step_update = update_data_only
    expected, activation_means = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning but the one below: nothing was pooled
        warnings.filterwarnings("ignore", message=".*no activation module")  # down, up
        with GradientProbe(model, metrics=(*ALL_METRICS, "activation_mean")) as probe:
            for step in range(10):
                inputs, targets = image_batch(step)
                loss = F.mse_loss(model(inputs), targets)
                if zero_before_backward:
                    model.zero_grad(set_to_none=update is not update_data_zero_in_place)
                loss.backward()
                if step % 4 == 0:
                    expected[step] = float64_reference(model, layers, [(inputs, targets)],
                                                       F.mse_loss)
                    activation_means[step] = mid_activation_mean(model, inputs)
                    probe.record()
                step_update(model)
    frame = probe.to_frame()
    assert sorted(set(frame.step)) == [0, 4, 8]
    for step, values in expected.items():
        assert_matches(frame, step, values)
        assert frame_values(frame, step)["mid.0"]["activation_mean"] == pytest.approx(
            activation_means[step], rel=1e-5)


def test_manual_loop_recording_every_step_counts_steps() -> None:
    """The README's streaming pattern: backward, record(), zero_grad(), no optimiser."""
    model = UNet()
    with GradientProbe(model, metrics=("output_grad_norm",), every=3) as probe:
        for step in range(7):
            inputs, targets = image_batch(step)
            F.mse_loss(model(inputs), targets).backward()
            probe.record()
            update_in_place(model)
    assert sorted(set(probe.to_frame().step)) == [0, 3, 6]


def test_accumulating_without_optimiser_matches_the_pooled_reference() -> None:
    """Gradients never reset between 4 passes: the accumulated gradient, as documented."""
    torch.manual_seed(0)
    model = UNet()
    layers = {"down": ["weight"], "out": ["weight"]}
    batches = [image_batch(seed) for seed in range(4)]
    expected = float64_reference(model, layers, batches, lambda out, t: F.mse_loss(out, t) * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GradientProbe(model, layers=list(layers), metrics=ALL_METRICS) as probe:
            for inputs, targets in batches:
                F.mse_loss(model(inputs), targets).backward()
            probe.record()
    assert_matches(probe.to_frame(), 0, expected)


def test_default_selection_covers_every_conv_and_recurrent_layer() -> None:
    model = nn.ModuleDict({
        "c1": nn.Conv1d(2, 2, 1), "t1": nn.ConvTranspose1d(2, 2, 1),
        "t2": nn.ConvTranspose2d(2, 2, 1), "t3": nn.ConvTranspose3d(2, 2, 1),
        "rnn": nn.RNN(2, 2), "lstm": nn.LSTM(2, 2, proj_size=1), "gru": nn.GRU(2, 2),
        "fc": nn.Linear(2, 2),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every weighted module is probed: nothing to name
        probe = GradientProbe(model).attach()
    kinds = {layer.name: layer.kind for layer in probe.layers}
    assert kinds == {"c1": "conv", "t1": "conv", "t2": "conv", "t3": "conv", "rnn": "recurrent",
                     "lstm": "recurrent", "gru": "recurrent", "fc": "linear"}
    assert {nn.ConvTranspose2d, nn.RNNBase} <= set(DEFAULT_LAYER_TYPES)
    assert len(measured_parameters(model["lstm"], "weights")) == 3  # weight_hr_l0 too
    probe.detach()


class Scale(nn.Module):
    """A custom module with a raw parameter not named like a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(WIDTH))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gain


class Mixed(nn.Module):
    """A module of each opt-in kind beside a default one."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.scale = Scale()
        self.fc = nn.Linear(WIDTH, 3)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc(self.scale(self.norm(self.emb(tokens)).mean(dim=1)))


def test_layers_all_measures_embedding_and_layer_norm() -> None:
    torch.manual_seed(0)
    model = Mixed()
    batches = [(token_batch(s)[0], torch.randint(0, 3, (3,))) for s in range(2)]
    layers = {"emb": ["weight"], "norm": ["weight"], "fc": ["weight"]}
    probe = GradientProbe(model, layers="all", metrics=ALL_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scale.gain is not named like a weight: warned
        expected = train_with_optimizer(model, probe, batches, F.cross_entropy, layers)
    assert [layer.name for layer in probe.layers] == ["emb", "norm", "scale", "fc"]
    frame = probe.to_frame()
    for step, values in expected.items():
        assert_matches(frame, step, values)


# ---------------------------------------------------------------------------------- wording
def test_every_unprobed_weighted_module_is_named_once_with_the_fix() -> None:
    model = Mixed()
    probe = GradientProbe(model)
    with pytest.warns(UserWarning, match=r"does not probe 3 module\(s\)") as caught:
        probe.attach()
        probe.detach()
        probe.attach()
    named = [str(w.message) for w in caught if "does not probe" in str(w.message)]
    assert len(named) == 1
    for part in ("'scale' (Scale)", "'emb' (Embedding)", "'norm' (LayerNorm)",
                 "layers='all'", "nn.Embedding, nn.LayerNorm"):
        assert part in named[0]
    probe.detach()


def test_tied_embedding_is_named_with_the_layer_that_measures_its_weight() -> None:
    with pytest.warns(UserWarning, match=r"'emb' \(Embedding; its weight is measured as part "
                                         r"of 'dec'\)"):
        GradientProbe(TiedLstm()).attach().detach()


def test_functional_activation_layer_is_named_once() -> None:
    model = UNet()
    inputs, targets = image_batch(0)
    probe = GradientProbe(model, metrics=("activation_mean",))
    with pytest.warns(UserWarning, match="no activation module") as caught, probe:
        for _ in range(2):
            F.mse_loss(model(inputs), targets).backward()
            probe.record()
            update_in_place(model)
    named = sorted(str(w.message).split("'")[1] for w in caught
                   if "no activation module" in str(w.message))
    assert named == ["down", "up"]
    assert "F.relu" in str(caught[0].message) and "nn.ReLU()" in str(caught[0].message)


def test_pooled_backward_passes_without_optimiser_are_warned() -> None:
    model = UNet()
    probe = GradientProbe(model, metrics=("output_grad_norm",))
    with pytest.warns(UserWarning, match="pooled 4 backward passes into one step"), probe:
        for step in range(8):
            inputs, targets = image_batch(step)
            F.mse_loss(model(inputs), targets).backward()
            if step % 4 == 3:
                probe.record()


def test_recurrent_layer_is_not_called_parameterless() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradientProbe(nn.Sequential(nn.GRU(2, 2)), layers=[nn.GRU]).attach().detach()


def test_many_unprobed_modules_of_one_type_are_counted_not_all_spelled() -> None:
    model = nn.Sequential(*[nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)) for _ in range(8)])
    with pytest.warns(UserWarning, match=r"does not probe 8 module\(s\).*'5\.1' \(LayerNorm\) "
                                         r"and 2 more LayerNorm\. "):
        GradientProbe(model).attach().detach()
