"""GradProbeTrainerCallback in a real `transformers.Trainer` on the CPU, against a plain loop.

The model is a 2-layer BERT built from a config (random weights, nothing downloaded). The plain
loop repeats what the Trainer does with the same model, data and seed: sequential batches, the
loss summed over each micro-batch and divided by the examples of the whole accumulated step
(`compute_loss_func`, so the test does not depend on how a model scales its own loss), record
after the last micro-batch's backward, clip to `max_grad_norm`, SGD step. Same kernels on one
thread: equal to float32 rounding (rtol 1e-5).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded

import pandas as pd
import pytest
import torch
import transformers
from torch import nn

from checkout import TESTS, checkout_env
from gradprobe.integrations.huggingface import GradProbeTrainerCallback
from gradprobe.probe import GradientProbe
from probe_reference import assert_same_frames as assert_same

SAMPLES, BATCH, ACCUMULATE, EPOCHS, CLIP = 16, 4, 2, 2, 0.01
transformers.logging.set_verbosity_error()


def tiny_bert() -> transformers.BertForSequenceClassification:
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # no RNG after init
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def dataset() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (SAMPLES, 8), generator=generator)
    labels = torch.randint(0, 3, (SAMPLES,), generator=generator)
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(SAMPLES)]


def train_with_callback(
    tmp_path: Path, callback: GradProbeTrainerCallback, per_device_batch: int = BATCH
) -> None:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=ACCUMULATE, num_train_epochs=EPOCHS, learning_rate=0.1,
        optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=CLIP,
        train_sampling_strategy="sequential", use_cpu=True, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )
    transformers.Trainer(
        model=tiny_bert(), args=args, train_dataset=dataset(), callbacks=[callback],
        compute_loss_func=summed_loss,
    ).train()


def summed_loss(outputs: object, labels: torch.Tensor, num_items_in_batch: int) -> torch.Tensor:
    """Cross-entropy summed over the micro-batch / examples in the whole optimiser step."""
    return nn.functional.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch


def plain_loop() -> pd.DataFrame:
    model = tiny_bert()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    samples, step = dataset(), 0
    with GradientProbe(model) as probe:
        for epoch in range(1, EPOCHS + 1):
            for start in range(0, SAMPLES, BATCH):
                batch = {key: torch.stack([s[key] for s in samples[start:start + BATCH]])
                         for key in samples[0]}
                logits = model(input_ids=batch["input_ids"]).logits
                summed_loss(SimpleNamespace(logits=logits), batch["labels"], BATCH * ACCUMULATE
                            ).backward()
                if (start // BATCH + 1) % ACCUMULATE:
                    continue
                probe.record(step, epoch)
                nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                optimizer.step()
                optimizer.zero_grad()
                step += 1
    return probe.to_frame()


def test_callback_matches_plain_loop_before_clipping(tmp_path):
    callback = GradProbeTrainerCallback(save_path=tmp_path / "gradients.parquet")
    train_with_callback(tmp_path, callback)
    expected = plain_loop()
    frame = callback.frame
    assert frame is not None
    # One record per optimiser step: 16 samples / (4 x 2 accumulated) = 2 per epoch.
    assert sorted(frame["step"].unique()) == [0, 1, 2, 3]
    assert sorted(frame["epoch"].unique()) == [1, 2]
    assert_same(frame, expected)
    # Recorded before clipping: a single layer's weight-gradient norm exceeds the clip norm.
    norms = frame[frame["metric"] == "weight_grad_norm"]
    assert (norms.groupby("step")["value"].max() > 2 * CLIP).all()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "gradients.parquet"), frame)
    assert callback.probe is not None and callback.probe._handles == []


def test_callback_outside_training_is_an_error():
    callback = GradProbeTrainerCallback()
    with pytest.raises(RuntimeError, match=r"outside Trainer\.train"):
        callback.on_train_end(None, None, None)


DDP_SCRIPT = """
import os
import sys

sys.path.insert(0, sys.argv[2])
import test_integrations_huggingface as t

callback = t.GradProbeTrainerCallback(save_path=sys.argv[1] + "/saved.parquet")
# Half of each micro-batch per rank: accelerate deals the sequential batches of 2 out in turn,
# so ranks 0 and 1 together hold the plain loop's batch of 4.
t.train_with_callback(t.Path(sys.argv[1]), callback, per_device_batch=t.BATCH // 2)
callback.frame.to_parquet(f"{sys.argv[1]}/rank{os.environ['RANK']}.parquet")
"""


@pytest.mark.slow
def test_two_process_ddp_reads_the_averaged_gradients(tmp_path):
    """2 CPU ranks (torchrun, gloo): the callback records after DDP's all-reduce, not before."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    tests, env = TESTS, checkout_env(TESTS)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), str(tmp_path), str(tests)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = plain_loop()
    for name in ("rank0", "rank1", "saved"):
        assert_same(pd.read_parquet(tmp_path / f"{name}.parquet"), expected)


def test_a_step_without_a_seen_backward_fails_loudly():
    # The order the callback relies on (backward ends, then on_pre_optimizer_step) is checked
    # at every step: a Trainer that breaks it gets an error, not an empty table.
    callback = GradProbeTrainerCallback()
    model, state = nn.Sequential(nn.Linear(2, 2)), SimpleNamespace(global_step=0)
    callback.on_train_begin(None, state, None, model=model)
    with pytest.raises(RuntimeError, match="did not see the end of backward of optimiser step 0"):
        callback.on_pre_optimizer_step(None, state, None)
    assert callback.probe is not None and callback.probe._handles == []
    assert not model._forward_hooks
