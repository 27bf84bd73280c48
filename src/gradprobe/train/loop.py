"""The training loop of one run: model + data + optimiser + probe, checkpointed to resume.

The run directory is the only output (`gradprobe.record` holds its contract). The newest
checkpoint is the source of truth for resuming: metrics rows and the probe's history live inside
it, so a run killed at any instant resumes to exactly the state an uninterrupted run would have had.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gradprobe.config import DataConfig, RunConfig
from gradprobe.data import BatchLoader, Splits
from gradprobe.errors import InputError
from gradprobe.models import build_model, count_parameters
from gradprobe.progress import Progress, RunPace
from gradprobe.record import (
    STEP_COLUMNS,
    TENSORBOARD_DIR,
    EpochRow,
    RunState,
    RunSummary,
    StepRow,
)
from gradprobe.train import faults
from gradprobe.train.checkpoint import (
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gradprobe.train.device import resolve_device
from gradprobe.train.optim import build_optimizer, build_scheduler, warmup_factor, warmup_lr
from gradprobe.train.probes import TrainerProbes
from gradprobe.train.rundir import RunDirectory, versions
from gradprobe.train.state import RunPosition, RunResult
from gradprobe.train.tensorboard import TensorBoardLogger
from gradprobe.train.weight_distance import WEIGHT_DISTANCE, WeightDistance, with_weight_distance


class _Diverged(Exception):
    """A non-finite loss: in a training step, or in the evaluation after the last step (weights
    an update made non-finite, e.g. `--lr inf`), where `row_kept` says the epoch row exists."""

    def __init__(self, step: int, loss: float, where: str = "loss",
                 row_kept: bool = False) -> None:
        super().__init__(f"{where} became {loss} at step {step}")
        self.step = step
        self.loss = loss
        self.where = where
        self.row_kept = row_kept


class Trainer:
    """The state of one run while it trains; `run()` is the whole lifecycle."""

    def __init__(self, config: RunConfig, run_dir: RunDirectory, name: str, progress: Progress,
                 splits: Splits | None, load_data: Callable[[DataConfig], Splits]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.name = name
        self.progress = progress
        self.splits = splits
        self.load_data = load_data
        self.position = RunPosition()

    # -- set-up ----------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        _seed_everything(cfg.train.seed)
        self.device = resolve_device(cfg.train.device)
        if self.splits is None:
            self.splits = self.load_data(cfg.data)
        splits = self.splits
        self.model: nn.Module = build_model(
            cfg.model.name, num_classes=splits.num_classes, in_channels=splits.in_channels,
            **cfg.model.builder_options(),
        ).to(self.device)
        # W_0 of every probed layer; on resume the same seed rebuilt the same initial weights
        self.weight_distance = WeightDistance(
            self.model, enabled=WEIGHT_DISTANCE in cfg.probe.metrics)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self._trainable = [param for param in self.model.parameters() if param.requires_grad]
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.amp else None
        self.criterion = nn.CrossEntropyLoss()
        loader_options = {"mean": splits.mean, "std": splits.std, "device": self.device,
                          "batch_size": cfg.train.batch_size, "seed": cfg.train.seed}
        self.train_loader = BatchLoader(splits.train, shuffle=True, augment=cfg.data.augment,
                                        max_batches=cfg.train.max_steps_per_epoch,
                                        **loader_options)
        self.val_loader = BatchLoader(splits.val, shuffle=False, **loader_options)
        self.test_loader = BatchLoader(splits.test, shuffle=False, **loader_options)
        self.probe = TrainerProbes(self.model, cfg.probe)
        self.probe.watch_optimizer(self.optimizer)
        self.tensorboard = (TensorBoardLogger(self.run_dir.file(TENSORBOARD_DIR))
                            if cfg.train.tensorboard else None)
        self._write_config()

    def _write_config(self) -> None:
        splits = self.splits
        assert splits is not None  # set in _setup; not user input
        new_info = dict(splits.info)
        old = self.run_dir.read_config()
        if old is not None:
            old_info = old.get("data_info", {})
            for key in ("class_to_idx", "fingerprint"):
                if key in old_info and old_info[key] != new_info.get(key):
                    raise InputError(
                        f"{self.run_dir.path} was trained on different data ({key} changed: "
                        f"{old_info[key]!r} -> {new_info.get(key)!r}). The dataset changed since "
                        "the run started: restore it, use another --out, or --force to restart."
                    )
        points = getattr(self.model, "probe_points", [])
        model_info = dict(getattr(self.model, "gradprobe_info", {}))
        model_info.update({
            "parameters": count_parameters(self.model),
            "conv_layers": sum(1 for p in points if p.kind == "conv"),
            "linear_layers": sum(1 for p in points if p.kind == "linear"),
            "probe_points": [[p.name, p.kind, p.depth] for p in points],
        })
        self.run_dir.write_config({
            "name": self.name, "run": self.config.model_dump(mode="json"),
            "model_info": model_info, "data_info": new_info, "versions": versions(),
            "device": str(self.device),
        })

    # -- checkpoints -----------------------------------------------------------------------

    def _checkpoint(self) -> None:
        pos = self.position
        payload = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "rng": rng_state(), "probe": self.probe.state_dict(),
            "position": {"epoch": pos.epoch, "batch": pos.batch, "step": pos.step,
                         "loss_sum": pos.loss_sum, "correct": pos.correct, "seen": pos.seen,
                         "seconds": pos.seconds},
            "metrics_rows": [row.as_dict() for row in pos.metrics_rows],
            # columns, not one dict per step: the checkpoint stays small over long runs
            "step_rows": {column: [getattr(row, column) for row in pos.step_rows]
                          for column in STEP_COLUMNS},
            "weight_distance": self.weight_distance.state_dict(),
        }
        save_checkpoint(self.run_dir.path, payload)

    def _resume(self) -> bool:
        state = load_latest_checkpoint(self.run_dir.path, map_location=self.device)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.probe.load_state_dict(state["probe"])
        set_rng_state(state["rng"])
        self.weight_distance.load_state_dict(state.get("weight_distance", []))
        rows = [EpochRow(**row) for row in state["metrics_rows"]]
        step_columns = state.get("step_rows") or {column: [] for column in STEP_COLUMNS}
        step_rows = [StepRow(*values) for values in
                     zip(*(step_columns[column] for column in STEP_COLUMNS), strict=True)]
        self.position = RunPosition(**state["position"], metrics_rows=rows, step_rows=step_rows)
        if self.position.epoch > self.config.train.epochs:  # see RunDirectory.finished_run
            raise InputError(f"{self.run_dir.path}'s checkpoint has trained "
                             f"{self.position.epoch} epochs, more than --epochs "
                             f"{self.config.train.epochs}; a run cannot be shortened. Use another "
                             "--out, or --force to train it again from scratch.")
        return True

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.tensorboard: TensorBoardLogger | None = None
        try:
            self._setup()
            with self.probe:
                resumed = self._resume()
                pos = self.position
                if resumed:
                    self.progress.message(f"{self.name}: resuming at epoch {pos.epoch + 1}, "
                                          f"step {pos.step}")
                else:
                    self.progress.message(f"{self.name}: training {self.config.model.name} on "
                                          f"{self.device.type} -> {self.run_dir.path}")
                self._write_history()
                self.run_dir.write_status(RunState.RUNNING, epoch=pos.epoch, step=pos.step)
                self.pace = self._pace()
                while pos.epoch < self.config.train.epochs:
                    self._train_epoch()
                    self._end_epoch()
                return self._finish()
        except _Diverged as diverged:
            return self._diverge(diverged)
        except Exception as error:
            pos = self.position
            self.run_dir.write_status(RunState.FAILED, epoch=pos.epoch, step=pos.step,
                                      message=f"{type(error).__name__}: {error}",
                                      traceback=traceback.format_exc())
            raise
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()

    def _pace(self) -> RunPace:
        """What is left of the run, for the estimate of how long it will take."""
        pos, epochs_left = self.position, self.config.train.epochs - self.position.epoch
        return RunPace(self.progress, self.name,
                       train_steps=epochs_left * len(self.train_loader) - pos.batch,
                       eval_batches=epochs_left * len(self.val_loader) + len(self.test_loader))

    def _train_epoch(self) -> None:
        pos, cfg = self.position, self.config.train
        model, optimizer = self.model, self.optimizer
        model.train()
        epoch_number = pos.epoch + 1
        bar = self.progress.epoch_bar(f"{self.name} epoch {epoch_number}/{cfg.epochs}",
                                      total=len(self.train_loader), initial=pos.batch)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        started = time.perf_counter()
        try:
            for images, labels in self.train_loader.epoch(pos.epoch, start_batch=pos.batch):
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(self.device.type, enabled=self.scaler is not None):
                    logits = model(images)
                    loss = self.criterion(logits, labels)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    # the step is on record with its loss; it had no backward, so no norm
                    pos.step_rows.append(StepRow(pos.step, epoch_number, loss_value,
                                                 self._step_lr(pos.step), math.nan))
                    raise _Diverged(pos.step, loss_value)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
                # The named point: after backward, before clipping and the optimiser step.
                self.probe.record(pos.step, epoch_number, scaler=self.scaler)
                grad_norm = self._measure_and_clip()
                pos.step_rows.append(StepRow(pos.step, epoch_number, loss_value,
                                             self._step_lr(pos.step), grad_norm))
                with warmup_lr(optimizer, self.scheduler, pos.step, len(self.train_loader),
                               cfg.warmup_epochs):
                    if self.scaler is not None:
                        self.scaler.step(optimizer)
                        self.scaler.update()
                    else:
                        optimizer.step()
                correct += (logits.argmax(dim=1) == labels).sum()
                batch_size = labels.shape[0]
                pos.loss_sum += loss_value * batch_size
                pos.seen += batch_size
                pos.batch += 1
                pos.step += 1
                self.pace.step_done()
                # Accuracy needs a device sync: refresh it only every 20 steps.
                bar.update(loss_value, (pos.correct + int(correct)) / max(pos.seen, 1)
                           if pos.batch % 20 == 0 else None)
                if cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0:
                    self._sync_epoch_counters(correct, started)
                    started = time.perf_counter()
                    self._checkpoint()
                    # status.json says where the run can resume from, as the checkpoint does
                    self.run_dir.write_status(RunState.RUNNING, epoch=pos.epoch, step=pos.step)
                faults.maybe_crash(pos.step)
        finally:
            bar.close()
            self._sync_epoch_counters(correct, started)

    def _step_lr(self, step: int) -> float:
        """The learning rate of optimiser step `step`'s update: the scheduled rate times the
        warm-up factor, as `warmup_lr` sets it for the step."""
        factor = warmup_factor(step, len(self.train_loader), self.config.train.warmup_epochs)
        return self.optimizer.param_groups[0]["lr"] * factor

    def _measure_and_clip(self) -> float:
        """The global gradient norm of every trainable parameter (unscaled under AMP), then
        clipping to `grad_clip` when set: after the probe recorded, before the step.

        The norm is the one `clip_grad_norm_` computes (the L2 norm of the per-parameter
        norms); clipping scales every gradient by grad_clip / (norm + 1e-6) when the norm
        exceeds it, as `clip_grad_norm_` does. A non-finite norm is not clipped: under AMP the
        scaler skips that step, and otherwise the next loss diverges.
        """
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # scaler.step() then does not unscale again
        grads = [param.grad for param in self._trainable if param.grad is not None]
        if not grads:
            return 0.0
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(grad.float()) for grad in grads]))
        value = float(norm)
        clip = self.config.train.grad_clip
        if clip is not None and math.isfinite(value) and value > clip:
            factor = clip / (value + 1e-6)
            for grad in grads:
                grad.mul_(factor)
        return value

    def _sync_epoch_counters(self, correct: torch.Tensor, started: float) -> None:
        """Fold the on-device counters into the checkpointable position."""
        pos = self.position
        pos.correct += int(correct)
        correct.zero_()
        pos.seconds += time.perf_counter() - started

    def _end_epoch(self) -> None:
        pos = self.position
        val_loss, val_acc = self._evaluate(self.val_loader)
        row = EpochRow(
            epoch=pos.epoch + 1,
            train_loss=pos.loss_sum / max(pos.seen, 1),
            train_acc=pos.correct / max(pos.seen, 1),
            val_loss=val_loss, val_acc=val_acc,
            lr=self.optimizer.param_groups[0]["lr"],
            seconds=round(pos.seconds, 3),
        )
        pos.metrics_rows.append(row)
        if not math.isfinite(val_loss):  # the last update broke the weights: not a result
            raise _Diverged(pos.step, val_loss, "validation loss", row_kept=True)
        self.weight_distance.record(pos.step - 1, pos.epoch + 1)  # at the epoch's last step
        self.scheduler.step()
        self.probe.flush()
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(row, self.probe.to_frame())
        self.progress.message(
            f"{self.name} epoch {row.epoch}/{self.config.train.epochs}: "
            f"train loss {row.train_loss:.4f} acc {row.train_acc:.3f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.3f} | lr {row.lr:.2g} | "
            f"{row.seconds:.1f}s"
        )
        pos.epoch += 1
        pos.batch = 0
        pos.loss_sum, pos.correct, pos.seen, pos.seconds = 0.0, 0, 0, 0.0
        self._checkpoint()
        self._write_history()
        self.run_dir.write_status(RunState.RUNNING, epoch=pos.epoch, step=pos.step)

    def _write_history(self) -> None:
        self.run_dir.write_metrics(self.position.metrics_rows)
        self.run_dir.write_steps(self.position.step_rows)
        self.run_dir.write_gradients(with_weight_distance(self.probe.to_frame(),
                                                          self.weight_distance.to_frame()))

    @torch.no_grad()
    def _evaluate(self, loader: BatchLoader) -> tuple[float, float]:
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for images, labels in loader.epoch(0):
            with torch.autocast(self.device.type, enabled=self.scaler is not None):
                logits = self.model(images)
            loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += labels.shape[0]
        self.model.train()
        return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)

    def _finish(self) -> RunResult:
        pos = self.position
        test_loss, test_acc = self._evaluate(self.test_loader)
        if not math.isfinite(test_loss):
            raise _Diverged(pos.step, test_loss, "test loss", row_kept=True)
        summary = self._summary(RunState.COMPLETED, test_loss=test_loss, test_acc=test_acc)
        self.run_dir.write_summary(summary)
        self.run_dir.write_status(RunState.COMPLETED, epoch=pos.epoch, step=pos.step,
                                  message=f"test accuracy {test_acc:.3f}")
        self.progress.message(f"{self.name}: completed, test loss {test_loss:.4f} "
                              f"acc {test_acc:.3f}")
        return RunResult(self.run_dir.path, RunState.COMPLETED, summary.as_dict())

    def _diverge(self, diverged: _Diverged) -> RunResult:
        pos = self.position
        if not diverged.row_kept:
            # The partial epoch is kept: its train loss is the non-finite one that stopped it.
            pos.metrics_rows.append(EpochRow(
                epoch=pos.epoch + 1, train_loss=diverged.loss,
                train_acc=pos.correct / max(pos.seen, 1), val_loss=float("nan"),
                val_acc=float("nan"), lr=self.optimizer.param_groups[0]["lr"],
                seconds=round(pos.seconds, 3),
            ))
        epoch = pos.metrics_rows[-1].epoch
        self.probe.flush()
        self._write_history()
        message = f"diverged at step {diverged.step} (epoch {epoch}): {diverged.where} became " \
                  f"{diverged.loss}"
        summary = self._summary(RunState.DIVERGED, test_loss=None, test_acc=None,
                                diverged_step=diverged.step)
        self.run_dir.write_summary(summary)
        self.run_dir.write_status(RunState.DIVERGED, epoch=epoch, step=diverged.step,
                                  message=message)
        self.progress.message(f"{self.name}: {message}")
        return RunResult(self.run_dir.path, RunState.DIVERGED, summary.as_dict())

    def _summary(self, state: RunState, *, test_loss: float | None, test_acc: float | None,
                 diverged_step: int | None = None) -> RunSummary:
        return RunSummary.from_rows(state, self.position.metrics_rows, steps=self.position.step,
                                    test_loss=test_loss, test_acc=test_acc,
                                    diverged_step=diverged_step)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
