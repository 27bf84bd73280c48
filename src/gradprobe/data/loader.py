"""Batches from in-memory uint8 tensors, by index, reproducible to the batch.

No per-sample Python work: a batch is one `index_select` of the split's uint8 tensor, moved to
the device (pinned memory and a non-blocking copy on CUDA, as torch's DataLoader does with
`pin_memory=True`), then converted to float and normalised there in one vectorised pass.

The order of epoch e is a pure function of (seed, e), and the augmentation of batch b of epoch
e a pure function of (seed, e, b): each comes from its own freshly seeded `torch.Generator`, so a
run resumed at `start_batch` sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from gradprobe.data.seeds import torch_generator
from gradprobe.data.splits import TensorSplit
from gradprobe.errors import InputError


class BatchLoader:
    """Batches from in-memory uint8 tensors by index (no per-sample Python work).

    Augmentation (off by default, as in the assignment) is the CIFAR recipe of He et al. 2016:
    a random crop after zero-padding by image_size // 8 pixels (4 at 32 px) and a horizontal
    flip with probability 1/2, applied per image on the device before normalisation.
    """

    def __init__(
        self,
        split: TensorSplit,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        max_batches: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}. "
                             "Fix: pass a positive batch size (the assignment used 32).")
        if max_batches is not None and max_batches < 1:
            raise InputError(f"max_batches must be at least 1, got {max_batches}. "
                             "Fix: pass a positive cap or leave it unset.")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise InputError(f"mean and std need 3 channels and std > 0, got {mean}, {std}. "
                             "Fix: pass the dataset's Splits.mean and Splits.std.")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.max_batches = max_batches
        self._pin = self.device.type == "cuda"  # page-locked staging makes the copy async
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std): one subtract, one multiply
        self._offset = torch.tensor([255.0 * m for m in mean], device=self.device).view(1, 3, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std],
                                   device=self.device).view(1, 3, 1, 1)
        self._padding = max(1, split.images.shape[-1] // 8)

    def __len__(self) -> int:
        """Batches per epoch (respecting `drop_last` and `max_batches`)."""
        count = len(self.split)
        batches = count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch` (int64 indices): seeded by (seed, epoch) when shuffling."""
        count = len(self.split)
        if not self.shuffle:
            return torch.arange(count)
        return torch.randperm(count, generator=torch_generator("shuffle", self.seed, epoch))

    def epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields normalised float32 (B, 3, H, W) images and int64 labels on `device`.

        Starting at `start_batch` yields exactly the tail of the full epoch's batches.
        """
        if not 0 <= start_batch <= len(self):
            raise InputError(f"start_batch must be in [0, {len(self)}], got {start_batch}. "
                             "Fix: resume from a batch index within the epoch.")
        order = self.order(epoch)
        for batch_index in range(start_batch, len(self)):
            indices = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            yield self._batch(indices, epoch, batch_index)

    def _batch(self, indices: torch.Tensor, epoch: int,
               batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.split.images.index_select(0, indices)  # (B, 3, H, W) uint8, contiguous
        labels = self.split.labels.index_select(0, indices)
        if self._pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        images = images.to(self.device, non_blocking=self._pin)
        labels = labels.to(self.device, non_blocking=self._pin)
        if self.augment:
            images = self._crop_and_flip(images, epoch, batch_index)
        normalised = images.float().sub_(self._offset).mul_(self._scale)
        return normalised, labels

    def _crop_and_flip(self, images: torch.Tensor, epoch: int, batch_index: int) -> torch.Tensor:
        """Per-image random crop of the zero-padded batch and random horizontal flip, as one
        gather: row r of image i comes from padded row dy_i + r, column c from padded column
        dx_i + c (or dx_i + W - 1 - c when flipped)."""
        count, channels, height, width = images.shape
        pad = self._padding
        generator = torch_generator("augment", self.seed, epoch, batch_index)
        shifts = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator)  # (B, 2): dy, dx
        flips = torch.rand(count, generator=generator) < 0.5  # (B,)
        device = images.device
        shifts, flips = shifts.to(device), flips.to(device)
        padded = F.pad(images, (pad, pad, pad, pad))  # zeros = black, as torchvision RandomCrop
        padded_width = width + 2 * pad
        rows = shifts[:, :1] + torch.arange(height, device=device)  # (B, H)
        columns = torch.arange(width, device=device).expand(count, width)
        columns = torch.where(flips[:, None], width - 1 - columns, columns) + shifts[:, 1:]
        # one flat index per output pixel: a single gather is ~4x faster than 4-D fancy indexing
        flat = (rows[:, :, None] * padded_width + columns[:, None, :]).view(count, 1, -1)
        gathered = padded.view(count, channels, -1).gather(2, flat.expand(-1, channels, -1))
        return gathered.view(count, channels, height, width)
