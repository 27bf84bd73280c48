"""`gradprobe.scan`: a tiny scan writes its table, summary and plots, measures what it says, and
shows the theory beside the measurement; `--theory` predicts without running a network."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from gradprobe.cli import main
from gradprobe.models import build_model
from gradprobe.scan import ScanConfig, TheoryConfig, measure, run_scan, run_theory

TINY = {"batch_size": 8, "image_size": 8, "width": 0.5}


class Recorder:
    """A `Progress` that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def epoch_bar(self, description: str, total: int, initial: int = 0) -> object:
        raise AssertionError("the scan has no epochs")


def test_tiny_scan_writes_table_summary_and_plots(tmp_path: Path) -> None:
    config = ScanConfig(
        architectures=["plain", "residual"], depths=[4, 8], inits=["default"], seeds=1, **TINY
    )
    progress = Recorder()
    result = run_scan(config, tmp_path, progress=progress)

    assert len(progress.messages) == 4
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
    assert {"architecture", "network_depth", "activation", "init", "norm", "seed", "layer",
            "depth", "metric", "value"} <= set(table.columns)
    assert "layer_depth" not in table.columns
    # `depth` is the layer index, as in gradients.parquet: 0..convs (the classifier last)
    for network_depth, network in table.groupby("network_depth"):
        assert sorted(set(network.depth)) == list(range(network_depth + 1))
    # every conv plus the classifier, two metrics each, one seed
    assert len(table) == sum(2 * (depth + 1) for depth in (4, 8)) * 2
    assert set(table.metric) == {"output_grad_norm", "weight_grad_norm"}

    summary = pd.read_csv(tmp_path / "scan.csv")
    pd.testing.assert_frame_equal(summary, result.summary, check_dtype=False)
    ratio = summary.set_index(["architecture", "network_depth"])["ratio"]
    # Physics, with generous bounds (measured: plain 0.05 and 1e-3, residual ~0.3): PyTorch's
    # default init shrinks a plain ReLU stack's gradient toward the input, exponentially in
    # depth; identity skips keep it from collapsing (He et al. 2016).
    assert ratio["plain", 8] < 0.1
    assert ratio["plain", 8] < ratio["plain", 4]
    assert ratio["residual", 8] > 0.05
    assert ratio["residual", 8] > 10 * ratio["plain", 8]
    assert (summary.first_layer == "stem.conv").all()

    # Theory beside measurement: sqrt(1/3 * 1/2) per layer for the plain ReLU stack, an
    # explicit no-prediction (with its reason) for the residual one.
    by_arch = summary.set_index(["architecture", "network_depth"])
    assert by_arch.loc[("plain", 8), "predicted_factor"] == pytest.approx(0.4082, abs=1e-4)
    assert by_arch.loc[("plain", 8), "predicted_ratio"] == pytest.approx(0.4082**7, rel=1e-3)
    assert by_arch.loc[("plain", 8), "measured_factor"] == pytest.approx(
        by_arch.loc[("plain", 8), "ratio"] ** (1 / 7))
    assert pd.isna(by_arch.loc[("residual", 8), "predicted_factor"])
    assert "residual" in by_arch.loc[("residual", 8), "prediction_note"]
    assert "He et al. 2015" in by_arch.loc[("plain", 8), "prediction_note"]


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
    assert frame.network_depth.eq(4).all()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"architectures": ["vgg"]}, r"architectures\.0\n.*'plain', 'plain_bn'"),
        ({"architectures": []}, r"architectures\n.*at least 1 item"),
        ({"depths": [1]}, r"scan depth 1 is below 2"),
        ({"depths": 8}, r"depths\n.*valid tuple"),
        ({"activations": ["swish"]}, r"activations\.0\n.*'leaky_relu'"),
        ({"inits": ["he"]}, r"inits\.0\n.*'orthogonal'"),
        ({"seeds": 0}, r"seeds\n.*greater than or equal to 1"),
        ({"batch_size": 1}, r"batch_size\n.*greater than or equal to 2"),
        ({"width": 0}, r"width\n.*greater than 0"),
    ],
)
def test_scan_config_rejects_bad_values(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScanConfig(**bad)


def test_scan_config_stores_tuples() -> None:
    config = ScanConfig(depths=[4, 8], architectures=["plain"])
    assert config.depths == (4, 8) and config.architectures == ("plain",)


def test_theory_profile_of_zoo_models_without_running_them(tmp_path: Path) -> None:
    config = TheoryConfig(models=["plain_stack", "vgg16", "resnet"], depths=[8],
                          inits=["default"], width=0.25)
    result = run_theory(config, tmp_path)
    table = result.table
    stack = table[table.model == "plain_stack"]
    assert list(stack.network_depth.unique()) == [8]
    # sqrt(1/3 * 1/2) between convs; the global pool before the classifier has no prediction
    assert stack.gain.dropna().to_numpy() == pytest.approx([0.4082] * 7, abs=1e-4)
    vgg = table[table.model == "vgg16"]
    assert vgg.network_depth.iloc[0] is None or pd.isna(vgg.network_depth.iloc[0])
    # 13 convs + 3 linear; no gain across the 4 maxpools, the global pool, and after the last
    assert len(vgg) == 16 and vgg.gain.isna().sum() == 6
    resnet = table[table.model == "resnet"]
    assert len(resnet) == 1 and "residual" in resnet.note.iloc[0]
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [
        "theory_plain_stack_relu_default.png", "theory_resnet_relu_default.png",
        "theory_vgg16_relu_default.png"]


def test_cli_scan_theory_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["scan", "--theory", "--models", "mlp", "--inits", "default", "--quiet",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "theory.csv").exists()
    assert main(["scan", "--theory", "--models", "vgg17", "--out", str(tmp_path)]) == 2
    assert "unknown model 'vgg17'" in capsys.readouterr().err
    assert main(["scan", "--depths", "1", "--out", str(tmp_path)]) == 2
    assert "scan depth 1 is below 2" in capsys.readouterr().err
