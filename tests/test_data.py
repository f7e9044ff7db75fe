import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_archive import images, python2_pickle, write_archive
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
    """Small files in the real CIFAR-10 format (tests/cifar_archive.py): 5·n_per_batch training images."""
    return write_archive(root, per_class=n_per_batch // 2, test_per_class=n_per_batch // 10, seed=seed,
                         truncate="data_batch_3" if truncate else None)


def test_cifar10_loader_reads_real_format(tmp_path):
    _write_cifar(tmp_path)
    ds = data.load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.classes[0] == "airplane" and len(ds.mean) == 3
    assert ds.extra == {"official_files": False}  # written here, not the official release
    assert torch.equal(torch.bincount(ds.train_y), torch.full((10,), 10))
    # the first row's red plane is the first 1024 bytes of the first batch (numpy's own unpickling, trusted here:
    # the file was written by this test)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())["data"][0]
    red = torch.tensor(raw[:1024], dtype=torch.float32).view(32, 32) / 255
    restored = ds.train_x[0, 0] * ds.std[0] + ds.mean[0]
    assert torch.allclose(restored, red, atol=1e-5)


def test_the_official_python2_format_reads_as_numpy_reads_it(tmp_path):
    """Batches written opcode by opcode as Python 2's cPickle wrote the official files (numpy.core.multiarray,
    latin-1 byte strings) give the arrays numpy's own unpickler gives."""
    folder = _write_cifar(tmp_path)
    rng = np.random.default_rng(1)
    for name in data.CIFAR_TRAIN_FILES + ("test_batch",):
        labels = rng.permutation(np.repeat(np.arange(10), 2)).tolist()
        (folder / name).write_bytes(python2_pickle(images(np.array(labels), rng), labels))
    for name in data.CIFAR_TRAIN_FILES + ("test_batch",):
        ours = data.read_cifar_batch(folder / name)
        theirs = pickle.loads((folder / name).read_bytes(), encoding="latin1")
        assert ours["data"].dtype == np.uint8 and np.array_equal(ours["data"], theirs["data"])
        assert ours["labels"] == theirs["labels"] and ours["filenames"] == theirs["filenames"]
    ds = data.load_dataset("cifar10", root=tmp_path, download=False)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)


class _System:
    """Unpickled by pickle.load, this runs a shell command (creates the marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


def _payloads(marker):
    """Crafted CIFAR-10 files: name → bytes. Each would create ``marker`` (or run numpy code on crafted state)
    if unpickled by pickle.load."""
    x = np.zeros((2, 3072), np.uint8)
    system = _System(marker)
    ndarray_obj = np.empty(1, dtype=object)
    ndarray_obj[0] = system
    return {
        "os.system, the whole file": pickle.dumps(system, protocol=2),
        "os.system, protocol 0": pickle.dumps(system, protocol=0),
        "os.system, protocol 5": pickle.dumps(system, protocol=5),
        "os.system as the labels": pickle.dumps({"data": x, "labels": system}, protocol=2),
        "builtins.eval in a list": pickle.dumps({"data": x, "labels": [0, _Eval(marker)]}, protocol=2),
        "a numpy object array": pickle.dumps({"data": ndarray_obj, "labels": [0]}, protocol=2),
        "_codecs.encode with another codec": pickle.dumps({"data": x, "labels": [0, 0]}, protocol=2).replace(
            b"latin1", b"rot_13"),
        "a persistent id": b"\x80\x02X\x01\x00\x00\x00aQ.",
        "numpy.load": b"\x80\x02cnumpy\nload\nX\x06\x00\x00\x00/dev/0\x85R.",
    }


def test_payload_fixture_is_live(tmp_path):
    """The payload runs when unpickled the unsafe way (what the old reader, pickle.load, did)."""
    marker = tmp_path / "PWNED"
    pickle.loads(_payloads(marker)["os.system, the whole file"])
    assert marker.exists()


@pytest.mark.parametrize("target", ["data_batch_1", "test_batch", "batches.meta"])
@pytest.mark.parametrize("kind", list(_payloads("m")))
def test_crafted_cifar_files_are_refused_and_run_nothing(tmp_path, target, kind):
    marker = tmp_path / "PWNED"
    folder = _write_cifar(tmp_path / "root")
    (folder / target).write_bytes(_payloads(marker)[kind])
    with pytest.raises(data.DataCorruptError) as err:
        data.load_dataset("cifar10", root=tmp_path / "root", download=False)
    assert not marker.exists()
    msg = str(err.value)
    assert target in msg and "not a CIFAR-10 batch file" in msg and "\n" not in msg


def test_the_allow_list_is_what_the_format_names():
    assert set(data.CIFAR_PICKLE_GLOBALS) == {("numpy.core.multiarray", "_reconstruct"),
                                              ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                                              ("numpy", "dtype"), ("_codecs", "encode")}
    import io
    for module, name in [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("numpy", "load"),
                         ("numpy.core.multiarray", "scalar"), ("subprocess", "Popen")]:
        with pytest.raises(pickle.UnpicklingError, match=f"refused global {module}.{name}"):
            data.CifarUnpickler(io.BytesIO(b"")).find_class(module, name)


@pytest.mark.parametrize("module,name", [("numpy", "dtype"), ("numpy", "ndarray"),
                                         ("numpy.core.multiarray", "_reconstruct"), ("_codecs", "encode")])
@pytest.mark.parametrize("state", [{"evil": 1}, (None, {"__defaults__": (7, 7)})])
def test_a_file_cannot_set_state_on_an_allowed_global(module, name, state):
    """BUILD on an allowed global would change an object every later read shares: it is refused, and the
    global is as it was."""
    import io
    before = repr(data.CIFAR_PICKLE_GLOBALS[module, name])
    payload = f"c{module}\n{name}\n".encode() + pickle.dumps(state, protocol=2)[2:-1] + b"b."
    with pytest.raises(pickle.UnpicklingError, match="sets no state"):
        data.CifarUnpickler(io.BytesIO(payload)).load()
    allowed = data.CIFAR_PICKLE_GLOBALS[module, name]
    assert repr(allowed) == before and not hasattr(allowed, "__dict__") and not hasattr(allowed, "__defaults__")


def test_official_md5s_are_recognised(tmp_path, monkeypatch):
    import hashlib
    import torchvision
    folder = _write_cifar(tmp_path)
    assert not data.cifar_files_official(tmp_path)
    md5 = {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in data.CIFAR_FILES}
    c = torchvision.datasets.CIFAR10
    monkeypatch.setattr(c, "train_list", [[f, md5[f]] for f in data.CIFAR_TRAIN_FILES])
    monkeypatch.setattr(c, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(c, "meta", {**c.meta, "md5": md5["batches.meta"]})
    assert data.cifar_files_official(tmp_path)
    assert data.load_dataset("cifar10", root=tmp_path, download=False).extra == {"official_files": True}


def _cli(args, env, cwd):
    import subprocess
    import sys
    env = {**os.environ, "DCPRIVACY_DOWNLOAD": "0", "DCPRIVACY_PROFILE": "quick", **env}
    return subprocess.run([sys.executable, "-m", "dcprivacy", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_crafted_cifar_folder_runs_nothing_through_the_commands(tmp_path):
    """condense and evaluate with DCPRIVACY_DATA pointing at a folder whose batch file is a payload: exit 2, one
    line naming the file, no marker, no output."""
    from dcprivacy.condense import SyntheticSet
    marker = tmp_path / "PWNED"
    folder = _write_cifar(tmp_path / "evil")
    (folder / "data_batch_2").write_bytes(_payloads(marker)["os.system as the labels"])
    syn = tmp_path / "syn.pt"
    SyntheticSet(torch.zeros(10, 3, 32, 32), torch.arange(10), torch.arange(10), "dm").save(syn)
    env = {"DCPRIVACY_DATA": str(tmp_path / "evil"), "DCPRIVACY_DATASET": "cifar10"}
    runs = [_cli(["condense", "--method", "dm", "--ipc", "1", "--iterations", "1", "--width", "4",
                  "--per-class-pool", "2", "--out", str(tmp_path / "out.pt")], env, tmp_path),
            _cli(["evaluate", str(syn), "--models", "1", "--epochs", "1", "--width", "4",
                  "--out", str(tmp_path / "eval.json")], env, tmp_path),
            _cli(["evaluate", str(syn), "--dataset", "cifar10", "--models", "1", "--epochs", "1", "--width", "4"],
                 {"DCPRIVACY_DATA": str(tmp_path / "evil")}, tmp_path)]
    for r in runs:
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "data_batch_2" in lines[0] and "refused global" in lines[0], r.stderr
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "eval.json").exists()


def test_the_commands_run_on_cifar10_and_record_it(tmp_path, monkeypatch, capsys):
    """--dataset (default: DCPRIVACY_DATASET) reaches the data, the result, its config and its provenance; the
    environment is as it was afterwards."""
    import json
    from dcprivacy.cli import main
    _write_cifar(tmp_path / "data")
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("DCPRIVACY_DATASET", raising=False)
    out = tmp_path / "dm.pt"
    assert main(["condense", "--dataset", "cifar10", "--method", "dm", "--ipc", "1", "--iterations", "2", "--width",
                 "4", "--per-class-pool", "2", "--out", str(out)]) == 0
    assert "DCPRIVACY_DATASET" not in os.environ
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["dataset"] == "cifar10" and record["provenance"]["dataset"] == "cifar10"
    assert record["provenance"]["config"]["dataset"] == "cifar10"
    monkeypatch.setenv("DCPRIVACY_DATASET", "cifar10")
    assert main(["evaluate", str(out), "--models", "1", "--epochs", "1", "--width", "4",
                 "--out", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["dataset"] == "cifar10" and e["provenance"]["dataset"] == "cifar10" and 0 <= e["accuracy_mean"] <= 1
    monkeypatch.setenv("DCPRIVACY_DATASET", "svhn")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--models", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("python -m dcprivacy evaluate: error: DCPRIVACY_DATASET='svhn': "
                                               "allowed values are fashionmnist, cifar10")


def test_dataset_name_reads_the_environment(monkeypatch):
    monkeypatch.delenv("DCPRIVACY_DATASET", raising=False)
    assert data.dataset_name() == "fashionmnist"
    for value in ("cifar10", "CIFAR-10", " cifar_10 "):
        monkeypatch.setenv("DCPRIVACY_DATASET", value)
        assert data.dataset_name() == "cifar10"
    monkeypatch.setenv("DCPRIVACY_DATASET", "imagenet")
    with pytest.raises(ValueError) as err:
        data.dataset_name()
    assert str(err.value) == "DCPRIVACY_DATASET='imagenet': allowed values are fashionmnist, cifar10"
    from dcprivacy.provenance import provenance
    monkeypatch.setenv("DCPRIVACY_DATASET", "cifar10")
    assert provenance()["dataset"] == "cifar10"


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
    assert "\n" not in msg  # one line
    with pytest.raises(data.DataNotFoundError, match="cifar-10-batches-py") as err:
        data.load_dataset("cifar10", download=False)
    assert "\n" not in str(err.value) and "Colab" in str(err.value)


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


def test_cifar_download_goes_through_the_safe_reader(tmp_path, monkeypatch):
    """`data --download` (and a chapter's first load on Colab): torchvision's archive is fetched and checked
    against its MD5 by torchvision's download_and_extract_archive (stood in for here: no network in tests), its
    dataset class is not used (it would unpickle with pickle.load), the files are read like any others."""
    import torchvision.datasets.utils as tv_utils
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        write_archive(Path(download_root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "dl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DCPRIVACY_DOWNLOAD", "0")
    with pytest.raises(data.DataNotFoundError, match="not tried"):  # DCPRIVACY_DOWNLOAD=0: no attempt
        data.load_dataset("cifar10")
    assert not calls
    monkeypatch.delenv("DCPRIVACY_DOWNLOAD")
    ds = data.load_dataset("cifar10")
    import torchvision
    c = torchvision.datasets.CIFAR10
    assert calls == [(c.url, c.filename, c.tgz_md5)]
    assert ds.source == f"downloaded by torchvision into {tmp_path / 'dl'}" and ds.train_x.shape[1:] == (3, 32, 32)
