"""weight_distance: ||W_t - W_0|| / ||W_0|| per probed layer, once per epoch, against float64."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from gradprobe import record
from gradprobe.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from gradprobe.models import build_model
from gradprobe.train import train
from gradprobe.train.checkpoint import CHECKPOINT
from gradprobe.train.weight_distance import WeightDistance


def _naive(initial: torch.Tensor, now: torch.Tensor) -> float:
    a, b = initial.double().flatten().tolist(), now.double().flatten().tolist()
    moved = sum((y - x) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
    return moved / sum(x * x for x in a) ** 0.5


def test_distances_match_a_naive_computation_and_survive_a_state_round_trip() -> None:
    torch.manual_seed(0)
    model = build_model("plain_stack", depth=3, width=0.25, num_classes=3)
    distances = WeightDistance(model)
    initial = {p.name: model.get_submodule(p.name).weight.detach().clone()
               for p in model.probe_points}
    with torch.no_grad():
        for point in model.probe_points:
            model.get_submodule(point.name).weight.mul_(1.5).add_(0.01)
    distances.record(step=9, epoch=1)
    frame = distances.to_frame()
    assert list(frame.columns) == list(record.GRADIENT_COLUMNS)
    assert set(frame["metric"]) == {"weight_distance"} and set(frame["step"]) == {9}
    for row in frame.itertuples():
        now = model.get_submodule(row.layer).weight
        assert abs(row.value - _naive(initial[row.layer], now)) < 1e-12
    copy = WeightDistance(model)
    copy.load_state_dict(distances.state_dict())
    pd.testing.assert_frame_equal(copy.to_frame(), frame)
    assert WeightDistance(model, enabled=False).to_frame().empty


def test_the_trainer_records_it_at_each_epochs_last_step(tmp_path: Path) -> None:
    config = RunConfig(model=ModelConfig(name="plain_stack", depth=3, width=0.25),
                       data=DataConfig(image_size=16, images_per_class=8),
                       train=TrainConfig(epochs=2, batch_size=8, seed=3))
    run_dir = train(config, tmp_path / "run").run_dir
    gradients = pd.read_parquet(run_dir / record.GRADIENTS_FILE)
    distances = gradients.loc[gradients["metric"] == "weight_distance"]
    last_steps = gradients.loc[gradients["metric"] == "weight_grad_norm"].groupby("epoch")[
        "step"].max()
    assert distances.groupby("epoch")["step"].unique().map(list).to_dict() == {
        epoch: [step] for epoch, step in last_steps.items()}
    # W_0 is the seed's initialisation: rebuild it as the trainer does and compare at the end
    torch.manual_seed(3)
    initial = build_model("plain_stack", depth=3, width=0.25, num_classes=3)
    final = torch.load(run_dir / CHECKPOINT, weights_only=True)["model"]
    last = distances.loc[distances["epoch"] == 2]
    for row in last.itertuples():
        expected = _naive(initial.get_submodule(row.layer).weight, final[f"{row.layer}.weight"])
        assert abs(row.value - expected) < 1e-9 * max(expected, 1.0), row.layer
    # chosen off, it is not recorded
    off = config.model_copy(update={"probe": ProbeConfig(metrics=("weight_grad_norm",))})
    frame = pd.read_parquet(train(off, tmp_path / "off").run_dir / record.GRADIENTS_FILE)
    assert set(frame["metric"]) == {"weight_grad_norm"}
