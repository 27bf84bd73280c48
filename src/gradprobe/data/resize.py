"""Vectorised resizing of uint8 image batches (the torchvision sets arrive at 28 or 32 pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_CHUNK = 2048  # images per interpolate call: bounds the float working set (~100 MB at 64 px)


def resize_uint8(images: torch.Tensor, image_size: int, chunk: int = _CHUNK) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to (N, C, S, S): bilinear with antialiasing, rounded back to uint8.

    `antialias=True` matches torchvision's `Resize` on tensors (and PIL's bilinear filter) when
    shrinking; in chunks, so 60,000 images never need one huge float tensor.
    """
    count, channels, height, width = images.shape
    if (height, width) == (image_size, image_size):
        return images
    resized = torch.empty((count, channels, image_size, image_size), dtype=torch.uint8)
    for start in range(0, count, chunk):
        batch = images[start : start + chunk].float()
        scaled = F.interpolate(batch, size=(image_size, image_size), mode="bilinear",
                               align_corners=False, antialias=True)
        resized[start : start + chunk] = scaled.round_().clamp_(0, 255).to(torch.uint8)
    return resized
