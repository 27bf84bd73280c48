"""`run_scan`: a tiny scan writes its table, summary and plots, and measures what it says."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from gradprobe.errors import InputError
from gradprobe.models import build_model
from gradprobe.probe.scan import ScanConfig, measure, run_scan

TINY = {"batch_size": 8, "image_size": 8, "width": 0.5}


def test_tiny_scan_writes_table_summary_and_plots(tmp_path: Path) -> None:
    config = ScanConfig(
        architectures=["plain", "residual"], depths=[4, 8], inits=["default"], seeds=1, **TINY
    )
    messages: list[str] = []
    result = run_scan(config, tmp_path, progress=messages.append)

    assert len(messages) == 4
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        "scan.csv",
        "scan.parquet",
        "scan_config.json",
        "scan_plain_relu_default.png",
        "scan_residual_relu_default.png",
    ]
    for path in tmp_path.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = pd.read_parquet(tmp_path / "scan.parquet")
    assert {
        "architecture",
        "depth",
        "activation",
        "init",
        "norm",
        "seed",
        "layer",
        "layer_depth",
        "metric",
        "value",
    } <= set(table.columns)
    # every conv plus the classifier, two metrics each, one seed
    assert len(table) == sum(2 * (depth + 1) for depth in (4, 8)) * 2
    assert set(table.metric) == {"output_grad_norm", "weight_grad_norm"}

    summary = pd.read_csv(tmp_path / "scan.csv")
    pd.testing.assert_frame_equal(summary, result.summary, check_dtype=False)
    ratio = summary.set_index(["architecture", "depth"])["ratio"]
    # Physics, with generous bounds (measured: plain 0.05 and 1e-3, residual ~0.3): PyTorch's
    # default init shrinks a plain ReLU stack's gradient toward the input, exponentially in
    # depth; identity skips keep it from collapsing (He et al. 2016).
    assert ratio["plain", 8] < 0.1
    assert ratio["plain", 8] < ratio["plain", 4]
    assert ratio["residual", 8] > 0.05
    assert ratio["residual", 8] > 10 * ratio["plain", 8]
    assert (summary.first_layer == "stem.conv").all()


def test_measure_matches_naive_autograd_averaged_over_batches() -> None:
    config = ScanConfig(architectures=["plain_bn"], depths=[4], batches=2, seeds=1, **TINY)
    frame = measure(config, "plain_bn", "relu", "kaiming", depth=4, seed=3)
    measured = frame.set_index(["layer", "metric"])["value"]

    torch.manual_seed(3)
    model = build_model("plain_stack", depth=4, norm="batch", width=0.5, num_classes=10)
    generator = torch.Generator().manual_seed(3)
    outputs: list[torch.Tensor] = []
    model.stem.conv.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    norms = []
    for _ in range(2):
        images = torch.randn(8, 3, 8, 8, generator=generator)
        labels = torch.randint(0, 10, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(images), labels)
        (grad,) = torch.autograd.grad(loss, outputs.pop())
        norms.append(float(grad.double().norm()))
    assert measured["stem.conv", "output_grad_norm"] == pytest.approx(sum(norms) / 2, rel=1e-5)
    assert frame.architecture.eq("plain_bn").all() and frame.norm.eq("batch").all()


@pytest.mark.parametrize(
    "bad",
    [
        {"architectures": ["vgg"]},
        {"architectures": []},
        {"depths": [1]},
        {"depths": 8},
        {"activations": ["swish"]},
        {"inits": ["he"]},
        {"seeds": 0},
        {"batch_size": 1},
        {"width": 0},
    ],
)
def test_scan_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        ScanConfig(**bad)


def test_scan_config_stores_tuples() -> None:
    config = ScanConfig(depths=[4, 8], architectures=["plain"])
    assert config.depths == (4, 8) and config.architectures == ("plain",)
