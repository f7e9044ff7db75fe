"""Every path the package takes only on a GPU, run on the CPU with DCPRIVACY_FORCE_GPU_PATHS=1 (tiny sizes).

A reader's Colab GPU must never be the first machine a code path meets: each test below forces one
CUDA-default branch on a CPU and checks it gives what the CPU's own path gives.
"""
import pytest
import torch

from dcprivacy import condense, dp, train
from dcprivacy.config import exact_arithmetic, gpu_paths
from dcprivacy.nets import net_factory

FORCE = "DCPRIVACY_FORCE_GPU_PATHS"


def _data(n=40, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.arange(n) % classes
    return x, y


def test_the_switch(monkeypatch):
    monkeypatch.delenv(FORCE, raising=False)
    assert not gpu_paths("cpu") and gpu_paths(torch.device("cuda"))
    monkeypatch.setenv(FORCE, "1")
    assert gpu_paths("cpu")


def test_stacked_training_and_prediction_by_default_when_forced(monkeypatch):
    x, y = _data()
    factory = net_factory("convnet", width=4, depth=2, num_classes=4)
    cfg = train.TrainConfig(epochs=2, batch_size=8)
    members = torch.rand(3, len(x), generator=torch.Generator().manual_seed(1)) < 0.6
    alone = train.train_models(factory, x, y, seeds=[0, 1, 2], members=members, config=cfg, chunk=1)
    calls = []
    real = train._train_stacked
    monkeypatch.setattr(train, "_train_stacked", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    monkeypatch.setenv(FORCE, "1")
    stacked = train.train_models(factory, x, y, seeds=[0, 1, 2], members=members, config=cfg)  # default chunk
    assert calls == [3]  # one stacked run of all three models: the GPU's default
    for k in alone.params:
        assert torch.allclose(alone.params[k], stacked.params[k], atol=1e-5), k
    out = train.predict(stacked, x[:10])  # default chunk: all models at once (vmap)
    monkeypatch.delenv(FORCE)
    assert torch.allclose(out, train.predict(stacked, x[:10], chunk=1), atol=1e-5)


def test_vmap_gradient_matching_when_forced(monkeypatch):
    x, y = _data()
    kw = dict(ipc=1, iterations=1, loops=(2, 1), width=4, depth=2, batch_real=4, seed=0, num_classes=4,
              augment="flip_scale")  # DSA: the siamese augmentation goes through vmap too
    loop = condense.gradient_matching(x, y, vectorize=False, **kw)
    monkeypatch.setenv(FORCE, "1")
    calls = []
    real = condense.vmap
    monkeypatch.setattr(condense, "vmap", lambda *a, **k: calls.append(1) or real(*a, **k))
    forced = condense.gradient_matching(x, y, **kw)  # default: vmap over classes, as on a GPU
    assert calls, "the forced path did not use vmap"
    assert torch.allclose(loop.images, forced.images, atol=1e-4)


def test_dm_one_pass_nchw_when_forced(monkeypatch):
    x, y = _data()
    kw = dict(ipc=2, iterations=3, width=4, depth=2, batch_real=8, seed=0, num_classes=4)
    cpu = condense.distribution_matching(x, y, **kw)
    monkeypatch.setenv(FORCE, "1")
    forced = condense.distribution_matching(x, y, **kw)  # no channels-last, real images in one piece
    assert torch.allclose(cpu.images, forced.images, atol=1e-4)


def test_dp_dm_pinned_copy_path_when_forced(monkeypatch):
    x, y = _data()
    kw = dict(ipc=1, num_classes=4, class_size=10, noise_multiplier=1.0, iterations=3, width=4, depth=2, seed=0,
              accountant="rdp")
    cpu = dp.dp_distribution_matching(x, y, **kw)
    monkeypatch.setenv(FORCE, "1")
    forced = dp.dp_distribution_matching(x, y, **kw)  # the host-to-device copy of the Poisson sample
    assert torch.equal(cpu.images, forced.images)


def test_attack_pipeline_end_to_end_when_forced(monkeypatch):
    from dcprivacy.config import MIA
    from dcprivacy.mia import membership_masks
    from dcprivacy.pipelines import run_pipeline
    x, y = _data(n=40, classes=4)
    cfg = MIA(pool=40, runs=4, epochs=1, epochs_small=1, width=4, ipc=1, dm_iterations=2, batch_real=4,
              dc_iterations=1, dc_loops=(2, 1), bootstrap=0, test_size=0)
    masks = membership_masks(4, 40, seed=0)
    monkeypatch.setenv(FORCE, "1")
    for name in ("real", "dm"):  # stacked training on membership rows, stacked scoring
        r = run_pipeline(name, x, y, masks, x[:8], y[:8], cfg=cfg)
        assert r.scores.shape[:2] == (4, 40) and torch.isfinite(r.scores).all()


def test_exact_arithmetic_turns_off_tf32():
    settings = exact_arithmetic()
    assert settings["tf32"] is False and torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
