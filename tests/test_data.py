import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dcprivacy import data


def test_fashionmnist_loads_offline(fashion):
    assert fashion.train_x.shape == (60000, 1, 28, 28)
    assert fashion.test_x.shape == (10000, 1, 28, 28)
    assert fashion.train_x.dtype == torch.float32 and fashion.train_y.dtype == torch.int64
    assert torch.equal(torch.bincount(fashion.train_y), torch.full((10,), 6000))
    # normalised by the training set's own statistics
    assert abs(fashion.train_x.mean().item()) < 1e-3 and abs(fashion.train_x.std().item() - 1) < 1e-3
    assert 0.28 < fashion.mean[0] < 0.29 and 0.35 < fashion.std[0] < 0.36
    assert fashion.classes[0] == "T-shirt/top" and len(fashion.classes) == 10
    px = fashion.denormalize(fashion.train_x[:5])
    assert px.min() >= 0 and px.max() <= 1


def _write_cifar(root: Path, n_per_batch: int = 20, seed: int = 0, truncate: bool = False) -> Path:
    """Small files in the real CIFAR-10 format: pickled dicts of uint8 rows (R, G, B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "labels": rng.integers(0, 10, n_per_batch).tolist(),
                 "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"img_{i}.png" for i in range(n_per_batch)]}
        blob = pickle.dumps(batch, protocol=2)
        (folder / name).write_bytes(blob[: len(blob) // 3] if truncate and name == "data_batch_3" else blob)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_cases_per_batch": n_per_batch,
                                                        "num_vis": 3072}, protocol=2))
    return folder


def test_cifar10_loader_reads_real_format(tmp_path):
    _write_cifar(tmp_path)
    ds = data.load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.classes[0] == "airplane" and len(ds.mean) == 3
    # the first row's red plane is the first 1024 bytes of the first batch
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())["data"][0]
    red = torch.tensor(raw[:1024], dtype=torch.float32).view(32, 32) / 255
    restored = ds.train_x[0, 0] * ds.std[0] + ds.mean[0]
    assert torch.allclose(restored, red, atol=1e-5)


def test_missing_data_names_every_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_dataset("fashionmnist", root=tmp_path / "root", download=False)
    msg = str(err.value)
    for place in ("root argument", "$DCPRIVACY_DATA", "Debian package", "cache", str(tmp_path / "root")):
        assert place in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "python -m dcprivacy data --download" in msg
    with pytest.raises(data.DataNotFoundError, match="cifar-10-batches-py"):
        data.load_dataset("cifar10", download=False)


def test_missing_data_error_from_the_cli(tmp_path):
    import os
    import subprocess
    import sys
    env = dict(os.environ, DCPRIVACY_DATA=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "dcprivacy", "data"], capture_output=True, text=True, env=env)
    assert "cifar10" in out.stdout and "MISSING" in out.stdout and "python -m dcprivacy data --download" in out.stdout


def test_truncated_files_give_a_clear_error(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "c", truncate=True)
    with pytest.raises(data.DataCorruptError, match="could not be read"):
        data.load_dataset("cifar10", root=tmp_path / "c", download=False)
    # FashionMNIST: a truncated image file in torchvision's layout
    raw = tmp_path / "f" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    src = data.DEBIAN_FASHION_MNIST
    for f in data.FASHION_FILES:
        blob = gzip.decompress((src / f"{f}.gz").read_bytes()) if (src / f"{f}.gz").exists() else b"\0" * 64
        (raw / f).write_bytes(blob[:1000] if f.startswith("train-images") else blob)
    with pytest.raises(data.DataCorruptError, match="truncated"):
        data.load_dataset("fashionmnist", root=tmp_path / "f", download=False)


def test_corrupt_debian_archive(tmp_path, monkeypatch):
    deb = tmp_path / "deb"
    deb.mkdir()
    for f in data.FASHION_FILES:
        (deb / f"{f}.gz").write_bytes(gzip.compress(b"x" * 100)[:20])  # cut mid-stream
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "cache"))
    with pytest.raises(data.DataCorruptError, match="reinstall"):
        data.prepare_fashion_from_debian(deb, tmp_path / "cache")


def test_bad_dataset_name():
    with pytest.raises(ValueError, match="allowed values are fashionmnist, cifar10"):
        data.load_dataset("mnist")


def test_class_balanced_subset_is_balanced_and_seeded():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    idx = data.class_balanced_subset(labels, 7, seed=3)
    assert torch.equal(torch.bincount(labels[idx], minlength=10), torch.full((10,), 7))
    assert len(set(idx.tolist())) == 70
    assert torch.equal(idx, data.class_balanced_subset(labels, 7, seed=3))
    assert not torch.equal(idx, data.class_balanced_subset(labels, 7, seed=4))
    with pytest.raises(ValueError, match="only 30 examples"):
        data.class_balanced_subset(labels, 31)
