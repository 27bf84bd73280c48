"""GradientProbe under torch.compile, in every order users write it, against float64 autograd.

"probe then compile" attaches the probe to the module and compiles it afterwards;
"probe on compiled" builds the probe on the `torch.compile` wrapper; "compile then probe"
compiles and runs the model (and another instance of its classes) before attaching. All must
give the float64 reference's numbers with no graph break caused by the probe (also with
fullgraph=True). `aot_eager` checks the traced graphs; `inductor` also generates C++ and
needs a C compiler.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import torch
import torch._dynamo.utils as dynamo_utils
from torch import Tensor, nn

from gradprobe.probe import GradientProbe
from probe_reference import assert_matches, float64_reference

METRICS = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm", "global_grad_norm",
           "activation_std")
LAYERS = {"0": ["weight"], "2": ["weight"], "4": ["weight"]}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def batch(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    guards = torch._dynamo.config.skip_nnmodule_hook_guards  # the probe turns it off
    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    yield
    torch._dynamo.reset()
    torch._dynamo.config.skip_nnmodule_hook_guards = guards


def train(order: str, backend: str, fullgraph: bool = False, steps: int = 3) -> None:
    model = mlp()
    if order == "probe then compile":
        probe = GradientProbe(model, metrics=METRICS)
        compiled = torch.compile(model, backend=backend, fullgraph=fullgraph)
    elif order == "probe on compiled":
        compiled = torch.compile(model, backend=backend, fullgraph=fullgraph)
        probe = GradientProbe(compiled, metrics=METRICS)
    else:  # compiled code exists before attaching: for another instance, and for this one
        other = torch.compile(mlp(), backend=backend, fullgraph=fullgraph)
        nn.functional.cross_entropy(other(batch(99)[0]), batch(99)[1]).backward()
        compiled = torch.compile(model, backend=backend, fullgraph=fullgraph)
        nn.functional.cross_entropy(compiled(batch(98)[0]), batch(98)[1]).backward()
        model.zero_grad()
        probe = GradientProbe(model, metrics=METRICS)
        with pytest.warns(UserWarning, match="reset torch.compile's caches"):
            probe.attach()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = {}
    with probe:
        for step in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(compiled(batch(step)[0]), batch(step)[1]).backward()
            expected[step] = float64_reference(model, LAYERS, [batch(step)])
            probe.record()
            optimizer.step()
    frame = probe.to_frame()
    assert [layer.name for layer in probe.layers] == list(LAYERS)
    for step, values in expected.items():
        assert_matches(frame, step, values)
    assert set(frame.metric) == set(METRICS)
    assert len(frame) == steps * (3 * 4 + 1) - steps  # activation_std: not after the last layer
    assert not dynamo_utils.counters["graph_break"], dict(dynamo_utils.counters["graph_break"])


@pytest.mark.parametrize(
    "order", ["probe then compile", "probe on compiled", "compile then probe"]
)
def test_compiled_model_matches_float64_reference(order: str) -> None:
    train(order, "aot_eager")


def test_fullgraph_compile_has_no_break_from_the_probe() -> None:
    train("probe then compile", "aot_eager", fullgraph=True, steps=2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="inductor needs a C compiler")
def test_inductor_matches_float64_reference() -> None:
    train("probe on compiled", "inductor", steps=2)


def test_hooks_bypassed_by_compiled_code_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net if dynamo's caches could not be reset: an error, not missing values."""
    monkeypatch.setattr("gradprobe.probe.wiring.forget_compiled_code", lambda warn: None)
    monkeypatch.setattr(torch._dynamo.config, "skip_nnmodule_hook_guards", True)  # the default
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    nn.functional.cross_entropy(compiled(batch(0)[0]), batch(0)[1]).backward()
    with GradientProbe(model) as probe:
        nn.functional.cross_entropy(compiled(batch(1)[0]), batch(1)[1]).backward()
        with pytest.raises(RuntimeError, match=r"Attach the probe before torch\.compile"):
            probe.record()


def test_every_n_under_compile_records_the_scheduled_steps_exactly() -> None:
    """Idle hooks on skipped steps are a second compiled variant, not stale or missing sums."""
    model = mlp()
    probe = GradientProbe(model, metrics=("output_grad_norm", "weight_grad_norm"), every=2)
    compiled = torch.compile(model, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = {}
    with probe:
        for step in range(5):
            optimizer.zero_grad()
            nn.functional.cross_entropy(compiled(batch(step)[0]), batch(step)[1]).backward()
            if step % 2 == 0:
                expected[step] = float64_reference(model, LAYERS, [batch(step)])
            probe.record()
            optimizer.step()
    frame = probe.to_frame()
    assert sorted(set(frame.step)) == [0, 2, 4]
    for step, values in expected.items():
        assert_matches(frame, step, values)
    assert not dynamo_utils.counters["graph_break"]


def test_manual_update_loop_under_compile_is_warned_not_silent() -> None:
    """Compiled code runs no host-side check at forward start, so a manual update between
    passes is not seen: sparse record() pools the passes, and says so."""
    model = mlp()
    compiled = torch.compile(model, backend="aot_eager")
    probe = GradientProbe(model, metrics=("output_grad_norm",))
    with pytest.warns(UserWarning, match="under torch.compile the probe cannot see"), probe:
        for step in range(8):
            nn.functional.cross_entropy(compiled(batch(step)[0]), batch(step)[1]).backward()
            if step % 4 == 0:
                probe.record()
            with torch.no_grad():
                for param in model.parameters():
                    param -= 0.1 * param.grad
            model.zero_grad()
