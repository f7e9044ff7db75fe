"""Datasets as normalised tensors, found offline where possible, and class-balanced subsets.

Which dataset the book runs on is one setting, :func:`dataset_name` (``DCPRIVACY_DATASET``:
``fashionmnist``, the default, or ``cifar10``); every chapter loads ``load_dataset(dataset_name())``.

FashionMNIST is searched, in order, in: the ``root`` you pass; ``$DCPRIVACY_DATA``; Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), from which a
torchvision-compatible copy is prepared in the cache; the cache (``~/.cache/dcprivacy``); and last
torchvision's download, when the network allows (``DCPRIVACY_DOWNLOAD=0`` forbids it). CIFAR-10 has no
Debian package: it comes from ``root``, ``$DCPRIVACY_DATA``, the cache, or torchvision's download.

FashionMNIST's files (plain IDX arrays) are read by torchvision's own class. CIFAR-10's batch files are
Python pickles, which could run code when unpickled by ``pickle.load``; they are read here by
:func:`read_cifar_batch`, an unpickler that admits only what the format holds (see there), and their
MD5 digests are compared with the official release's (recorded as ``Dataset.extra["official_files"]``).
What this module adds is the search, clear errors, normalisation and the subsets.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATASETS = ("fashionmnist", "cifar10")
DEFAULT_DATASET = "fashionmnist"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = CIFAR_TRAIN_FILES + ("test_batch", "batches.meta")


@dataclass(frozen=True)
class DatasetInfo:
    """What the book needs to know of a dataset before loading it (the cost model, the profiles)."""
    name: str
    title: str  # as prose names it
    channels: int
    im_size: int
    num_classes: int
    train_per_class: int  # every class has as many training images
    test_size: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.im_size, self.im_size)

    @property
    def dim(self) -> int:
        """d: the pixels of one image, as a vector."""
        return self.channels * self.im_size * self.im_size

    @property
    def train_size(self) -> int:
        return self.num_classes * self.train_per_class


INFO = {
    "fashionmnist": DatasetInfo("fashionmnist", "FashionMNIST", 1, 28, 10, 6000, 10000),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", 3, 32, 10, 5000, 10000),
}
EXPECTED_SHAPES = {k: (v.shape, v.num_classes) for k, v in INFO.items()}


def dataset_name() -> str:
    """The dataset every chapter runs on: ``DCPRIVACY_DATASET`` (``fashionmnist``, the default, or
    ``cifar10``; case, ``-`` and ``_`` are ignored). A bad value is refused in one line."""
    raw = os.environ.get("DCPRIVACY_DATASET", "").strip()
    if not raw:
        return DEFAULT_DATASET
    key = raw.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"DCPRIVACY_DATASET={raw!r}: allowed values are {', '.join(DATASETS)}")
    return key


def dataset_info(name: str | None = None) -> DatasetInfo:
    """:class:`DatasetInfo` of ``name`` (default: :func:`dataset_name`)."""
    return INFO[dataset_name() if name is None else _check_name(name)]


def download_allowed() -> bool:
    """Whether ``load_dataset(download=None)`` may download what is missing: yes unless
    ``DCPRIVACY_DOWNLOAD=0`` (CI and the tests set it, so that a missing dataset fails at once)."""
    return os.environ.get("DCPRIVACY_DOWNLOAD", "1").strip().lower() not in ("0", "no", "false", "off")


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
    return ("Fix: where the internet is reachable (Colab, a laptop) run `python -m dcprivacy data --download` "
            "(torchvision's download, 170 MB; a chapter run does it by itself unless DCPRIVACY_DOWNLOAD=0), or put "
            "the cifar-10-batches-py/ folder of the official archive under $DCPRIVACY_DATA.")


def locate(name: str, root=None, download: bool | None = None) -> tuple[Path, str]:
    """Find (or prepare, or download) ``name``; return (torchvision root folder, description).

    ``download``: ``True`` downloads what is missing, ``False`` never, ``None`` (default) unless
    ``DCPRIVACY_DOWNLOAD=0``. When the data is nowhere, :class:`DataNotFoundError` says, in one line, every
    place searched and how to get it."""
    name = _check_name(name)
    searched = []
    for label, folder in _candidates(name, root):
        if name == "fashionmnist":
            if _has_fashion(folder):
                return folder, f"{label}: {folder}"
            if _has_debian_fashion(folder):
                dest = prepare_fashion_from_debian(folder)
                return dest, f"{label}: {folder} (read through a prepared copy in the dcprivacy cache)"
            searched.append(f"{label}: {_fashion_raw(folder) if label != 'Debian package dataset-fashion-mnist' else folder}")
        else:
            if _has_cifar(folder):
                return folder, f"{label}: {folder}"
            searched.append(f"{label}: {folder / 'cifar-10-batches-py'}")
    if download is None:
        download = download_allowed()
        if not download:
            searched.append("torchvision download: not tried (DCPRIVACY_DOWNLOAD=0)")
    elif not download:
        searched.append("torchvision download: not tried (download=False)")
    if download:
        dest = cache_dir()
        try:
            _download(name, dest)
            return dest, f"downloaded by torchvision into {dest}"
        except Exception as e:  # no network: fall through to the clear error
            searched.append(f"torchvision download into {dest}: failed ({type(e).__name__}: {' '.join(str(e).split())})")
    raise DataNotFoundError(f"{name} was not found. Searched, in order: " + "; ".join(searched) + ". "
                            + _fix_hint(name))


def _download(name: str, dest: Path) -> None:
    import torchvision
    if name == "fashionmnist":
        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(dest), train=train, download=True)
        return
    # torchvision's archive, checked against its MD5, extracted; its dataset class is not used (it would
    # unpickle the files with pickle.load): the files are read by read_cifar_batch like any others
    from torchvision.datasets.utils import download_and_extract_archive
    c = torchvision.datasets.CIFAR10
    download_and_extract_archive(c.url, str(dest), filename=c.filename, md5=c.tgz_md5)
    if not _has_cifar(dest):
        raise DataCorruptError(f"the downloaded archive did not hold {', '.join(CIFAR_FILES)}")


def _check_name(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"dataset {name!r}: allowed values are {', '.join(DATASETS)}")
    return key


# --- CIFAR-10's batch files, read without running anything they hold ----------------------------------------
#
# Each file of cifar-10-batches-py/ is a pickle (protocol 2, written by Python 2) of a dict: a batch holds
# "data" (a numpy uint8 array [N, 3072]: each row the red, green and blue planes of a 32×32 image), "labels"
# (a list of N ints), "batch_label" (a string) and "filenames" (a list of strings); batches.meta holds
# "label_names" (ten strings), "num_cases_per_batch" and "num_vis" (ints). Unpickling the array calls three
# globals: numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), "b"), then numpy.dtype("u1", 0, 1),
# and sets both objects' state (BUILD). Python 2's strings arrive as str, decoded as latin-1; a file written by
# Python 3 at protocol 2 calls numpy._core.multiarray._reconstruct and wraps its bytes as
# _codecs.encode(text, "latin1"). The unpickler below resolves exactly these names, and to stand-ins: no numpy
# code runs on the file's bytes (the stand-ins check the state they are given and build the array with
# np.frombuffer); any other global (os.system, builtins.eval, ...) is refused before anything is called.

class _Frozen:
    """A global the unpickler hands out: shared by every read, so a file may not set its state (BUILD on it
    raises instead of changing it for the rest of the process)."""
    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refused: a CIFAR-10 file sets no state on {self!r}")


class _Allowed(_Frozen):
    """An allowed function, callable as itself, whose attributes a file cannot reach."""
    __slots__ = ("_f",)

    def __init__(self, f):
        self._f = f

    def __call__(self, *args):
        return self._f(*args)

    def __repr__(self) -> str:
        return self._f.__name__


class _NDArrayName(_Frozen):
    """``numpy.ndarray`` inside a CIFAR pickle: only an argument of ``_reconstruct`` (not callable)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NDArrayName()


class _DType:
    """``numpy.dtype("u1", 0, 1)`` and the state pickled with it: unsigned bytes, nothing else."""

    def __init__(self, spec):
        self.spec, self.ready = spec, False

    def __setstate__(self, state):
        # numpy's dtype state: (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4) and state[1] == "|"
                and state[2:5] == (None, None, None) and all(type(v) is int for v in state[5:8])
                and (len(state) == 8 or state[8] is None)):
            raise pickle.UnpicklingError(f"unexpected state of numpy.dtype('u1'): {_short(state)}")
        self.ready = True


def _dtype(spec, align=False, copy=True) -> _DType:
    spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
    if spec != "u1" or type(align) not in (bool, int) or type(copy) not in (bool, int) or {align, copy} - {0, 1}:
        raise pickle.UnpicklingError(f"refused numpy.dtype({_short(spec)}): CIFAR-10 images are unsigned bytes (u1)")
    return _DType(spec)


class _Array:
    """``numpy.ndarray`` rebuilt from its pickled state: (version, shape, dtype, Fortran order, raw bytes)."""
    __slots__ = ("value",)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError(f"unexpected state of a numpy array: {_short(state)}")
        shape, dtype, fortran, raw = state
        if isinstance(raw, str):  # Python 2's str, decoded as latin-1 by the unpickler: back to its bytes
            raw = raw.encode("latin1")
        if not (isinstance(shape, tuple) and 1 <= len(shape) <= 4 and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(dtype, _DType) and dtype.ready and fortran in (0, 1) and type(fortran) in (bool, int)
                and isinstance(raw, bytes) and len(raw) == int(np.prod(shape))):
            raise pickle.UnpicklingError(f"unexpected state of a numpy array: shape {_short(shape)}, "
                                         f"{type(raw).__name__} of {len(raw) if hasattr(raw, '__len__') else '?'} bytes")
        self.value = np.frombuffer(bytearray(raw), dtype=np.uint8).reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype, shape, dtype_code) -> _Array:
    if subtype is not _NDARRAY or shape != (0,) or dtype_code not in (b"b", "b"):
        raise pickle.UnpicklingError(f"refused numpy _reconstruct({_short(subtype)}, {_short(shape)}, "
                                     f"{_short(dtype_code)})")
    return _Array()


def _latin1(text, encoding="latin1") -> bytes:
    """``_codecs.encode(text, "latin1")``: how Python 3 pickles bytes at protocol 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode(…, {_short(encoding)})")
    return text.encode("latin1")


def _short(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


# (module, name) → what the unpickler gives for it: the whole allow-list
CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Allowed(_reconstruct),  # the official files (numpy 1.x names)
    ("numpy._core.multiarray", "_reconstruct"): _Allowed(_reconstruct),  # files written by numpy ≥ 2
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Allowed(_dtype),
    ("_codecs", "encode"): _Allowed(_latin1),  # bytes pickled by Python 3 at protocol 2
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10's batch files that resolves only :data:`CIFAR_PICKLE_GLOBALS` (to stand-ins)
    and no persistent ids: a file that names any other global is refused before anything is called."""

    def find_class(self, module, name):
        try:
            return CIFAR_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR-10 batch file holds only numpy byte arrays, lists, "
                f"strings and numbers") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id: CIFAR-10 batch files have none")


def _plain(obj, depth: int = 0):
    """The unpickled object with every array stand-in replaced by its numpy array; anything but dicts, lists,
    tuples, strings, bytes, numbers, None and arrays is refused."""
    if depth > 4:
        raise pickle.UnpicklingError("nested deeper than a CIFAR-10 batch file")
    if isinstance(obj, _Array):
        if not hasattr(obj, "value"):
            raise pickle.UnpicklingError("a numpy array without its data")
        return obj.value
    if isinstance(obj, dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if obj is None or type(obj) in (str, bytes, int, float, bool):
        return obj
    raise pickle.UnpicklingError(f"unexpected {type(obj).__name__} in a CIFAR-10 batch file")


def read_cifar_batch(path: str | Path) -> dict:
    """One file of ``cifar-10-batches-py/``, unpickled by :class:`CifarUnpickler` (latin-1 strings, as the
    official Python 2 files need) and checked: a batch (``data_batch_*``, ``test_batch``) must hold ``data``,
    uint8 [N, 3072], and ``labels``, N ints in 0…9; ``batches.meta`` ten ``label_names``. Raises
    :class:`DataCorruptError` naming the file otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _plain(CifarUnpickler(f, encoding="latin1").load())
        if not isinstance(obj, dict):
            raise ValueError(f"a {type(obj).__name__}, not a dict")
        if path.name == "batches.meta":
            names = obj.get("label_names")
            if not (isinstance(names, list) and len(names) == 10 and all(isinstance(n, str) for n in names)):
                raise ValueError(f"label_names {_short(names)}: expected ten strings")
            return obj
        x, labels = obj.get("data"), obj.get("labels")
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072):
            raise ValueError(f"data {_short(getattr(x, 'shape', x))}: expected a uint8 array [N, 3072]")
        if not (isinstance(labels, list) and len(labels) == len(x)
                and all(type(v) is int and 0 <= v < 10 for v in labels)):
            raise ValueError(f"labels: expected {len(x)} ints in 0…9")
        return obj
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, UnicodeError) as e:
        raise DataCorruptError(f"{path} could not be read ({type(e).__name__}: {' '.join(str(e).split())}): it is "
                               f"not a CIFAR-10 batch file as the official archive holds. Delete it and get the data "
                               f"again. " + _fix_hint("cifar10")) from e


def cifar_files_official(folder: str | Path) -> bool:
    """Whether every file of ``folder/cifar-10-batches-py`` has the official release's MD5 (as torchvision
    lists them). The files are read safely either way; this records which data a result came from."""
    import torchvision
    c = torchvision.datasets.CIFAR10
    expected = dict(c.train_list + c.test_list + [[c.meta["filename"], c.meta["md5"]]])
    base = Path(folder) / "cifar-10-batches-py"
    for name, md5 in expected.items():
        h = hashlib.md5(usedforsecurity=False)
        with open(base / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != md5:
            return False
    return True


def _read_cifar(folder: Path, train: bool):
    base = folder / "cifar-10-batches-py"
    batches = [read_cifar_batch(base / f) for f in (CIFAR_TRAIN_FILES if train else ("test_batch",))]
    data = torch.from_numpy(np.concatenate([b["data"] for b in batches])).view(-1, 3, 32, 32)  # R, G, B planes
    targets = torch.tensor([v for b in batches for v in b["labels"]], dtype=torch.long)
    classes = tuple(read_cifar_batch(base / "batches.meta")["label_names"])
    return data, targets, classes


def _read(name: str, folder: Path, train: bool):
    if name == "cifar10":
        data, targets, classes = _read_cifar(folder, train)
    else:
        import torchvision
        try:
            ds = torchvision.datasets.FashionMNIST(str(folder), train=train, download=False)
            data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
            targets = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
            classes = tuple(ds.classes)
        except Exception as e:
            raise DataCorruptError(
                f"{name} files in {_fashion_raw(folder)} could not be read ({type(e).__name__}: {e}). They are "
                f"probably truncated or not in the expected format: delete them and run `python -m dcprivacy data` "
                f"again (or reinstall the source). " + _fix_hint(name)) from e
        data = data.unsqueeze(1)  # [N, H, W] → [N, 1, H, W]
    shape, k = EXPECTED_SHAPES[name]
    if tuple(data.shape[1:]) != shape or len(targets) != len(data) or (len(targets) and int(targets.max()) >= k):
        raise DataCorruptError(f"{name} in {folder}: unexpected contents (images {tuple(data.shape)}, "
                               f"{len(targets)} labels). " + _fix_hint(name))
    return data, targets, classes


def load_dataset(name: str | None = None, root=None, download: bool | None = None,
                 device: torch.device | str = "cpu") -> Dataset:
    """Train/test tensors of ``name`` (default: :func:`dataset_name`), normalised by the training set's
    per-channel mean and std.

    ``download=None`` downloads only when the dataset is nowhere on disk (and ``DCPRIVACY_DOWNLOAD`` is not
    ``0``); ``False`` never does.
    """
    key = dataset_name() if name is None else _check_name(name)
    folder, source = locate(key, root, download)
    tr_x, tr_y, classes = _read(key, folder, True)
    te_x, te_y, _ = _read(key, folder, False)
    extra = {"official_files": cifar_files_official(folder)} if key == "cifar10" else {}
    tr = tr_x.float().div_(255)
    te = te_x.float().div_(255)
    mean = tr.mean(dim=(0, 2, 3))
    std = tr.std(dim=(0, 2, 3))
    tr = (tr - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    te = (te - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return Dataset(key, tr.to(device), tr_y.to(device), te.to(device), te_y.to(device),
                   tuple(mean.tolist()), tuple(std.tolist()), classes, source, extra)


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
