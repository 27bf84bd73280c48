"""Decode one image file to a uint8 RGB tensor at the training size, or say why it cannot be.

The transform is the assignment's `Resize((s, s))` (bilinear, as torchvision applies it to PIL
images) after a conversion to RGB that is correct for every mode PIL opens:

- "L", "1", "P", "CMYK", "YCbCr", ...: PIL's own conversion (grey replicated to 3 channels).
- Anything with transparency ("RGBA", "LA", "PA", "P" or "RGB" with a transparency key):
  composited over white. Dropping alpha instead would expose whatever colour the encoder left
  in fully transparent pixels (often black or garbage); white is how viewers show such images.
- 16-bit ("I;16*") and 32-bit ("I", "F") single-channel images: scaled to 8 bits, since PIL's
  own conversion to "L" clips at 255 and turns most of a 16-bit image white. 16-bit values map
  v -> round(v / 257) (65535 -> 255); "I" images with values in [0, 65535] are taken as 16-bit
  (what PIL opens 16-bit PNG/TIFF/PGM as); "F" images in [0, 1] are scaled by 255; other ranges
  are stretched from their own min..max.

EXIF orientation is not applied, exactly as torchvision's ImageFolder does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255, 255)


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit or float single-channel array to uint8 (see module docstring)."""
    data = values.astype(np.float64)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and low >= 0 and high <= 65535):
        scaled = data / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = data * 255.0
    elif high > low:
        scaled = (data - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(data)
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of `image` (see the module docstring for each mode)."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        gray = _high_depth_to_uint8(np.asarray(image), image.mode)
        return Image.fromarray(gray).convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def decode_image_file(path: Path, image_size: int) -> tuple[torch.Tensor | None, str]:
    """(uint8 (3, S, S) tensor, "") for a readable image; (None, reason) for any other file.

    `load()` forces the full decode, so a truncated file fails here: PIL's
    `LOAD_TRUNCATED_IMAGES` stays False, because a truncated file is a bad file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
        resized = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        return None, f"{type(error).__name__}: {error}"
    array = np.asarray(resized)  # (S, S, 3) uint8
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), ""
