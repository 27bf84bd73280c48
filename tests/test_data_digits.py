"""Tests of the `digits` dataset kind: scikit-learn's shipped 8x8 handwritten digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from gradprobe.data import list_datasets, load_dataset, load_dataset_from_config
from gradprobe.data.digits import DIGITS_COUNT, load_digits_pool
from gradprobe.errors import InputError

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_digits_is_listed() -> None:
    kinds = dict(list_datasets())
    assert "digits" in kinds
    assert "no download" in kinds["digits"]


def test_digits_pool_matches_scikit_learn() -> None:
    images, labels, digest = load_digits_pool()
    reference = sklearn_datasets.load_digits()
    assert images.shape == (DIGITS_COUNT, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.tolist() == reference.target.tolist()
    # Grey levels 0..16 map linearly onto 0..255 (independent float64 check).
    expected = np.round(reference.images.astype(np.float64) * 255.0 / 16.0).astype(np.uint8)
    assert np.array_equal(images[:, 0].numpy(), expected)
    assert len(digest) == 64


def test_digits_splits_shapes_classes_and_counts() -> None:
    splits = load_dataset("digits", image_size=32, seed=0)
    assert splits.num_classes == 10 and splits.classes == [str(d) for d in range(10)]
    assert splits.in_channels == 3
    for part in (splits.train, splits.val, splits.test):
        assert part.images.shape[1:] == (3, 32, 32) and part.images.dtype == torch.uint8
        assert torch.bincount(part.labels, minlength=10).min() > 0  # every class in every split
    counts = splits.info["counts"]
    assert sum(counts.values()) == DIGITS_COUNT
    assert abs(counts["train"] / DIGITS_COUNT - 0.7) < 0.01
    assert abs(counts["val"] / DIGITS_COUNT - 0.15) < 0.01
    assert splits.info["kind"] == "digits"


def test_digits_resize_keeps_the_digit() -> None:
    """The 32 px image, shrunk back to 8 px, is close to the original 8 px digit."""
    small = load_dataset("digits", image_size=8, seed=0)
    large = load_dataset("digits", image_size=32, seed=0)
    assert torch.equal(small.train.labels, large.train.labels)
    shrunk = torch.nn.functional.avg_pool2d(large.train.images[:50].float(), 4)
    error = (shrunk - small.train.images[:50].float()).abs().mean()
    assert error < 20  # grey levels out of 255; an unrelated image differs by ~80
    assert small.train.images[:, 0].equal(small.train.images[:, 2])  # grey: channels equal


def test_digits_split_is_fixed_by_the_data_seed_and_has_no_leakage() -> None:
    first = load_dataset("digits", image_size=8, seed=3)
    again = load_dataset("digits", image_size=8, seed=3)
    other = load_dataset("digits", image_size=8, seed=4)
    assert first.fingerprint == again.fingerprint
    assert torch.equal(first.train.images, again.train.images)
    assert first.fingerprint != other.fingerprint
    assert _rows(first.val.images) != _rows(other.val.images)  # another seed, another split
    train, val, test = (_rows(p.images) for p in (first.train, first.val, first.test))
    # The 1,797 digits are pairwise distinct, so pixels identify an image: no image of one
    # split appears in another, and together the splits hold every image once.
    assert len(_rows(load_digits_pool()[0])) == DIGITS_COUNT
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train) + len(val) + len(test) == DIGITS_COUNT


def test_digits_split_does_not_depend_on_the_run_seed() -> None:
    """Runs that differ only in their training seed train on the same split."""
    data = DataConfig(dataset="digits", image_size=8)
    runs = [RunConfig(model=ModelConfig(name="mlp"), data=data, train=TrainConfig(seed=seed))
            for seed in (0, 1, 2)]
    splits = [load_dataset_from_config(run.data) for run in runs]
    assert len({split.fingerprint for split in splits}) == 1
    assert all(torch.equal(splits[0].val.images, split.val.images) for split in splits[1:])


def test_digits_missing_scikit_learn_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(InputError, match="pip install"):
        load_dataset("digits", image_size=8)
