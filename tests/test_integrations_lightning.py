"""GradProbeCallback in a real `lightning.Trainer` on the CPU, against the probe in a plain loop.

The plain loop repeats what Lightning does with the same model, data and seed: loss divided by
`accumulate_grad_batches`, record after the last micro-batch's backward, then clip, then step.
Both runs use the same kernels on one thread, so the numbers agree to float32 rounding. The DDP
test runs Lightning's own `strategy="ddp"` launcher in a subprocess (2 CPU ranks, gloo, ~35 s).
"""

from __future__ import annotations

import logging
import subprocess
import sys

import lightning
import pandas as pd
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from checkout import TESTS, checkout_env
from gradprobe.errors import InputError
from gradprobe.integrations.lightning import GradProbeCallback
from gradprobe.probe import GradientProbe
from probe_reference import assert_same_frames as assert_same

STEPS_PER_EPOCH, BATCH, EPOCHS = 4, 4, 2
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available" banners


class TinyModule(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                                 nn.Linear(8, 3))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, labels = batch
        return nn.functional.cross_entropy(self.net(inputs), labels)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        return self.loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(STEPS_PER_EPOCH * BATCH, 6, generator=generator)
    labels = torch.randint(0, 3, (STEPS_PER_EPOCH * BATCH,), generator=generator)
    return DataLoader(TensorDataset(inputs, labels), batch_size=BATCH, shuffle=False)


def fit(callback: GradProbeCallback, **trainer_options: object) -> TinyModule:
    module = TinyModule()
    options = {"logger": False, **trainer_options}
    trainer = lightning.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=[callback], **options,
    )
    trainer.fit(module, loader())
    return module


def plain_loop(accumulate: int = 1, clip: float | None = None) -> pd.DataFrame:
    """The probe's own numbers: the same training written out by hand."""
    module = TinyModule()
    optimizer = module.configure_optimizers()
    step = 0
    with GradientProbe(module) as probe:
        for epoch in range(1, EPOCHS + 1):
            for index, batch in enumerate(loader()):
                (module.loss(batch) / accumulate).backward()
                if (index + 1) % accumulate:
                    continue
                probe.record(step, epoch)
                if clip is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
                step += 1
    return probe.to_frame()


def test_callback_matches_plain_loop_and_logs_and_saves(tmp_path):
    callback = GradProbeCallback(save_path=tmp_path / "out" / "gradients.parquet",
                                 log_metrics=["weight_grad_norm"], log_layers=["net.0", "net.4"])
    logger = lightning.pytorch.loggers.CSVLogger(tmp_path, name="logs")
    module = fit(callback, logger=logger)
    expected = plain_loop()
    assert sorted(expected["step"].unique()) == list(range(STEPS_PER_EPOCH * EPOCHS))
    assert_same(callback.frame, expected)
    assert_same(pd.read_parquet(tmp_path / "out" / "gradients.parquet"), expected)
    # Hooks released when fit ends: another forward/backward records nothing.
    module.loss(next(iter(loader()))).backward()
    assert callback.probe is not None and callback.probe._handles == []

    logged = pd.read_csv(logger.experiment.metrics_file_path)
    columns = sorted(column for column in logged.columns if column.startswith("gradprobe/"))
    assert columns == ["gradprobe/weight_grad_norm/net.0", "gradprobe/weight_grad_norm/net.4"]
    logged = logged.dropna(subset=columns[0]).set_index("step")
    wanted = expected[(expected["metric"] == "weight_grad_norm") & (expected["layer"] == "net.0")]
    torch.testing.assert_close(
        torch.tensor(logged.loc[wanted["step"], columns[0]].to_numpy()),
        torch.tensor(wanted["value"].to_numpy()), rtol=1e-6, atol=0,
    )


def test_gradient_accumulation_records_once_per_optimizer_step():
    callback = GradProbeCallback()
    fit(callback, accumulate_grad_batches=2)
    expected = plain_loop(accumulate=2)
    assert sorted(callback.frame["step"].unique()) == list(range(STEPS_PER_EPOCH * EPOCHS // 2))
    assert sorted(callback.frame["epoch"].unique()) == [1, 2]
    assert_same(callback.frame, expected)


def test_gradient_clipping_leaves_recorded_norms_unclipped():
    clip = 1e-3
    callback = GradProbeCallback()
    fit(callback, gradient_clip_val=clip)
    expected = plain_loop(clip=clip)
    assert_same(callback.frame, expected)
    # The recorded norms are the unclipped ones: every step's layers exceed the clip norm.
    norms = callback.frame[callback.frame["metric"] == "weight_grad_norm"]
    assert (norms.groupby("step")["value"].max() > 10 * clip).all()


def test_fp16_amp_values_are_unscaled():
    """16-bit AMP with a GradScaler (on the CPU through Lightning's plugin): Lightning unscales
    the weight gradients before the hook, the output gradients still carry the loss scale; the
    callback hands the scaler to the probe, so both come out unscaled."""
    def scaler() -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cpu", init_scale=1024.0)

    callback = GradProbeCallback()
    fit(callback, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler())])
    module, amp_scaler = TinyModule(), scaler()
    optimizer = module.configure_optimizers()
    step = 0
    with GradientProbe(module) as probe:
        for epoch in range(1, EPOCHS + 1):
            for batch in loader():
                with torch.autocast("cpu", dtype=torch.float16):
                    loss = module.loss(batch)
                amp_scaler.scale(loss).backward()
                probe.record(step, epoch, scaler=amp_scaler)
                amp_scaler.step(optimizer)
                amp_scaler.update()
                optimizer.zero_grad()
                step += 1
    assert_same(callback.frame, probe.to_frame())
    # Unscaled: close to full precision at the first step, not 1024x it.
    first = callback.frame[callback.frame["step"] == 0]
    full = plain_loop().query("step == 0")
    torch.testing.assert_close(torch.tensor(first["value"].to_numpy()),
                               torch.tensor(full["value"].to_numpy()), rtol=1e-2, atol=0)


def test_unknown_log_selection_is_an_input_error():
    with pytest.raises(InputError, match=r"log_layers names layer .*net\.9.*choose from net\.0"):
        fit(GradProbeCallback(log_layers=["net.9"]))
    with pytest.raises(InputError, match="log_metrics must be a list of metric names"):
        GradProbeCallback(log_metrics="weight_grad_norm")


DDP_SCRIPT = """
import sys
import lightning
from torch.utils.data import DataLoader, DistributedSampler

sys.path.insert(0, sys.argv[2])
from gradprobe.integrations.lightning import GradProbeCallback
from test_integrations_lightning import BATCH, TinyModule, loader


class Sharded(TinyModule):
    def train_dataloader(self):
        # Each rank takes every other example in order: together, the plain loop's batches.
        dataset = loader().dataset
        sampler = DistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=BATCH // 2, sampler=sampler)


callback = GradProbeCallback(save_path=sys.argv[1] + "/saved.parquet")
trainer = lightning.Trainer(
    accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, use_distributed_sampler=False,
    enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    logger=False, callbacks=[callback],
)
trainer.fit(Sharded())
callback.frame.to_parquet(f"{sys.argv[1]}/rank{trainer.global_rank}.parquet")
"""


@pytest.mark.slow
def test_two_process_ddp_matches_a_single_process_on_the_global_batch(tmp_path):
    """2 CPU processes (gloo), each half of every batch: the tables equal one process's."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    tests, env = TESTS, checkout_env(TESTS)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), str(tests)], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = plain_loop()
    for name in ("rank0", "rank1", "saved"):
        # DDP sums the halves' gradients in another order than one process: rtol 1e-5.
        assert_same(pd.read_parquet(tmp_path / f"{name}.parquet"), expected)
