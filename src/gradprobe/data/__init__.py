"""Datasets -> seeded train/val/test splits of in-memory uint8 images, and batches from them.

`load_dataset("synthetic" | "digits" | "fashion-mnist" | "cifar10" | PATH, ...)` returns `Splits`;
`BatchLoader` turns one `TensorSplit` into normalised batches on a device.
"""

from gradprobe.data.load import list_datasets, load_dataset, load_dataset_from_config
from gradprobe.data.loader import BatchLoader
from gradprobe.data.splits import IMAGENET_MEAN, IMAGENET_STD, Splits, TensorSplit

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchLoader",
    "Splits",
    "TensorSplit",
    "list_datasets",
    "load_dataset",
    "load_dataset_from_config",
]
