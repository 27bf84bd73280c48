"""Tests of gradprobe.data: every dataset kind, every documented error, splits and batches.

All data is made here, in tmp_path (tiny ImageFolder trees with hostile files, a fake CIFAR-10
pickle tree, tiny Fashion-MNIST idx files); the real Fashion-MNIST is used when Debian's
`dataset-fashion-mnist` package is installed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image, ImageFile
from torch import nn

from gradprobe.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchLoader,
    Splits,
    TensorSplit,
    decode,
    list_datasets,
    load_dataset,
    load_dataset_from_config,
    torchvision_sets,
)
from gradprobe.data.folder import SkippedFilesWarning
from gradprobe.data.splits import allocate, stratified_partition, stratified_subsample
from gradprobe.data.synthetic import SHAPES, generate_synthetic
from gradprobe.errors import InputError

RNG_SEED = 1234


# ----------------------------------------------------------------------------- helpers


def _random_rgb(rng: np.random.Generator, height: int = 10, width: int = 12) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_hostile_tree(root: Path) -> dict[str, int]:
    """A two-class tree with one image of every awkward mode, four bad files, hidden entries
    and stray root files. Returns the expected number of readable images per class."""
    rng = np.random.default_rng(RNG_SEED)
    cats, dogs = root / "cats", root / "dogs"
    (cats / "more").mkdir(parents=True)
    dogs.mkdir()
    # cats: one readable image per mode, one in a nested folder
    Image.fromarray(_random_rgb(rng)).save(cats / "rgb.png")
    (cats / "photo.jpg").write_bytes(_jpeg_bytes(_random_rgb(rng)))
    Image.fromarray(_random_rgb(rng)[..., 0]).save(cats / "gray.png")  # mode L
    Image.fromarray(_random_rgb(rng)[..., :2].copy()).save(cats / "gray_alpha.png")  # LA
    Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)).save(cats / "rgba.png")
    palette = Image.fromarray(_random_rgb(rng)).convert("P", palette=Image.Palette.ADAPTIVE,
                                                         colors=8)
    palette.save(cats / "palette.png", transparency=0)
    Image.fromarray(_random_rgb(rng)).convert("CMYK").save(cats / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)).save(cats / "deep16.png")
    Image.fromarray(_random_rgb(rng)).save(cats / "more" / "nested.png")
    # dogs: plain images
    for index in range(4):
        Image.fromarray(_random_rgb(rng)).save(dogs / f"dog{index}.png")
    # four bad files: empty, truncated JPEG, truncated PNG, text named .jpg
    (cats / "empty.jpg").write_bytes(b"")
    jpeg = _jpeg_bytes(_random_rgb(rng, 32, 32))
    (dogs / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = _png_bytes(_random_rgb(rng, 32, 32))
    (dogs / "truncated.png").write_bytes(png[: len(png) // 2])
    (dogs / "notes.jpg").write_text("not an image at all")
    # hidden entries and stray root files: all ignored (the images among them are valid)
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(_random_rgb(rng)).save(root / ".ipynb_checkpoints" / "cat-checkpoint.png")
    (cats / ".hidden_dir").mkdir()
    Image.fromarray(_random_rgb(rng)).save(cats / ".hidden_dir" / "x.png")
    Image.fromarray(_random_rgb(rng)).save(cats / ".hidden.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (cats / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "README.txt").write_text("stray file at the root")
    Image.fromarray(_random_rgb(rng)).save(root / "stray.png")
    return {"cats": 9, "dogs": 4}


def _write_simple_tree(root: Path, per_class: dict[str, int], size: int = 8) -> None:
    rng = np.random.default_rng(RNG_SEED)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(_random_rgb(rng, size, size)).save(root / name / f"{index}.png")


def _all_images(splits: Splits) -> torch.Tensor:
    return torch.cat([splits.train.images, splits.val.images, splits.test.images])


# ----------------------------------------------------------------------------- listing


def test_list_datasets_names_every_kind() -> None:
    kinds = [kind for kind, _ in list_datasets()]
    assert kinds[:3] == ["synthetic", "fashion-mnist", "cifar10"]
    assert "PATH" in kinds
    assert all(description for _, description in list_datasets())


def test_unknown_dataset_name_lists_known_kinds() -> None:
    with pytest.raises(InputError) as error:
        load_dataset("imagenet-nonexistent")
    message = str(error.value)
    for kind in ("synthetic", "fashion-mnist", "cifar10", "ImageFolder"):
        assert kind in message


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("total,weights", [(10, (0.7, 0.15, 0.15)), (3, (0.7, 0.15, 0.15)),
                                           (100, (0.7, 0.15, 0.15)), (7, (0.85, 0.15)),
                                           (4, (0.05, 0.5, 0.45)), (601, (1, 1, 1))])
def test_allocate_sums_exactly_and_gives_every_part_one(total: int,
                                                        weights: tuple[float, ...]) -> None:
    counts = allocate(total, weights)
    assert sum(counts) == total
    assert min(counts) >= 1
    # within one of the exact share, unless lifted to the minimum of one
    for count, weight in zip(counts, weights, strict=True):
        exact = total * weight / sum(weights)
        assert count == 1 or abs(count - exact) <= 1.0 + 1e-9


def test_allocate_matches_known_values() -> None:
    assert allocate(600, (0.7, 0.15, 0.15)) == [420, 90, 90]
    assert allocate(10, (0.7, 0.15, 0.15)) == [7, 2, 1]  # largest remainder, tie to the earlier
    assert allocate(3, (0.7, 0.15, 0.15)) == [1, 1, 1]


def test_stratified_partition_is_disjoint_complete_and_stratified() -> None:
    labels = torch.tensor([0] * 40 + [1] * 25 + [2] * 11)
    classes = ["a", "b", "c"]
    parts = stratified_partition(labels, (0.7, 0.15, 0.15), seed=3, classes=classes)
    everything = np.concatenate(parts)
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and complete
    for class_index, size in enumerate((40, 25, 11)):
        counts = [int(np.sum(labels.numpy()[part] == class_index)) for part in parts]
        assert counts == allocate(size, (0.7, 0.15, 0.15))
    again = stratified_partition(labels, (0.7, 0.15, 0.15), seed=3, classes=classes)
    other = stratified_partition(labels, (0.7, 0.15, 0.15), seed=4, classes=classes)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_stratified_subsample_caps_and_keeps_proportions() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 30)
    indices = np.arange(120)
    kept = stratified_subsample(indices, labels, 40, seed=0, classes=["a", "b", "c"])
    assert len(kept) == 40 and len(set(kept.tolist())) == 40
    assert np.bincount(labels.numpy()[kept]).tolist() == [20, 10, 10]
    assert stratified_subsample(indices, labels, 500, 0, ["a", "b", "c"]) is indices
    with pytest.raises(InputError, match="max_train_images"):
        stratified_subsample(indices, labels, 2, 0, ["a", "b", "c"])


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_counts_and_info() -> None:
    splits = load_dataset("synthetic", image_size=16, images_per_class=20, num_classes=4, seed=5)
    assert splits.classes == list(SHAPES)[:4]
    assert (splits.num_classes, splits.in_channels) == (4, 3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (56, 12, 12)
    for part in (splits.train, splits.val, splits.test):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 16, 16)
        assert part.labels.dtype == torch.int64
    assert torch.bincount(splits.train.labels).tolist() == [14] * 4
    assert (splits.mean, splits.std) == (IMAGENET_MEAN, IMAGENET_STD)
    json.dumps(splits.info)  # json-serialisable
    assert splits.info["fingerprint"] == splits.fingerprint
    assert splits.info["class_to_idx"] == {name: i for i, name in enumerate(splits.classes)}
    assert splits.info["counts"] == {"train": 56, "val": 12, "test": 12}


def test_synthetic_is_deterministic_per_seed() -> None:
    first = load_dataset("synthetic", image_size=12, images_per_class=10, seed=1)
    again = load_dataset("synthetic", image_size=12, images_per_class=10, seed=1)
    other = load_dataset("synthetic", image_size=12, images_per_class=10, seed=2)
    assert torch.equal(first.train.images, again.train.images)
    assert first.fingerprint == again.fingerprint
    assert not torch.equal(first.train.images, other.train.images)
    assert first.fingerprint != other.fingerprint


def test_synthetic_class_images_do_not_depend_on_class_count() -> None:
    three, labels3, _ = generate_synthetic(3, 8, 12, seed=0)
    five, labels5, _ = generate_synthetic(5, 8, 12, seed=0)
    assert torch.equal(three, five[: len(three)])
    assert torch.equal(labels3, labels5[: len(labels3)])


def _fit_logistic_regression(features: torch.Tensor, targets: torch.Tensor,
                             num_classes: int) -> nn.Linear:
    """Multinomial logistic regression fitted to convergence with L-BFGS (a light L2 term)."""
    linear = nn.Linear(features.shape[1], num_classes)
    lbfgs = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = F.cross_entropy(linear(features), targets) + 1e-4 * linear.weight.square().sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return linear


def test_synthetic_colour_and_brightness_do_not_predict_the_class() -> None:
    """A classifier that sees only each image's mean colour and brightness is at chance."""
    torch.manual_seed(0)
    images, labels, _ = generate_synthetic(10, 200, 16, seed=0)
    colour = images.float().mean(dim=(2, 3))  # (N, 3) mean R, G, B
    features = torch.cat([colour, colour.mean(dim=1, keepdim=True)], dim=1)  # + brightness
    features = (features - features.mean(dim=0)) / features.std(dim=0)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    fit, held_out = order[:1000], order[1000:]
    model = _fit_logistic_regression(features[fit], labels[fit], 10)
    accuracy = (model(features[held_out]).argmax(1) == labels[held_out]).float().mean().item()
    assert accuracy < 0.1 + 0.06, accuracy  # chance is 0.1, one standard error ~0.01


def test_synthetic_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="num_classes"):
        load_dataset("synthetic", num_classes=len(SHAPES) + 1, image_size=8)
    with pytest.raises(InputError, match="images_per_class"):
        load_dataset("synthetic", images_per_class=2, image_size=8)
    with pytest.raises(InputError, match="split"):
        load_dataset("synthetic", split=(0.5, 0.5, 0.5), image_size=8)
    with pytest.raises(InputError, match="image_size"):
        load_dataset("synthetic", image_size=0)


def _small_cnn(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
        nn.Flatten(), nn.Linear(32, num_classes),
    )


def _accuracy(model: nn.Module, loader: BatchLoader) -> float:
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader.epoch(0):
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    return correct / total


@pytest.mark.slow
def test_synthetic_needs_spatial_features_cnn_learns_linear_does_not() -> None:
    """The quick-preset-sized set (3 classes x 600 at 32 px): a small CNN reaches >= 90%
    validation accuracy in two epochs; logistic regression on raw pixels stays near chance."""
    torch.manual_seed(0)
    splits = load_dataset("synthetic", image_size=32, images_per_class=600, seed=0)
    common = {"seed": 0, "mean": splits.mean, "std": splits.std}
    train = BatchLoader(splits.train, batch_size=32, shuffle=True, **common)
    val = BatchLoader(splits.val, batch_size=256, shuffle=False, **common)

    cnn = _small_cnn(splits.num_classes)
    optimiser = torch.optim.Adam(cnn.parameters(), lr=3e-3)
    for epoch in range(2):
        for images, labels in train.epoch(epoch):
            optimiser.zero_grad()
            F.cross_entropy(cnn(images), labels).backward()
            optimiser.step()
    cnn_accuracy = _accuracy(cnn, val)

    # logistic regression on raw (normalised) pixels, fitted to convergence with L-BFGS
    full_train = next(BatchLoader(splits.train, batch_size=len(splits.train), shuffle=False,
                                  **common).epoch(0))
    linear = _fit_logistic_regression(full_train[0].flatten(1), full_train[1], splits.num_classes)
    linear_accuracy = _accuracy(nn.Sequential(nn.Flatten(), linear), val)
    assert cnn_accuracy >= 0.9, cnn_accuracy
    assert linear_accuracy < 0.6, linear_accuracy


# ----------------------------------------------------------------------------- decoding


def _decode(image: Image.Image, tmp_path: Path, name: str, size: int = 6) -> torch.Tensor:
    path = tmp_path / name
    image.save(path)
    tensor, reason = decode.decode_image_file(path, size)
    assert tensor is not None, reason
    return tensor


def _uniform_colour(tensor: torch.Tensor) -> list[int]:
    """The one colour of a uniform (3, S, S) image."""
    flat = tensor.flatten(1)
    assert torch.equal(flat.min(dim=1).values, flat.max(dim=1).values), "image is not uniform"
    return flat[:, 0].tolist()


def test_decode_matches_torchvision_resize_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(_random_rgb(rng, 37, 29))
    decoded = _decode(image, tmp_path, "x.png", size=16)
    reference = TF.pil_to_tensor(TF.resize(image, [16, 16]))  # the assignment's Resize((s, s))
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, reference)


def test_decode_grayscale_replicates_channels(tmp_path: Path) -> None:
    assert _uniform_colour(_decode(Image.new("L", (8, 8), 77), tmp_path, "l.png")) == [77] * 3
    assert _uniform_colour(_decode(Image.new("1", (8, 8), 1), tmp_path, "b.png")) == [255] * 3


@pytest.mark.parametrize("alpha,expected", [(0, [255, 255, 255]), (255, [0, 0, 255]),
                                            (128, [127, 127, 255])])
def test_decode_rgba_composites_on_white(tmp_path: Path, alpha: int, expected: list[int]) -> None:
    decoded = _decode(Image.new("RGBA", (8, 8), (0, 0, 255, alpha)), tmp_path, "a.png")
    # naive reference: out = alpha * colour + (1 - alpha) * white, per channel
    naive = [round(alpha / 255 * c + (1 - alpha / 255) * 255) for c in (0, 0, 255)]
    assert all(abs(a - b) <= 1 for a, b in zip(_uniform_colour(decoded), naive, strict=True))
    assert all(abs(a - b) <= 1 for a, b in zip(_uniform_colour(decoded), expected, strict=True))


def test_decode_gray_alpha_and_palette_transparency(tmp_path: Path) -> None:
    transparent = _decode(Image.new("LA", (8, 8), (50, 0)), tmp_path, "la0.png")
    opaque = _decode(Image.new("LA", (8, 8), (50, 255)), tmp_path, "la1.png")
    assert _uniform_colour(transparent) == [255] * 3
    assert _uniform_colour(opaque) == [50] * 3
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))
    palette_path = tmp_path / "p_opaque.png"
    palette.save(palette_path, transparency=0)  # index 0 transparent, the pixels use index 1
    tensor, _ = decode.decode_image_file(palette_path, 6)
    assert tensor is not None and _uniform_colour(tensor) == [0, 200, 0]
    hole = Image.new("P", (8, 8), 0)
    hole.putpalette([0, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))
    hole_path = tmp_path / "p_clear.png"
    hole.save(hole_path, transparency=0)
    tensor, _ = decode.decode_image_file(hole_path, 6)
    assert tensor is not None and _uniform_colour(tensor) == [255] * 3  # white, not black


def test_decode_cmyk(tmp_path: Path) -> None:
    red = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    assert _uniform_colour(_decode(red, tmp_path, "c.tif")) == [255, 0, 0]  # lossless TIFF
    path = tmp_path / "c.jpg"
    red.save(path)
    tensor, _ = decode.decode_image_file(path, 6)
    assert tensor is not None
    colour = tensor.float().mean(dim=(1, 2))
    assert torch.allclose(colour, torch.tensor([255.0, 0.0, 0.0]), atol=8)


@pytest.mark.parametrize("value", [0, 1000, 25700, 40000, 65535])
def test_decode_16_bit_scales_not_clips(tmp_path: Path, value: int) -> None:
    image = Image.fromarray(np.full((8, 8), value, dtype=np.uint16))
    decoded = _decode(image, tmp_path, "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really a 16-bit file
    assert _uniform_colour(decoded) == [round(value / 257)] * 3  # clipping would give 255


def test_decode_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    jpeg = _jpeg_bytes(_random_rgb(np.random.default_rng(0), 32, 32))
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    for name in ("empty.png", "text.jpg", "cut.jpg"):
        tensor, reason = decode.decode_image_file(tmp_path / name, 8)
        assert tensor is None and reason
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # never set globally


# ----------------------------------------------------------------------------- ImageFolder


def test_folder_with_hostile_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    expected = _write_hostile_tree(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache", seed=0)
    skipped_warnings = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert len(skipped_warnings) == 1
    message = str(skipped_warnings[0].message)
    assert "skipped 4 file(s)" in message
    assert "cats/empty.jpg" in message and "dogs/truncated.jpg" in message
    assert splits.classes == ["cats", "dogs"]  # no '.ipynb_checkpoints' class
    assert splits.info["class_to_idx"] == {"cats": 0, "dogs": 1}
    assert splits.info["skipped_files"] == 4
    assert splits.info["kind"] == "folder"
    labels = torch.cat([splits.train.labels, splits.val.labels, splits.test.labels])
    assert torch.bincount(labels).tolist() == [expected["cats"], expected["dogs"]]
    images = _all_images(splits)
    assert images.shape[1:] == (3, 8, 8) and images.dtype == torch.uint8
    json.dumps(splits.info)


def test_folder_images_equal_torchvision_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_simple_tree(root, {"a": 3, "b": 3}, size=20)
    splits = load_dataset(root, image_size=8, cache_dir=tmp_path / "cache")  # a Path works too
    # independent reference: torchvision's ImageFolder with the assignment's transforms
    reference = torchvision.datasets.ImageFolder(
        str(root), transform=lambda image: TF.pil_to_tensor(TF.resize(image, [8, 8]))
    )
    expected = {(tuple(image.flatten().tolist()), label) for image, label in reference}
    ours = {(tuple(image.flatten().tolist()), int(label))
            for part in (splits.train, splits.val, splits.test)
            for image, label in zip(part.images, part.labels, strict=True)}
    assert ours == expected
    assert splits.info["class_to_idx"] == reference.class_to_idx


def test_folder_cache_second_load_decodes_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "tree", tmp_path / "cache"
    _write_simple_tree(root, {"a": 4, "b": 4})
    calls: list[Path] = []
    real = decode.decode_image_file

    def counting(path: Path, size: int) -> tuple[torch.Tensor | None, str]:
        calls.append(path)
        return real(path, size)

    monkeypatch.setattr(decode, "decode_image_file", counting)
    first = load_dataset(str(root), image_size=8, cache_dir=cache)
    assert len(calls) == 8 and first.info["cache_hit"] is False
    second = load_dataset(str(root), image_size=8, cache_dir=cache)
    assert len(calls) == 8 and second.info["cache_hit"] is True
    assert torch.equal(_all_images(first), _all_images(second))
    assert first.fingerprint == second.fingerprint
    # another image size is another cache entry
    load_dataset(str(root), image_size=6, cache_dir=cache)
    assert len(calls) == 16
    # a changed file invalidates the entry
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "a" / "0.png")
    os.utime(root / "a" / "0.png", ns=(1, 1))
    changed = load_dataset(str(root), image_size=8, cache_dir=cache)
    assert len(calls) == 24 and changed.info["cache_hit"] is False


def test_folder_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    root, cache = tmp_path / "tree", tmp_path / "cache"
    _write_simple_tree(root, {"a": 3, "b": 3})
    first = load_dataset(str(root), image_size=8, cache_dir=cache)
    cache_file = Path(first.info["cache_file"])
    cache_file.write_bytes(b"this is not a torch file")
    rebuilt = load_dataset(str(root), image_size=8, cache_dir=cache)
    assert rebuilt.info["cache_hit"] is False
    assert torch.equal(_all_images(first), _all_images(rebuilt))
    assert load_dataset(str(root), image_size=8, cache_dir=cache).info["cache_hit"] is True
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_folder_cache_dir_defaults_to_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    _write_simple_tree(root, {"a": 3, "b": 3})
    monkeypatch.setenv("GRADPROBE_CACHE", str(tmp_path / "env_cache"))
    splits = load_dataset(str(root), image_size=8)
    assert Path(splits.info["cache_file"]).parent == tmp_path / "env_cache"


def test_folder_path_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"), cache_dir=tmp_path)


def test_folder_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a directory"):
        load_dataset(str(tmp_path / "file.png"), cache_dir=tmp_path)


def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    (root / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    with pytest.raises(InputError, match="no class sub-folders"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_folder_class_without_readable_images(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_simple_tree(root, {"good": 3})
    (root / "bad").mkdir()
    (root / "bad" / "broken.jpg").write_text("nope")
    with pytest.warns(SkippedFilesWarning), pytest.raises(InputError, match="'bad'"):
        load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache")


def test_folder_class_too_small_for_the_split(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_simple_tree(root, {"big": 5, "small": 2})
    with pytest.raises(InputError, match="class 'small' has 2 image"):
        load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache")


def test_folder_max_train_images(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_simple_tree(root, {"a": 20, "b": 20})
    full = load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache")
    capped = load_dataset(str(root), image_size=8, cache_dir=tmp_path / "cache",
                          max_train_images=10)
    assert len(full.train) == 28 and len(capped.train) == 10
    assert torch.bincount(capped.train.labels).tolist() == [5, 5]
    assert torch.equal(full.val.images, capped.val.images)  # val and test are untouched
    assert capped.fingerprint != full.fingerprint


# ----------------------------------------------------------------------------- batches


def _tiny_splits() -> Splits:
    return load_dataset("synthetic", image_size=8, images_per_class=30, seed=0)


def _loader(split: TensorSplit, **options: object) -> BatchLoader:
    settings: dict[str, object] = {"batch_size": 8, "shuffle": True, "seed": 0,
                                   "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    settings.update(options)
    return BatchLoader(split, **settings)  # type: ignore[arg-type]


def test_batches_are_normalised_like_the_naive_formula() -> None:
    split = _tiny_splits().train
    loader = _loader(split)
    images, labels = next(loader.epoch(0))
    indices = loader.order(0)[:8]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    naive = (split.images[indices].float() / 255 - mean) / std
    assert images.dtype == torch.float32 and images.shape == (8, 3, 8, 8)
    assert torch.allclose(images, naive, atol=1e-5)
    assert torch.equal(labels, split.labels[indices])


def test_an_epoch_visits_every_image_once() -> None:
    split = _tiny_splits().train  # 63 images
    loader = _loader(split, shuffle=True)
    assert len(loader) == 8
    seen = torch.cat([labels for _, labels in loader.epoch(3)])
    assert len(seen) == 63
    assert torch.equal(torch.sort(loader.order(3)).values, torch.arange(63))
    assert torch.bincount(seen).tolist() == torch.bincount(split.labels).tolist()
    assert len(_loader(split, drop_last=True)) == 7
    assert len(_loader(split, max_batches=3)) == 3
    assert sum(1 for _ in _loader(split, max_batches=3).epoch(0)) == 3
    assert torch.equal(_loader(split, shuffle=False).order(5), torch.arange(63))


def test_same_seed_same_split_and_first_batch_different_seed_different() -> None:
    first = load_dataset("synthetic", image_size=8, images_per_class=30, seed=7)
    again = load_dataset("synthetic", image_size=8, images_per_class=30, seed=7)
    other = load_dataset("synthetic", image_size=8, images_per_class=30, seed=8)
    assert first.fingerprint == again.fingerprint != other.fingerprint
    batch = next(_loader(first.train, seed=7).epoch(0))
    batch_again = next(_loader(again.train, seed=7).epoch(0))
    batch_other_seed = next(_loader(first.train, seed=8).epoch(0))
    assert all(torch.equal(a, b) for a, b in zip(batch, batch_again, strict=True))
    assert not torch.equal(batch[0], batch_other_seed[0])
    next_epoch = next(_loader(first.train, seed=7).epoch(1))
    assert not torch.equal(batch[0], next_epoch[0])  # epochs are shuffled differently


@pytest.mark.parametrize("augment", [False, True])
def test_resuming_mid_epoch_gives_the_tail_of_the_epoch(augment: bool) -> None:
    split = _tiny_splits().train
    full = list(_loader(split, augment=augment).epoch(2))
    tail = list(_loader(split, augment=augment).epoch(2, start_batch=5))
    assert len(tail) == len(full) - 5
    for (images, labels), (images_tail, labels_tail) in zip(full[5:], tail, strict=True):
        assert torch.equal(images, images_tail) and torch.equal(labels, labels_tail)
    with pytest.raises(InputError, match="start_batch"):
        next(_loader(split).epoch(0, start_batch=99))


def test_augmentation_is_a_crop_of_the_padded_image_maybe_flipped() -> None:
    split = _tiny_splits().train
    loader = _loader(split, augment=True, shuffle=False, batch_size=16, mean=(0, 0, 0),
                     std=(1 / 255, 1 / 255, 1 / 255))  # identity normalisation: raw 0..255
    augmented, _ = next(loader.epoch(0))
    originals = split.images[:16].float()
    pad = 1  # image_size 8 // 8
    padded = F.pad(originals, (pad, pad, pad, pad))
    changed = 0
    for image, original, padded_image in zip(augmented, originals, padded, strict=True):
        candidates = [padded_image[:, dy : dy + 8, dx : dx + 8]
                      for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        candidates += [candidate.flip(-1) for candidate in candidates]
        assert any(torch.equal(image, candidate) for candidate in candidates)
        changed += int(not torch.equal(image, original))
    assert changed > 8  # 17 of 18 (shift, flip) choices change the image
    again, _ = next(loader.epoch(0))
    assert torch.equal(augmented, again)  # a pure function of (seed, epoch, batch)


def test_loader_accepts_grayscale_views_and_rejects_bad_options() -> None:
    gray = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(10, dtype=torch.int64)
    split = TensorSplit(images=gray.expand(-1, 3, -1, -1), labels=labels)
    images, _ = next(_loader(split, batch_size=4, shuffle=False).epoch(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    naive = (gray[:4].float().repeat(1, 3, 1, 1) / 255 - mean) / std
    assert torch.allclose(images, naive, atol=1e-5)
    with pytest.raises(InputError, match="batch_size"):
        _loader(split, batch_size=0)
    with pytest.raises(InputError, match="max_batches"):
        _loader(split, max_batches=0)


# ----------------------------------------------------------------------------- Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format of LeCun's MNIST files: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _write_fake_fashion(folder: Path, gz: bool, per_class: int = 3, shade: int = 0) -> np.ndarray:
    """Tiny Fashion-MNIST files; returns the test images (N, 28, 28)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(RNG_SEED + shade)
    suffix = ".gz" if gz else ""
    test_images = None
    for prefix, count in (("train", per_class * 10), ("t10k", 10)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = shade
        labels = np.arange(count, dtype=np.uint8) % 10
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        if prefix == "t10k":
            test_images = images
    assert test_images is not None
    return test_images


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide Debian's Fashion-MNIST and $GRADPROBE_DATA so only the test's files are found."""
    monkeypatch.setattr(torchvision_sets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.delenv("GRADPROBE_DATA", raising=False)


@pytest.mark.usefixtures("no_system_data")
@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw"])
def test_fashion_mnist_from_data_root(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    folder = root if layout == "flat-gz" else root / "FashionMNIST" / "raw"
    test_images = _write_fake_fashion(folder, gz=layout == "flat-gz")
    splits = load_dataset("fashion-mnist", image_size=16, data_root=str(root),
                          cache_dir=tmp_path / "cache", seed=0)
    assert splits.classes[:2] == ["T-shirt/top", "Trouser"] and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 10, 10)
    assert torch.bincount(splits.val.labels).tolist() == [1] * 10  # stratified
    assert splits.test.images.shape == (10, 3, 16, 16)
    # naive reference for the official test set: resize one channel, replicate it
    expected = F.interpolate(torch.from_numpy(test_images).float().unsqueeze(1), size=(16, 16),
                             mode="bilinear", antialias=True, align_corners=False)
    expected = expected.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    assert torch.equal(splits.test.images, expected)
    assert splits.info["source"] == str(folder)


@pytest.mark.usefixtures("no_system_data")
def test_fashion_mnist_data_root_before_environment(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fake_fashion(tmp_path / "env", gz=True, shade=11)
    _write_fake_fashion(tmp_path / "arg", gz=True, shade=22)
    monkeypatch.setenv("GRADPROBE_DATA", str(tmp_path / "env"))
    from_env = load_dataset("fashion-mnist", image_size=28, cache_dir=tmp_path / "cache")
    from_arg = load_dataset("fashion-mnist", image_size=28, data_root=str(tmp_path / "arg"),
                            cache_dir=tmp_path / "cache")
    assert int(from_env.test.images[0, 0, 0, 0]) == 11
    assert int(from_arg.test.images[0, 0, 0, 0]) == 22


@pytest.mark.usefixtures("no_system_data")
def test_fashion_mnist_missing_offline_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_dataset("fashion-mnist", data_root=str(tmp_path / "empty"), cache_dir=tmp_path)
    message = str(error.value)
    for needle in ("dataset-fashion-mnist", "--download", "--data-root", "$GRADPROBE_DATA"):
        assert needle in message


@pytest.mark.skipif(not (torchvision_sets.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
                    .is_file(), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADPROBE_DATA", raising=False)
    splits = load_dataset("fashion-mnist", image_size=32, max_train_images=200,
                          cache_dir=tmp_path / "cache", seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (200, 10590, 10000)
    assert torch.bincount(splits.train.labels).tolist() == [20] * 10
    assert splits.info["source"] == str(torchvision_sets.DEBIAN_FASHION_MNIST)
    # independent reference: the official file, parsed here with gzip and numpy
    with gzip.open(torchvision_sets.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        official_test_labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    assert splits.test.labels.tolist() == official_test_labels.tolist()
    assert torch.equal(splits.test.images[:, 0], splits.test.images[:, 2])


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def _write_fake_cifar(root: Path, per_batch: int = 10) -> np.ndarray:
    """A cifar-10-batches-py tree in torchvision's exact pickle format; returns test rows."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(RNG_SEED)
    rows = np.empty(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)  # (N, 3072) CHW
        entry = {"batch_label": name, "labels": [i % 10 for i in range(per_batch)],
                 "data": rows, "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        with open(base / name, "wb") as handle:
            pickle.dump(entry, handle)
    meta = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    with open(base / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle)
    return rows  # the test batch, written last


@pytest.fixture
def cifar_integrity_by_existence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake files cannot match CIFAR-10's md5 sums: let torchvision's integrity check test
    existence only; everything else (pickle loading, reshaping, meta) is torchvision's code."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda path, md5=None: os.path.isfile(path))


@pytest.mark.usefixtures("cifar_integrity_by_existence")
def test_cifar10_from_fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADPROBE_DATA", raising=False)
    test_rows = _write_fake_cifar(tmp_path / "data")
    splits = load_dataset("cifar10", image_size=32, data_root=str(tmp_path / "data"), seed=0)
    assert splits.classes == CIFAR_CLASSES
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 10)
    expected = torch.from_numpy(test_rows.reshape(-1, 3, 32, 32))  # CIFAR rows are CHW
    assert torch.equal(splits.test.images, expected)
    assert splits.test.labels.tolist() == [i % 10 for i in range(10)]
    # the folder itself is accepted too, and resizing is the antialiased bilinear one
    small = load_dataset("cifar10", image_size=16,
                         data_root=str(tmp_path / "data" / "cifar-10-batches-py"))
    reference = F.interpolate(expected.float(), size=(16, 16), mode="bilinear",
                              antialias=True, align_corners=False).round().to(torch.uint8)
    assert torch.equal(small.test.images, reference)


def test_cifar10_corrupt_files_are_an_input_error(tmp_path: Path) -> None:
    _write_fake_cifar(tmp_path / "data")  # md5 sums do not match the real ones
    with pytest.raises(InputError, match="could not load cifar10"):
        load_dataset("cifar10", data_root=str(tmp_path / "data"))


def test_cifar10_missing_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADPROBE_DATA", raising=False)
    with pytest.raises(InputError) as error:
        load_dataset("cifar10", data_root=str(tmp_path))
    assert "--download" in str(error.value) and "cifar-10-batches-py" in str(error.value)


# ----------------------------------------------------------------------------- config


def test_load_dataset_from_config_matches_keywords() -> None:
    from gradprobe.config import DataConfig

    config = DataConfig(dataset="synthetic", image_size=8, images_per_class=10, seed=4,
                        max_train_images=12)
    from_config = load_dataset_from_config(config)
    direct = load_dataset("synthetic", image_size=8, images_per_class=10, seed=4,
                          max_train_images=12)
    assert from_config.fingerprint == direct.fingerprint
    assert len(from_config.train) == 12


@pytest.mark.usefixtures("no_system_data")
def test_max_images_caps_every_official_part(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_fake_fashion(root, gz=True, per_class=20)  # 200 train, 10 test
    splits = load_dataset("fashion-mnist", image_size=8, data_root=str(root),
                          cache_dir=tmp_path / "cache", seed=0, max_images=100)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (70, 15, 10)  # test: all
    assert torch.bincount(splits.val.labels, minlength=10).min() >= 1  # proportions kept
    again = load_dataset("fashion-mnist", image_size=8, data_root=str(root),
                         cache_dir=tmp_path / "cache", seed=0, max_images=100)
    assert torch.equal(splits.train.images, again.train.images)
    with pytest.raises(InputError, match=r"max_images=40 leaves a split .* at least 67"):
        load_dataset("fashion-mnist", image_size=8, data_root=str(root),
                     cache_dir=tmp_path / "cache", seed=0, max_images=40)


def test_max_images_caps_a_pool_before_the_split() -> None:
    full = load_dataset("synthetic", image_size=8, images_per_class=40, num_classes=3)
    capped = load_dataset("synthetic", image_size=8, images_per_class=40, num_classes=3,
                          max_images=30)
    assert len(capped.train) + len(capped.val) + len(capped.test) == 30
    for part in (capped.train, capped.val, capped.test):
        assert torch.bincount(part.labels, minlength=3).tolist() == [len(part) // 3] * 3
    assert len(full.train) == 84
    with pytest.raises(InputError, match="max_images=2 is smaller than the number of classes"):
        load_dataset("synthetic", image_size=8, images_per_class=40, num_classes=3,
                     max_images=2)
