"""Small archives in CIFAR-10's own format, written by the tests (the real data is never needed).

The official ``cifar-10-batches-py/`` holds pickles (protocol 2, Python 2) of dicts: each of
``data_batch_1`` … ``data_batch_5`` and ``test_batch`` has ``data`` (uint8 [N, 3072]: the red, green and
blue planes of 32×32 images), ``labels`` (N ints), ``batch_label`` and ``filenames``; ``batches.meta``
has ``label_names``, ``num_cases_per_batch`` and ``num_vis``. :func:`write_archive` writes the same with
Python 3 at protocol 2 (numpy arrays then name ``numpy._core.multiarray._reconstruct`` and wrap their
bytes in ``_codecs.encode``); :func:`python2_pickle` writes a batch opcode by opcode as Python 2's
cPickle did for the official files (``numpy.core.multiarray._reconstruct``, byte strings decoded as
latin-1), so that both kinds go through the package's reader.

The images are learnable: each class has a smooth colour pattern of its own, plus noise.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 3072] rows (R, G, B planes): class c's 4×4 colour pattern upsampled to 32×32, plus noise."""
    protos = np.random.default_rng(1234).normal(size=(10, 3, 4, 4))
    big = protos.repeat(8, axis=2).repeat(8, axis=3)  # [10, 3, 32, 32]
    x = 128 + 50 * big[labels] + 40 * rng.normal(size=(len(labels), 3, 32, 32))
    return np.clip(x, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def write_archive(root: Path, per_class: int = 20, test_per_class: int = 4, seed: int = 0,
                  truncate: str | None = None) -> Path:
    """``root/cifar-10-batches-py/`` with ``10·per_class`` training images (every class equally often, in
    5 batches) and ``10·test_per_class`` test images; ``truncate``: a file to cut to a third."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.repeat(np.arange(10), per_class))
    test = rng.permutation(np.repeat(np.arange(10), test_per_class))
    parts = {f"data_batch_{i + 1}": part for i, part in enumerate(np.array_split(train, 5))}
    parts["test_batch"] = test
    for name, labels in parts.items():
        batch = {"batch_label": f"{name} of 5" if name != "test_batch" else "testing batch 1 of 1",
                 "labels": labels.tolist(), "data": images(labels, rng),
                 "filenames": [f"synthetic_{name}_{i}.png" for i in range(len(labels))]}
        blob = pickle.dumps(batch, protocol=2)
        (folder / name).write_bytes(blob[: len(blob) // 3] if truncate == name else blob)
    meta = pickle.dumps({"label_names": CLASSES, "num_cases_per_batch": len(parts["data_batch_1"]),
                         "num_vis": 3072}, protocol=2)
    (folder / "batches.meta").write_bytes(meta[: len(meta) // 3] if truncate == "batches.meta" else meta)
    return folder


def _string(b: bytes) -> bytes:
    """Python 2's str at protocol 2: SHORT_BINSTRING or BINSTRING."""
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def python2_pickle(data: np.ndarray, labels: list[int], batch_label: str = "training batch 1 of 5") -> bytes:
    """A batch as the official files hold it, opcode by opcode (what Python 2's cPickle wrote for a dict
    of a numpy uint8 array, a list of ints and strings)."""
    assert data.dtype == np.uint8 and data.ndim == 2
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85" + _string(b"b")
             + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
             + b"(" + _int(1) + _int(data.shape[0]) + _int(data.shape[1]) + b"\x86"  # (1, shape, ...
             + b"cnumpy\ndtype\n" + _string(b"u1") + _int(0) + _int(1) + b"\x87R"  # dtype('u1', 0, 1)
             + b"(" + _int(3) + _string(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"  # its state
             + b"\x89" + _string(data.tobytes()) + b"tb")  # not Fortran, the raw bytes
    items = (_string(b"data") + array
             + _string(b"labels") + b"](" + b"".join(_int(v) for v in labels) + b"e"
             + _string(b"batch_label") + _string(batch_label.encode())
             + _string(b"filenames") + b"](" + b"".join(_string(f"f{i}.png".encode()) for i in range(len(labels)))
             + b"e")
    return b"\x80\x02}(" + items + b"u."
