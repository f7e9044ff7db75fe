"""Benchmarks behind the speed claims (``python -m dcprivacy bench …``).

Each benchmark runs the fast path and its baseline on the same work in one process and reports
both, so a reader can check the ratio on their own machine. Timed tests are never used for this.
"""
from __future__ import annotations

import time

import torch

from .config import default_device


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` (after synchronising the device)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def _gflop(factory, *, trained: int, scored: int = 0) -> float:
    """GFLOP of ``trained`` training passes (forward + two backward products ≈ 3 forwards) and ``scored``
    forward passes of one image through the network ``factory`` builds."""
    from .nets import conv_flops
    net = factory(0)
    per_image = conv_flops(net) + 2 * net.classifier.in_features * net.classifier.out_features
    return per_image * (3 * trained + scored) / 1e9


def bench_train(*, models: int = 8, per_class: int = 50, width: int = 32, epochs: int = 5,
                batch_size: int = 256, arch: str = "convnet", device=None, seed: int = 0) -> dict:
    """N models trained stacked (one chunk) vs one after another, same seeds and batches."""
    from .data import class_balanced_subset, load_dataset
    from .nets import net_factory
    from .train import TrainConfig, train_models

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    idx = class_balanced_subset(ds.train_y, per_class, seed=seed)
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    factory = net_factory(arch, width=width, channels=ds.channels, im_size=ds.im_size)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size)
    seeds = list(range(seed, seed + models))
    run = lambda chunk: train_models(factory, x, y, seeds=seeds, config=cfg, chunk=chunk, device=device,
                                     desc=f"chunk {chunk}")
    run(models), run(1)  # warm-up (allocators, kernels)
    t_vec, ens_vec = timed(lambda: run(models), device)
    t_loop, ens_loop = timed(lambda: run(1), device)
    diff = max((ens_vec.params[k] - ens_loop.params[k]).abs().max().item() for k in ens_vec.params)
    gflop = _gflop(factory, trained=models * epochs * len(idx))
    rate = lambda t: round(gflop / t, 2)
    return {"benchmark": "train", "arch": arch, "width": width, "models": models, "examples": len(idx),
            "epochs": epochs, "batch_size": batch_size, "device": str(device),
            "vectorized_s": round(t_vec, 4), "one_by_one_s": round(t_loop, 4),
            "speedup": round(t_loop / t_vec, 3), "max_param_difference": diff,
            "gflop": gflop, "vectorized_gflops": rate(t_vec), "one_by_one_gflops": rate(t_loop),
            **conv_throughput(device, width=max(width, 16), repeats=3)}


def conv_throughput(device, *, width: int = 128, batch: int = 256, size: int = 16, repeats: int = 5) -> dict:
    """The machine's measured speed on the ConvNet's own workload: one 3×3 conv layer (width → width on
    ``size``×``size`` maps) in both memory layouts (the faster counts), and a square float32 GEMM, in GFLOP/s."""
    x = torch.randn(batch, width, size, size, device=device)
    w = torch.randn(width, width, 3, 3, device=device)
    flops = 2 * batch * width * width * 9 * size * size
    rates = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
        conv = lambda: torch.nn.functional.conv2d(xf, wf, padding=1)
        conv()
        t_conv, _ = timed(conv, device, repeats)
        rates.append(flops / t_conv / 1e9)
    a = torch.randn(2048, 2048, device=device)
    (a @ a)
    t_mm, _ = timed(lambda: a @ a, device, repeats)
    return {"conv_gflops": max(rates), "conv_gflops_nchw": rates[0], "conv_gflops_channels_last": rates[1],
            "gemm_gflops": 2 * 2048 ** 3 / t_mm / 1e9}


def dm_step_per_class(net, pool_x: list, syn: torch.Tensor, opt, generator, strategy) -> float:
    """The baseline: one DM step the way the reference writes it — a Python loop over classes, a random
    batch drawn per class, siamese augmentation per class, and the loss read back to the host."""
    from .augment import apply_transforms, sample_transforms
    num_classes, ipc = syn.shape[:2]
    b = min(256, min(len(p) for p in pool_x))
    loss = torch.zeros((), device=syn.device)
    for c in range(num_classes):
        real = pool_x[c][torch.randperm(len(pool_x[c]), generator=generator, device=syn.device)[:b]]
        if strategy:
            t = sample_transforms(1, strategy, tuple(real.shape[-2:]), generator=generator, device=syn.device)
            real = apply_transforms(real, t, torch.zeros(b, dtype=torch.long, device=syn.device))
            s = apply_transforms(syn[c], t, torch.zeros(ipc, dtype=torch.long, device=syn.device))
        else:
            s = syn[c]
        loss = loss + ((net.embed(real).mean(0) - net.embed(s).mean(0)) ** 2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def bench_condense(*, width: int = 128, ipc: int = 10, batch_real: int = 256, iterations: int = 3,
                   device=None, seed: int = 0, compile: bool = True, dc: bool = True) -> dict:
    """Seconds per iteration of DM and of DC's matching step, fast paths beside their baselines.

    DM rows: the reference's per-class loop (NCHW, eager) — the baseline; one pass over all classes in
    the same layout; one pass with the library's CPU/GPU defaults of :func:`~dcprivacy.condense.
    distribution_matching` (channels-last, real images embedded in cache-sized pieces on a CPU); and
    that path compiled. GFLOP/s are set against the machine's measured conv throughput (its faster
    layout). DC rows: the matching step vectorized over classes (``vmap``) vs a per-class loop.
    """
    import torch.nn.functional as F

    from .augment import DEFAULT_STRATEGY, sample_transforms
    from .condense import class_gradients, dm_loss, gradient_distance
    from .data import load_dataset
    from .nets import conv_flops, make_net

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    C = ds.num_classes
    g = torch.Generator(device=device).manual_seed(seed)
    pools = [ds.train_x[ds.train_y == c][:2000].to(device) for c in range(C)]
    net = make_net("convnet", width=width, seed=seed).to(device).requires_grad_(False)
    net_cl = make_net("convnet", width=width, seed=seed).to(device).requires_grad_(False) \
        .to(memory_format=torch.channels_last)
    flops_img = conv_flops(net)
    syn = torch.randn(1, C, ipc, 1, 28, 28, device=device, requires_grad=True)
    opt = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
    real = torch.stack([p[:batch_real] for p in pools])  # [C, b, ...]
    w = torch.ones(1, C, batch_real, device=device)
    size = (28, 28)
    fast_chunk = 64 if device.type == "cpu" else None  # distribution_matching's defaults
    fast_net = net_cl if device.type == "cpu" else net

    def one_pass(embed, real_chunk=None, real=real, w=w, syn=syn, opt=opt):
        t = sample_transforms(C, DEFAULT_STRATEGY, size, generator=g, device=device)
        loss = dm_loss(embed, real, w, syn, transforms=t, real_chunk=real_chunk)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def run(fn, n):
        for _ in range(n):
            fn()

    variants = {
        "dm_per_class_loop": lambda: dm_step_per_class(net, pools, syn[0], opt, g, DEFAULT_STRATEGY),
        "dm_one_pass_nchw": lambda: one_pass(net.embed),
        "dm_one_pass": lambda: one_pass(fast_net.embed, fast_chunk),
    }
    compile_s = None
    if compile:
        embed_c = torch.compile(fast_net.embed)
        compile_s, _ = timed(lambda: one_pass(embed_c, fast_chunk), device)
        variants["dm_one_pass_compiled"] = lambda: one_pass(embed_c, fast_chunk)
    dm_flops = flops_img * (C * batch_real + 2 * C * ipc)  # forward real + synthetic, backward synthetic
    rows = {}
    for name, fn in variants.items():
        fn()  # warm-up
        t, _ = timed(lambda: run(fn, iterations), device)
        rows[name] = t / iterations
    result = {"benchmark": "condense", "device": str(device), "width": width, "ipc": ipc, "batch_real": batch_real,
              "iterations_timed": iterations, "real_chunk": fast_chunk, "dm_gflop_per_iteration": dm_flops / 1e9,
              **conv_throughput(device, width=width)}
    for k, v in rows.items():
        result[f"{k}_s"] = round(v, 4)
        result[f"{k}_gflops"] = round(dm_flops / v / 1e9, 2)
    best = min(v for k, v in rows.items() if k != "dm_per_class_loop")
    result["dm_speedup_over_per_class_loop"] = round(rows["dm_per_class_loop"] / best, 3)
    result["dm_eager_speedup_over_per_class_loop"] = round(rows["dm_per_class_loop"] / rows["dm_one_pass"], 3)
    result["dm_fraction_of_conv_throughput"] = round(dm_flops / best / 1e9 / result["conv_gflops"], 3)
    result["compile_seconds"] = None if compile_s is None else round(compile_s, 1)

    # K condensations sharing their random draws (MIA.shared_draws): one pass over a doubled real batch, of
    # which each run owns about half, serves all K runs; per run, against one run condensed alone (eager)
    K = 16  # the quick MIA profile's runs
    real2 = torch.stack([p[:2 * batch_real] for p in pools])
    w_k = (torch.rand(K, C, 2 * batch_real, generator=g, device=device) < 0.5).float()
    syn_k = torch.randn(K, C, ipc, 1, 28, 28, device=device, requires_grad=True)
    opt_k = torch.optim.SGD([syn_k], lr=1.0, momentum=0.5)
    shared_step = lambda: one_pass(fast_net.embed, fast_chunk, real=real2, w=w_k, syn=syn_k, opt=opt_k)
    shared_step()
    t, _ = timed(lambda: run(shared_step, iterations), device)
    result["dm_shared_runs"] = K
    result["dm_shared_per_run_s"] = round(t / iterations / K, 4)
    result["dm_shared_speedup_per_run"] = round(rows["dm_one_pass"] / (t / iterations / K), 3)

    if dc:  # DC's matching step: per-class gradients on real and synthetic images, their distance, one image step
        net_dc = make_net("convnet", width=width, seed=seed).to(device)
        yr = torch.arange(C, device=device).view(C, 1).expand(C, batch_real)
        ys = torch.arange(C, device=device).view(C, 1).expand(C, ipc)
        xs = syn[0]

        def vectorized():
            g_real = {k: v.detach() for k, v in class_gradients(net_dc, real, yr, vectorize=True).items()}
            loss = gradient_distance(g_real, class_gradients(net_dc, xs, ys, vectorize=True))
            opt.zero_grad()
            loss.backward()
            opt.step()

        def per_class():
            params = list(net_dc.parameters())
            loss = 0
            for c in range(C):
                gr = torch.autograd.grad(F.cross_entropy(net_dc(real[c]), yr[c]), params)
                gs = torch.autograd.grad(F.cross_entropy(net_dc(xs[c]), ys[c]), params, create_graph=True)
                loss = loss + gradient_distance({i: a.detach()[None] for i, a in enumerate(gr)},
                                                {i: a[None] for i, a in enumerate(gs)})
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        for name, fn in (("dc_step_per_class_loop", per_class), ("dc_step_vmap", vectorized)):
            fn()
            t, _ = timed(lambda: run(fn, iterations), device)
            result[f"{name}_s"] = round(t / iterations, 4)
        result["dc_vmap_speedup_over_per_class_loop"] = round(result["dc_step_per_class_loop_s"] / result["dc_step_vmap_s"], 3)
    return result


def bench_shadows(*, models: int = 16, width: int = 16, epochs: int = 3, pool: int = 1000, device=None,
                  seed: int = 0) -> dict:
    """Shadow models for LiRA: K ConvNets on their own random halves of a pool, trained stacked (one
    chunk) vs one after another, then scored on the whole pool — the same work both ways."""
    from .data import class_balanced_subset, load_dataset
    from .mia import membership_masks, scores_from_models
    from .nets import net_factory
    from .train import TrainConfig, train_models

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    idx = class_balanced_subset(ds.train_y, pool // ds.num_classes, seed=seed)
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    masks = membership_masks(models, len(idx), seed=seed).to(device)
    factory = net_factory("convnet", width=width)
    cfg = TrainConfig(epochs=epochs)

    def work(chunk):
        ens = train_models(factory, x, y, seeds=range(models), members=masks, config=cfg, chunk=chunk,
                           device=device, desc=f"chunk {chunk}")
        return scores_from_models(ens, x, y)

    work(models), work(1)  # warm-up
    t_vec, s_vec = timed(lambda: work(models), device)
    t_loop, s_loop = timed(lambda: work(1), device)
    gflop = _gflop(factory, trained=epochs * int(masks.sum()), scored=models * len(idx))
    return {"benchmark": "shadows", "device": str(device), "models": models, "width": width, "pool": len(idx),
            "epochs": epochs, "vectorized_s": round(t_vec, 3), "one_after_another_s": round(t_loop, 3),
            "speedup": round(t_loop / t_vec, 3),
            "max_score_difference": float((s_vec - s_loop).abs().max()),
            "gflop": round(gflop, 3), "vectorized_gflops": round(gflop / t_vec, 2),
            "one_after_another_gflops": round(gflop / t_loop, 2), **conv_throughput(device, width=width, repeats=3)}
