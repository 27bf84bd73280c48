"""ImageFolder trees with symbolic links: loops end, every real image is taken once, and a tree
with fewer than two classes is refused (it would train to a perfect, meaningless score)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradprobe.data import load_dataset
from gradprobe.data.folder import RepeatedPathsWarning, scan_tree
from gradprobe.errors import InputError


def _tree(root: Path, per_class: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")


def _scan(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, files = scan_tree(root)
    return files, [str(w.message) for w in caught if w.category is RepeatedPathsWarning]


def test_self_link_takes_each_image_once(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"a": 6, "b": 4})
    os.symlink(".", root / "a" / "self")
    files, messages = _scan(root)
    assert sorted(path for path, _ in files) == sorted(
        [f"a/{i}.png" for i in range(6)] + [f"b/{i}.png" for i in range(4)]
    )
    assert len(messages) == 1 and "a/self" in messages[0]


@pytest.mark.timeout(30)
def test_link_loops_end(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"a": 3, "b": 3})
    os.symlink("../..", root / "a" / "up")  # to the folder above the dataset: walks beyond it
    os.symlink("../b", root / "a" / "to_b")  # into another class: b's images stay b's
    (root / "b" / "deep").mkdir()
    os.symlink("..", root / "b" / "deep" / "back")  # a cycle b -> deep -> b
    files, messages = _scan(root)
    assert sorted(files) == sorted([(f"a/{i}.png", 0) for i in range(3)]
                                   + [(f"b/{i}.png", 1) for i in range(3)])
    assert len(messages) == 1
    assert "a/up" in messages[0] and "a/to_b" in messages[0] and "b/deep/back" in messages[0]


def test_file_linked_into_two_classes_is_kept_once(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"a": 3, "b": 3})
    os.symlink(root / "a" / "0.png", root / "b" / "copy.png")
    files, messages = _scan(root)
    assert ("b/copy.png", 1) not in files and ("a/0.png", 0) in files
    assert len(messages) == 1 and "b/copy.png" in messages[0]


def test_loaded_splits_hold_no_duplicate_images(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"a": 6, "b": 6})
    os.symlink(".", root / "a" / "self")
    with pytest.warns(RepeatedPathsWarning, match="a/self"):
        splits = load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache")
    images = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    assert images.shape[0] == 12
    assert len({bytes(image.numpy()) for image in images}) == 12


def test_one_class_tree_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root, {"only": 5})
    with pytest.raises(InputError, match=r"one class sub-folder \('only'\).*at least two"):
        load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache")
