"""Fashion-MNIST and CIFAR-10 through torchvision's own dataset classes.

torchvision's classes do the file parsing (and the download when asked); we take their decoded
arrays (`.data`, `.targets`) directly rather than going image by image through `__getitem__`.

Where the files are looked for, in order: `data_root`, `$GRADPROBE_DATA`, and for Fashion-MNIST
Debian's `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`). A folder may hold
torchvision's layout (`FashionMNIST/raw/...`, `cifar-10-batches-py/...`) or, for Fashion-MNIST,
the four original files directly (`train-images-idx3-ubyte.gz`, ...). torchvision 0.29's
`FashionMNIST` reads only uncompressed files from `<root>/FashionMNIST/raw`, so gzipped or
read-only copies are staged (decompressed once) under `<cache_dir>/torchvision/`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torchvision import datasets

from gradprobe.errors import InputError

DATA_ENV = "GRADPROBE_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
# The hint names the flags of both commands: `study` has --data-root but no --download.
DOWNLOAD_HINT = ("allow the download (`gradprobe train --download`; in a study spec "
                 "`data: {download: true}`)")


@dataclass(frozen=True)
class OfficialSets:
    """A torchvision set's official train and test splits at native resolution."""

    train_images: torch.Tensor  # uint8 (N, C, H, W), C = 1 (Fashion-MNIST) or 3 (CIFAR-10)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str  # the root torchvision read from

    def identity(self, kind: str) -> dict[str, object]:
        """What names this data in the split fingerprint: kind, sizes, a hash of the labels."""
        digest = hashlib.sha256()
        digest.update(self.train_labels.numpy().astype("<i8").tobytes())
        digest.update(self.test_labels.numpy().astype("<i8").tobytes())
        return {"kind": kind, "train": len(self.train_labels), "test": len(self.test_labels),
                "labels_sha256": digest.hexdigest()}


def default_download_root() -> Path:
    """Where `download=True` puts a set when neither `data_root` nor $GRADPROBE_DATA is given."""
    return Path.home() / ".cache" / "gradprobe" / "datasets"


def _search_dirs(data_root: str | None, extra: tuple[Path, ...] = ()) -> list[tuple[str, Path]]:
    """(description, folder) in the documented search order."""
    places: list[tuple[str, Path]] = []
    if data_root:
        places.append(("--data-root", Path(data_root).expanduser()))
    if os.environ.get(DATA_ENV):
        places.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    places.extend(("Debian", path) for path in extra)
    return places


def _describe(places: list[tuple[str, Path]]) -> str:
    return ", ".join(f"{where} {path}" for where, path in places) or "nowhere"


def _fashion_files(folder: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST files in `folder` (each plain or .gz), or None if any is missing."""
    found: dict[str, Path] = {}
    for name in FASHION_FILES:
        plain, packed = folder / name, folder / f"{name}.gz"
        if plain.is_file():
            found[name] = plain
        elif packed.is_file():
            found[name] = packed
        else:
            return None
    return found


def _stage_fashion(files: dict[str, Path], cache_dir: Path) -> Path:
    """A torchvision root whose FashionMNIST/raw holds the uncompressed files (made once)."""
    digest = hashlib.sha256()
    for _, path in sorted(files.items()):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    root = cache_dir / "torchvision" / f"fashion-mnist-{digest.hexdigest()[:16]}"
    raw = root / "FashionMNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            target = raw / name
            if target.is_file():
                continue
            handle, temporary = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")
            os.close(handle)
            try:
                if source.suffix == ".gz":  # gzip checks the CRC: a truncated file raises
                    with gzip.open(source, "rb") as reader, open(temporary, "wb") as writer:
                        shutil.copyfileobj(reader, writer, length=1 << 20)
                else:
                    shutil.copyfile(source, temporary)
                os.replace(temporary, target)  # atomic: a reader never sees half a file
            finally:
                Path(temporary).unlink(missing_ok=True)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise InputError(
            f"could not prepare Fashion-MNIST from {sorted(str(p) for p in files.values())} in "
            f"'{raw}': {error}. Fix: check the files are complete (reinstall {DEBIAN_PACKAGE} or "
            f"{DOWNLOAD_HINT}) and that the cache folder ($GRADPROBE_CACHE) is "
            "writable."
        ) from error
    return root


def _find_fashion(data_root: str | None) -> tuple[Path, Path, dict[str, Path]] | None:
    """(search folder, folder holding the files, the files) of Fashion-MNIST found offline."""
    for _, folder in _search_dirs(data_root, (DEBIAN_FASHION_MNIST,)):
        for location in (folder / "FashionMNIST" / "raw", folder, folder / "fashion-mnist"):
            files = _fashion_files(location)
            if files is not None:
                return folder, location, files
    return None


def _fashion_root(data_root: str | None, cache_dir: Path) -> tuple[Path, Path] | None:
    """(torchvision root, folder the files came from) for Fashion-MNIST found offline, or None."""
    found = _find_fashion(data_root)
    if found is None:
        return None
    folder, location, files = found
    if location == folder / "FashionMNIST" / "raw" and all(p.suffix != ".gz"
                                                          for p in files.values()):
        return folder, location  # already torchvision's layout, nothing to stage
    return _stage_fashion(files, cache_dir), location


def check_available(kind: str, data_root: str | None, download: bool) -> None:
    """Raise the loader's own "not found" `InputError` unless `kind` (fashion-mnist, cifar10)
    is found offline or may be downloaded; reads no file and writes none (a preflight)."""
    if data_root:
        root = Path(data_root).expanduser()
        if root.exists() and not root.is_dir():
            raise InputError(f"the data root '{root}' (--data-root; data.data_root in a spec) "
                             "is a file, not a directory. Fix: point it at the folder that "
                             f"holds the {kind} files.")
    if download:
        return
    if kind == "fashion-mnist" and _find_fashion(data_root) is None:
        raise _fashion_not_found(data_root)
    if kind == "cifar10" and _cifar_root(data_root) is None:
        raise _cifar_not_found(data_root)


def _fashion_not_found(data_root: str | None) -> InputError:
    return _not_found(
        "fashion-mnist", _search_dirs(data_root, (DEBIAN_FASHION_MNIST,)),
        "the four Fashion-MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
    )


def _cifar_not_found(data_root: str | None) -> InputError:
    return _not_found("cifar10", _search_dirs(data_root),
                      f"{CIFAR_FOLDER}/ (data_batch_1..5, test_batch, batches.meta)")


def _not_found(kind: str, places: list[tuple[str, Path]], layout: str) -> InputError:
    apt = (f" install the Debian package `{DEBIAN_PACKAGE}` (apt-get install {DEBIAN_PACKAGE}),"
           if kind == "fashion-mnist" else "")
    return InputError(
        f"{kind} was not found offline (looked in: {_describe(places)}) and downloading is off. "
        f"Fix:{apt} point --data-root or ${DATA_ENV} at a folder holding {layout}, or "
        f"{DOWNLOAD_HINT}."
    )


def _download_root(data_root: str | None) -> Path:
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return default_download_root()


def _open(kind: str, factory: Callable[..., datasets.VisionDataset], root: Path,
          download: bool) -> tuple[datasets.VisionDataset, datasets.VisionDataset]:
    """torchvision's train and test sets, with its errors turned into `InputError`."""
    try:
        return (factory(root=str(root), train=True, download=download),
                factory(root=str(root), train=False, download=download))
    except (RuntimeError, OSError, URLError, EOFError, ValueError, AssertionError) as error:
        # torchvision: RuntimeError for missing/corrupt files (md5 mismatch) and failed
        # downloads; parsing asserts on a malformed idx file; pickle raises on a broken batch.
        raise InputError(
            f"torchvision could not load {kind} from '{root}': {error}. Fix: replace the files "
            f"(they may be incomplete or corrupt), or {DOWNLOAD_HINT} to fetch a fresh copy."
        ) from error


def load_fashion_mnist(data_root: str | None, download: bool, cache_dir: Path) -> OfficialSets:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test 28x28 grayscale images."""
    found = _fashion_root(data_root, cache_dir)
    if found is not None:
        root, origin = found
    elif download:
        root = origin = _download_root(data_root)
    else:
        raise _fashion_not_found(data_root)
    train, test = _open("fashion-mnist", datasets.FashionMNIST, root, download)
    return OfficialSets(
        train_images=train.data.unsqueeze(1).contiguous(),  # (N, 1, 28, 28)
        train_labels=train.targets.to(torch.int64),
        test_images=test.data.unsqueeze(1).contiguous(),
        test_labels=test.targets.to(torch.int64),
        classes=list(train.classes),
        source=str(origin),
    )


def _cifar_root(data_root: str | None) -> Path | None:
    for _, folder in _search_dirs(data_root):
        if (folder / CIFAR_FOLDER).is_dir():
            return folder
        if folder.name == CIFAR_FOLDER and folder.is_dir():
            return folder.parent
    return None


def _hwc_to_chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def load_cifar10(data_root: str | None, download: bool) -> OfficialSets:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train and 10,000 test 32x32 colour images."""
    root = _cifar_root(data_root)
    if root is None:
        if not download:
            raise _cifar_not_found(data_root)
        root = _download_root(data_root)
    train, test = _open("cifar10", datasets.CIFAR10, root, download)
    return OfficialSets(
        train_images=_hwc_to_chw(train.data),  # torchvision keeps (N, 32, 32, 3) uint8
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_hwc_to_chw(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        classes=list(train.classes),
        source=str(root),
    )
