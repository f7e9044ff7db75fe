"""Datasets as normalised tensors, found offline where possible, and class-balanced subsets.

FashionMNIST is searched, in order, in: the ``root`` you pass; ``$DCPRIVACY_DATA``; Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), from which a
torchvision-compatible copy is prepared in the cache; the cache (``~/.cache/dcprivacy``); and last
torchvision's download, when the network allows. CIFAR-10 has no Debian package: it comes from
``root``, ``$DCPRIVACY_DATA``, the cache, or torchvision's download.

Files are read by torchvision's own dataset classes; what this module adds is the search, clear
errors, normalisation and the subsets.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

DATASETS = ("fashionmnist", "cifar10")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
EXPECTED_SHAPES = {"fashionmnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


class DataNotFoundError(FileNotFoundError):
    """The dataset is in none of the places searched; the message says how to get it."""


class DataCorruptError(RuntimeError):
    """A dataset file exists but cannot be read (truncated, wrong format); the message names it."""


@dataclass
class Dataset:
    """Normalised train/test tensors, with what is needed to undo the normalisation."""
    name: str
    train_x: torch.Tensor  # [N, C, H, W] float32, normalised per channel
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    source: str = ""  # where the files were found
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def im_size(self) -> int:
        return self.train_x.shape[-1]

    def to(self, device) -> "Dataset":
        return Dataset(self.name, self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                       self.test_y.to(device), self.mean, self.std, self.classes, self.source, self.extra)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to pixel values in [0, 1] (clipped), for showing images."""
        m = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x * s + m).clamp(0, 1)


def cache_dir() -> Path:
    """Where prepared copies live: ``$DCPRIVACY_DATA`` if set, else ``~/.cache/dcprivacy``."""
    env = os.environ.get("DCPRIVACY_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dcprivacy"


def _candidates(name: str, root) -> list[tuple[str, Path]]:
    """(label, folder) pairs searched, in order; each folder holds torchvision's layout."""
    out = []
    if root is not None:
        out.append(("root argument", Path(root).expanduser()))
    if os.environ.get("DCPRIVACY_DATA"):
        out.append(("$DCPRIVACY_DATA", Path(os.environ["DCPRIVACY_DATA"]).expanduser()))
    if name == "fashionmnist":
        out.append(("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST))
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dcprivacy"
    if all(p != default_cache for _, p in out):
        out.append(("cache", default_cache))
    return out


def _fashion_raw(folder: Path) -> Path:
    return folder / "FashionMNIST" / "raw"


def _has_fashion(folder: Path) -> bool:
    return all((_fashion_raw(folder) / f).is_file() for f in FASHION_FILES)


def _has_debian_fashion(folder: Path) -> bool:
    return all((folder / f"{f}.gz").is_file() for f in FASHION_FILES)


def _has_cifar(folder: Path) -> bool:
    return all((folder / "cifar-10-batches-py" / f).is_file() for f in CIFAR_FILES)


def prepare_fashion_from_debian(src: Path = DEBIAN_FASHION_MNIST, dest: Path | None = None) -> Path:
    """Decompress Debian's ``*.gz`` files into torchvision's layout under ``dest`` (the cache)."""
    dest = cache_dir() if dest is None else Path(dest)
    raw = _fashion_raw(dest)
    raw.mkdir(parents=True, exist_ok=True)
    for f in FASHION_FILES:
        target = raw / f
        if target.is_file():
            continue
        tmp = target.with_suffix(".part")
        try:
            with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:
            tmp.unlink(missing_ok=True)
            raise DataCorruptError(f"could not decompress {src / (f + '.gz')}: {e}. Reinstall it with "
                                   f"`apt-get install --reinstall dataset-fashion-mnist`.") from e
        tmp.rename(target)
    return dest


def _fix_hint(name: str) -> str:
    if name == "fashionmnist":
        return ("Fix: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, no internet needed), or run "
                "`python -m dcprivacy data --download` where the internet is reachable, or put torchvision's "
                "FashionMNIST/raw/ files under $DCPRIVACY_DATA.")
    return ("Fix: run `python -m dcprivacy data --download` where the internet is reachable (Colab, a laptop), "
            "or put torchvision's cifar-10-batches-py/ folder under $DCPRIVACY_DATA.")


def locate(name: str, root=None, download: bool | None = None) -> tuple[Path, str]:
    """Find (or prepare, or download) ``name``; return (torchvision root folder, description)."""
    name = _check_name(name)
    searched = []
    for label, folder in _candidates(name, root):
        if name == "fashionmnist":
            if _has_fashion(folder):
                return folder, f"{label}: {folder}"
            if _has_debian_fashion(folder):
                dest = prepare_fashion_from_debian(folder)
                return dest, f"{label}: {folder} (read through a prepared copy in the dcprivacy cache)"
            searched.append(f"  - {label}: {_fashion_raw(folder) if label != 'Debian package dataset-fashion-mnist' else folder}")
        else:
            if _has_cifar(folder):
                return folder, f"{label}: {folder}"
            searched.append(f"  - {label}: {folder / 'cifar-10-batches-py'}")
    if download is not False:
        dest = cache_dir()
        try:
            _torchvision_class(name)(str(dest), train=True, download=True)
            _torchvision_class(name)(str(dest), train=False, download=True)
            return dest, f"downloaded by torchvision into {dest}"
        except Exception as e:  # no network: fall through to the clear error
            searched.append(f"  - torchvision download into {dest}: failed ({type(e).__name__}: {e})")
    else:
        searched.append("  - torchvision download: not tried (download=False)")
    raise DataNotFoundError(f"{name} was not found. Places searched, in order:\n" + "\n".join(searched)
                            + "\n" + _fix_hint(name))


def _check_name(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"dataset {name!r}: allowed values are {', '.join(DATASETS)}")
    return key


class _CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader; file presence is checked here, content when it is read
    (the md5 check of the full release would reject the small test files written in its format)."""

    def _check_integrity(self) -> bool:
        return _has_cifar(Path(self.root))

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _torchvision_class(name: str):
    return torchvision.datasets.FashionMNIST if name == "fashionmnist" else _CIFAR10


def _read(name: str, folder: Path, train: bool):
    try:
        ds = _torchvision_class(name)(str(folder), train=train, download=False)
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
        targets = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    except Exception as e:
        files = _fashion_raw(folder) if name == "fashionmnist" else folder / "cifar-10-batches-py"
        raise DataCorruptError(
            f"{name} files in {files} could not be read ({type(e).__name__}: {e}). They are probably "
            f"truncated or not in the expected format: delete them and run `python -m dcprivacy data` "
            f"again (or reinstall the source). " + _fix_hint(name)) from e
    if data.dim() == 3:
        data = data.unsqueeze(1)  # [N, H, W] → [N, 1, H, W]
    else:
        data = data.permute(0, 3, 1, 2)  # CIFAR: [N, H, W, C] → [N, C, H, W]
    shape, k = EXPECTED_SHAPES[name]
    if tuple(data.shape[1:]) != shape or len(targets) != len(data) or (len(targets) and int(targets.max()) >= k):
        raise DataCorruptError(f"{name} in {folder}: unexpected contents (images {tuple(data.shape)}, "
                               f"{len(targets)} labels). " + _fix_hint(name))
    return data, targets, tuple(ds.classes)


def load_dataset(name: str = "fashionmnist", root=None, download: bool | None = None,
                 device: torch.device | str = "cpu") -> Dataset:
    """Train/test tensors of ``name``, normalised by the training set's per-channel mean and std.

    ``download=None`` downloads only when the dataset is nowhere on disk; ``False`` never does.
    """
    key = _check_name(name)
    folder, source = locate(key, root, download)
    tr_x, tr_y, classes = _read(key, folder, True)
    te_x, te_y, _ = _read(key, folder, False)
    tr = tr_x.float().div_(255)
    te = te_x.float().div_(255)
    mean = tr.mean(dim=(0, 2, 3))
    std = tr.std(dim=(0, 2, 3))
    tr = (tr - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    te = (te - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return Dataset(key, tr.to(device), tr_y.to(device), te.to(device), te_y.to(device),
                   tuple(mean.tolist()), tuple(std.tolist()), classes, source)


def class_balanced_subset(labels: torch.Tensor, per_class: int, *, seed: int = 0,
                          num_classes: int | None = None) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class (sorted by class, then at random).

    Raises if a class has fewer than ``per_class`` examples.
    """
    from . import checks
    labels = checks.labels(labels, "labels").cpu()
    if per_class < 0:
        raise ValueError(f"per_class={per_class}: must be ≥ 0")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(k):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            raise ValueError(f"per_class={per_class}: class {c} has only {len(idx)} examples")
        out.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(out)


def describe_sources() -> list[dict]:
    """For ``python -m dcprivacy data``: where each dataset is, or how to get it (no download)."""
    rows = []
    for name in DATASETS:
        try:
            _, source = locate(name, download=False)
            rows.append({"dataset": name, "found": True, "where": source})
        except DataNotFoundError as e:
            rows.append({"dataset": name, "found": False, "where": str(e)})
    return rows
