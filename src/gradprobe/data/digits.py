"""`digits`: scikit-learn's 1,797 handwritten digits (8x8, 10 classes), a small real dataset.

The images ship inside the scikit-learn wheel (`sklearn.datasets.load_digits` reads a file of
the installed package), so nothing is downloaded. Each image is 8x8 grey levels 0-16 (UCI
"optdigits", 43 writers); they are scaled to uint8 0-255 here and, like every other kind, resized
to the requested image size and split by the shared seeded stratified split, so the split
depends on the data seed only, never on a run's training seed. There are about 180 images per
class: at 70/15/15 that is ~126 train, ~27 val and ~27 test images per class.
"""

from __future__ import annotations

import hashlib

import torch

from gradprobe.errors import InputError

DIGITS_COUNT = 1797  # images in scikit-learn's copy of the set
DIGITS_SIZE = 8  # pixels per side as shipped
DIGITS_MAX_LEVEL = 16  # grey levels run 0..16
DIGITS_CLASSES: list[str] = [str(digit) for digit in range(10)]


def load_digits_pool() -> tuple[torch.Tensor, torch.Tensor, str]:
    """All digits as uint8 (1797, 1, 8, 8) 0-255, labels (1797,) int64 and a content sha256.

    Raises `InputError` naming the fix when scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise InputError(
            "the 'digits' dataset is read from scikit-learn's wheel, which is not installed. "
            "Fix: pip install scikit-learn (a gradprobe dependency; reinstall gradprobe), or "
            "choose another dataset (`gradprobe datasets`)."
        ) from error
    bunch = load_digits()
    levels = torch.as_tensor(bunch.images, dtype=torch.float64)  # (N, 8, 8), 0..16
    if levels.shape != (DIGITS_COUNT, DIGITS_SIZE, DIGITS_SIZE):
        raise InputError(f"scikit-learn's digits have shape {tuple(levels.shape)}, expected "
                         f"({DIGITS_COUNT}, {DIGITS_SIZE}, {DIGITS_SIZE}). Fix: reinstall "
                         "scikit-learn.")
    images = (levels * (255.0 / DIGITS_MAX_LEVEL)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    # The content digest names the data in the split fingerprint (a changed copy shows up).
    digest = hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()
    return images, labels, digest
