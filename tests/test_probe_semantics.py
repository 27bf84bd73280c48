"""Step semantics, attention, clipping, accumulation, the global norm and the no-silence rule.

Every value is checked against `probe_reference.float64_reference`, a double-precision
autograd computation on a copy of the model taken just before the optimiser step.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

from gradprobe.metrics import MODEL_LAYER, default_metrics, metric_info
from gradprobe.metrics import list_metrics as catalog_all
from gradprobe.metrics import probe_metrics as catalog_metrics
from gradprobe.probe import DEFAULT_METRICS, GradientProbe, list_metrics
from probe_reference import assert_matches, float64_reference

METRICS = ("weight_grad_norm", "output_grad_norm", "global_grad_norm")
MLP_LAYERS = {"0": ["weight"], "2": ["weight"], "4": ["weight"]}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def batch(seed: int, size: int = 8) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, 6, generator=generator)
    return inputs, torch.randint(0, 3, (size,), generator=generator)


class TinyAttention(nn.Module):
    """Self-attention over 5 tokens, a residual, and a linear head on the mean token."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        attended, _ = self.attn(h, h, h)
        return self.head((h + attended).mean(dim=1))


def test_catalog_is_the_probe_catalog() -> None:
    assert list_metrics()[: len(catalog_metrics())] == catalog_metrics()
    # the trainer's own metric is in the catalog, and the probe leaves it out by its source
    trainer_only = [m for m in catalog_all() if m not in catalog_metrics()]
    assert trainer_only == ["weight_distance"]
    assert metric_info("weight_distance").source == "weights"
    assert default_metrics() == DEFAULT_METRICS
    assert metric_info("update_ratio").needs_optimizer
    assert not metric_info("global_grad_norm").per_layer


def test_record_every_n_steps_is_not_inflated() -> None:
    """record() every 3rd step only: each value is that step's, not a sum over three."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = {}
    with GradientProbe(model, metrics=METRICS) as probe:
        for step in range(7):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch(step)[0]), batch(step)[1]).backward()
            if step % 3 == 0:
                expected[step] = float64_reference(model, MLP_LAYERS, [batch(step)])
                assert probe.record(step)
            optimizer.step()
    frame = probe.to_frame()
    assert sorted(set(frame.step)) == [0, 3, 6]
    for step, values in expected.items():
        assert_matches(frame, step, values)


def test_every_n_records_the_scheduled_steps_and_idles_otherwise() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = {}
    with GradientProbe(model, metrics=METRICS, every=3) as probe:
        for step in range(7):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch(step)[0]), batch(step)[1]).backward()
            collector = probe._collector
            held = (len(collector.held) + len(collector.partials["output_grad"])
                    + len(collector.host_sums))
            assert held == (3 if step % 3 == 0 else 0)  # off-schedule: the hooks did nothing
            if step % 3 == 0:
                expected[step] = float64_reference(model, MLP_LAYERS, [batch(step)])
            assert probe.record() == (step % 3 == 0)  # no arguments: counts the steps
            optimizer.step()
    frame = probe.to_frame()
    assert sorted(set(frame.step)) == [0, 3, 6] and set(frame.epoch) == {0}
    for step, values in expected.items():
        assert_matches(frame, step, values)


def test_record_before_clipping_and_global_norm_equals_clip_grad_norm() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    layers = {name: ["weight", "bias"] for name in MLP_LAYERS}
    with GradientProbe(model, metrics=METRICS, parameters="all") as probe:
        for step in range(2):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(batch(step)[0]), batch(step)[1]).backward()
            expected = float64_reference(model, layers, [batch(step)])
            probe.record()
            total = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
            optimizer.step()
            frame = probe.to_frame()
            assert_matches(frame, step, expected)
            recorded = frame[(frame.step == step) & (frame.metric == "global_grad_norm")]
            assert list(recorded.layer) == [MODEL_LAYER]
            assert recorded.value.item() == pytest.approx(total.item(), rel=2e-6)
            assert total.item() > 10 * 1e-3  # the clipping did shrink the gradients


def test_accumulation_sums_micro_batches_of_one_step() -> None:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with GradientProbe(model, metrics=METRICS) as probe:
        for step in range(2):
            micro = [batch(10 * step), batch(10 * step + 1)]
            optimizer.zero_grad()
            for inputs, targets in micro:
                (nn.functional.cross_entropy(model(inputs), targets) / 2).backward()
            expected = float64_reference(model, MLP_LAYERS, micro)
            probe.record(step, 0)
            optimizer.step()
            assert_matches(probe.to_frame(), step, expected)


def test_multihead_attention_in_proj_weight_and_out_proj_output() -> None:
    torch.manual_seed(0)
    model = TinyAttention()
    inputs, targets = torch.randn(4, 5, 6), torch.randint(0, 3, (4,))
    layers = {"embed": ["weight"], "attn": ["in_proj_weight"], "attn.out_proj": ["weight"],
              "head": ["weight"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every selected layer yields its metrics: no warning
        with GradientProbe(model, metrics=METRICS) as probe:
            nn.functional.cross_entropy(model(inputs), targets).backward()
            expected = float64_reference(model, layers, [(inputs, targets)])
            probe.record()
    assert [layer.name for layer in probe.layers] == list(layers)  # attention is a default
    assert all(layer.depth >= 0 for layer in probe.layers)
    frame = probe.to_frame()
    assert_matches(frame, 0, expected)
    assert set(frame[frame.layer == "attn.out_proj"].metric) == {"weight_grad_norm",
                                                                 "output_grad_norm"}


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
        self.spare = nn.Linear(8, 8)  # never called
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def test_a_layer_that_yields_nothing_is_named_in_one_warning() -> None:
    torch.manual_seed(0)
    model = Unused()
    with pytest.warns(UserWarning,
                      match="'body' .* has no weight of its own.*belong to its submodules"):
        probe = GradientProbe(model, layers=["body", "spare", "head"]).attach()
    with pytest.warns(UserWarning, match="'spare' has not been called") as caught:
        for step in range(3):
            model.zero_grad()
            nn.functional.cross_entropy(model(batch(step)[0]), batch(step)[1]).backward()
            probe.record()
    probe.detach()
    assert sum("'spare'" in str(warning.message) for warning in caught) == 1  # once
