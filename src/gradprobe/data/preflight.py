"""Check that a run's data can load, before anything is written: no image is decoded here.

`train` used to find a missing dataset only when it loaded it (then removed the run directory
again), and `study` only inside each run: 15 failed runs and a report of failures for a typo in
`--dataset`. `check_data` asks the same questions the loader asks, with the loader's own
messages, from what costs nothing: the dataset name, whether a folder exists and lists at least
two classes, whether a torchvision set is on disk (or may be downloaded), and whether the
`max_images` and `max_train_images` caps leave every class an image in every split.
"""

from __future__ import annotations

import warnings

from gradprobe.config import DataConfig
from gradprobe.data.digits import DIGITS_CLASSES
from gradprobe.data.folder import check_classes, check_root
from gradprobe.data.load import dataset_kind, official_shares
from gradprobe.data.torchvision_sets import check_available
from gradprobe.errors import InputError

OFFICIAL_CLASSES = 10  # Fashion-MNIST and CIFAR-10


def check_data(config: DataConfig, *, here: bool = True) -> None:
    """Raise the `InputError` loading `config`'s data would raise, where it can be known
    without loading it. `here=False` (the runs load their data on other machines, e.g. Ray
    workers) leaves out what depends on this machine's files."""
    kind, path = dataset_kind(config.dataset)
    classes: int | None
    if kind == "synthetic":
        classes = config.num_classes
    elif kind == "digits":
        classes = len(DIGITS_CLASSES)
    elif kind in ("fashion-mnist", "cifar10"):
        classes = OFFICIAL_CLASSES
        if here:
            check_available(kind, config.data_root, config.download)
    else:
        classes = None
        if here and path is not None:
            check_root(path)
            with warnings.catch_warnings():  # the loader warns about set-aside names, once
                warnings.simplefilter("ignore")
                classes = len(check_classes(path))
    if classes is None:
        return
    split = config.split
    if config.max_images is not None:
        if kind in ("fashion-mnist", "cifar10"):
            official_shares(kind, config.max_images, split, classes)
        elif config.max_images < len(split) * classes:
            # every class keeps one image in each of train, val and test
            raise InputError(
                f"max_images={config.max_images} leaves fewer than {len(split)} images per class "
                f"for the {classes} classes of {config.dataset} (each class needs one image in "
                f"each of train, val and test). Fix: raise max_images to at least "
                f"{len(split) * classes}, or leave it unset."
            )
    if config.max_train_images is not None and config.max_train_images < classes:
        raise InputError(
            f"max_train_images={config.max_train_images} is smaller than the number of classes "
            f"({classes}) of {config.dataset}: a stratified split needs at least one image per "
            "class. Fix: raise max_train_images or leave it unset."
        )
