"""`GradProbeTrainerCallback`: a `GradientProbe` inside a Hugging Face `Trainer` (`gradprobe[hf]`).

    from gradprobe.integrations.huggingface import GradProbeTrainerCallback
    callback = GradProbeTrainerCallback(save_path="gradients.parquet")
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    callback.frame  # tidy: step, epoch, layer, depth, kind, metric, value

Where it reads, and why not at a callback event: the Trainer clips gradients
(`args.max_grad_norm`, 1.0 by default) *before* `on_pre_optimizer_step`, whose docstring says
"before the optimizer step but after gradient clipping" (transformers 5.x `Trainer`'s inner
loop: `_clip_grad_norm`, then `on_pre_optimizer_step`, then `optimizer.step()`), and no event
fires between the last backward and the clipping. So the callback records at the end of the
backward pass of each step's last accumulation micro-batch: a hook on the model's outputs queues
an autograd end-of-backward callback (the mechanism DDP uses to finish its all-reduce, and queued
behind DDP's, so under DDP it reads the averaged gradients), and
accelerate's `GradientState.sync_gradients`, which the Trainer sets before every micro-batch,
says whether this micro-batch ends an optimiser step. `on_pre_optimizer_step` then checks that
the step was seen, so a Trainer that changes this order fails loudly instead of recording
nothing. Steps are `state.global_step` (0-based optimiser steps), epochs count from 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from gradprobe.integrations._common import require, save_frame
from gradprobe.probe import DEFAULT_METRICS, GradientProbe
from gradprobe.probe.layers import LayerSelector

transformers = require("transformers", "hf")
accelerate_state = require("accelerate.state", "hf")


class GradProbeTrainerCallback(transformers.TrainerCallback):
    """Probe the Trainer's model's layers during `train()` and keep the tidy frame.

    `layers`, `metrics`, `every`: as `GradientProbe`. `save_path`: where the main process
    writes the tidy frame as Parquet when training ends (None = don't).
    """

    def __init__(
        self,
        layers: LayerSelector = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        every: int | Callable[[int], bool] = 1,
        *,
        save_path: str | Path | None = None,
    ) -> None:
        self.layers, self.metrics, self.every = layers, tuple(metrics), every
        self.save_path = None if save_path is None else Path(save_path)
        self.probe: GradientProbe | None = None
        self.frame: pd.DataFrame | None = None  # the tidy frame, set when training ends
        self._state: Any = None  # the Trainer's TrainerState (global_step advances in place)
        self._scaler: Any = None  # accelerate's GradScaler under fp16, else None
        self._epoch = 0
        self._handle: RemovableHandle | None = None
        self._queued = False  # an end-of-backward callback is pending
        self._seen_step = -1  # the last optimiser step whose gradients were offered to record()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model: nn.Module = kwargs["model"]
        self.probe = GradientProbe(model, self.layers, self.metrics, self.every).attach()
        self._handle = model.register_forward_hook(self._on_model_output)
        self._state, self._epoch, self._seen_step = state, 0, -1
        # fp16 AMP: the .grad tensors are still scaled when backward ends; the probe divides.
        self._scaler = getattr(kwargs.get("optimizer"), "scaler", None)
        self.frame = None

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._seen_step != state.global_step:
            self._release()
            raise RuntimeError(
                f"gradprobe did not see the end of backward of optimiser step {state.global_step}:"
                " the model's outputs took no part in the loss's backward, or this transformers "
                "version orders its training step differently; record with a GradientProbe in "
                "your own loop instead"
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        probe = self._release()
        self.frame = probe.to_frame()
        if self.save_path is not None and state.is_world_process_zero:
            save_frame(self.frame, self.save_path)

    # -------------------------------------------------------------------------------- hooks
    def _on_model_output(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        for tensor in _tensors(output):
            if tensor.requires_grad:
                tensor.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad: Tensor) -> None:
        if not self._queued:
            self._queued = True
            # Runs once this backward pass has finished accumulating every .grad.
            _queue_end_of_backward(self._queue_behind_ddp)

    def _queue_behind_ddp(self) -> None:
        # End-of-backward callbacks run in the order queued, and one may queue another. DDP
        # queues its own (wait for the all-reduce, write the averaged .grad) during backward,
        # after ours: queueing again puts the recording behind it.
        _queue_end_of_backward(self._on_backward_end)

    def _on_backward_end(self) -> None:
        self._queued = False
        if self.probe is None or not accelerate_state.GradientState().sync_gradients:
            return  # an accumulation micro-batch: the partial sums keep adding up
        step = int(self._state.global_step)
        self._seen_step = step
        self.probe.record(step, self._epoch, scaler=self._scaler)

    def _release(self) -> GradientProbe:
        if self.probe is None:
            raise RuntimeError("GradProbeTrainerCallback is used outside Trainer.train()")
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.probe.detach()
        return self.probe


def _queue_end_of_backward(callback: Callable[[], None]) -> None:
    """Run `callback` when the backward pass in progress ends (only valid during backward)."""
    torch.autograd.Variable._execution_engine.queue_callback(callback)


def _tensors(output: Any) -> list[Tensor]:
    """The tensors in a model output: a tensor, a tuple/list, or a dict such as ModelOutput."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [item for item in output if isinstance(item, Tensor)]
    return []
