"""Runs that cannot work are refused before anything is built for real or written."""

from __future__ import annotations

import pytest
import torch

from gradprobe.errors import InputError
from gradprobe.models import build_model
from gradprobe.train import preflight
from gradprobe.train.preflight import check_run_fits


def test_footprint_matches_a_real_model() -> None:
    footprint = check_run_fits("vgg11", {"width": 0.125}, num_classes=3, in_channels=3,
                               image_size=32, batch_size=4)
    model = build_model("vgg11", num_classes=3, width=0.125)
    assert footprint.parameters == sum(p.numel() for p in model.parameters())
    outputs: list[int] = []
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            module.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel()))
    model(torch.zeros(1, 3, 32, 32))
    assert footprint.activation_elements_per_image == sum(outputs)
    assert footprint.minimum_bytes == 4 * (2 * footprint.parameters + 4 * sum(outputs))


def test_image_too_small_for_the_model() -> None:
    with pytest.raises(InputError, match=r"vgg_deep cannot take 8x8 images.*larger --image-size"):
        check_run_fits("vgg_deep", {}, num_classes=3, in_channels=3, image_size=8, batch_size=2)


@pytest.mark.timeout(20)
def test_absurd_depth_is_refused_before_building() -> None:
    with pytest.raises(InputError, match=r"depth 100,000,000 .* bound of 2,048"):
        check_run_fits("vgg_deep", {"depth": 100_000_000}, num_classes=3, in_channels=3,
                       image_size=32, batch_size=2)


def test_model_larger_than_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "_available_bytes", lambda device: 1 << 30)  # 1 GiB free
    with pytest.raises(InputError, match=r"needs at least .* GiB .* 1.0 GiB free.*lower --width"):
        check_run_fits("vgg_deep", {"width": 8.0}, num_classes=3, in_channels=3,
                       image_size=32, batch_size=2)
    check_run_fits("vgg_deep", {"width": 0.125}, num_classes=3, in_channels=3,
                   image_size=32, batch_size=2)


def test_synthetic_data_larger_than_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradprobe.config import DataConfig, ModelConfig, RunConfig
    from gradprobe.train.preflight import check_run_config

    monkeypatch.setattr(preflight, "_available_bytes", lambda device: 1 << 30)  # 1 GiB free
    huge = DataConfig(images_per_class=1_000_000, num_classes=10, image_size=64)
    with pytest.raises(InputError, match=r"synthetic dataset of 10,000,000 images at 64x64 "
                                         r"needs at least 114\.4 GiB .* lower --images-per-class"):
        check_run_config(RunConfig(model=ModelConfig(name="mlp"), data=huge), here=True)
    check_run_config(RunConfig(model=ModelConfig(name="mlp"),
                               data=DataConfig(images_per_class=100, image_size=16)), here=True)
