"""Benchmarks behind the speed claims (``python -m dcprivacy bench …``).

Each benchmark runs the fast path and its baseline on the same work in one process and reports
both, so a reader can check the ratio on their own machine. Timed tests are never used for this.
"""
from __future__ import annotations

import math
import statistics
import time

import torch

from . import cpu
from .config import compile_pays, default_device, fast_dtype


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


# --- the reference's loops, re-implemented (VICO-UoE/DatasetCondensation: main_DM.py, utils.py) -----------
# Written from a reading of the reference to measure against; never used by the package's commands.

class _ReferenceDSA:
    """The reference's DiffAugment in its 'S' mode: one operation group per call; magnitudes drawn per
    image on the host generator, with a Python loop over images to build the affine matrices of scale and
    rotate. With a seed (siamese), the global generator is re-seeded before every draw (seed, seed+1, …) and
    every image of the batch takes the first image's parameters, so two calls with one seed augment alike."""

    def __init__(self, strategy: str):
        from .augment import DSAParams, parse_strategy
        self.groups, self.p = parse_strategy(strategy), DSAParams()
        self.seed, self.siamese = -1, False

    def _reseed(self):
        if self.seed != -1:
            torch.random.manual_seed(self.seed)
            self.seed += 1

    def _draw(self, *shape, low=None, high=None):
        self._reseed()
        v = torch.rand(*shape) if low is None else torch.randint(low, high, shape)
        if self.siamese:
            v[:] = v[0].clone()
        return v

    def _affine(self, x, rows):
        theta = torch.tensor(rows, dtype=torch.float)
        if self.siamese:
            theta[:] = theta[0].clone()
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False).to(x.device)
        return torch.nn.functional.grid_sample(x, grid, align_corners=False)

    def __call__(self, x: torch.Tensor, seed: int = -1) -> torch.Tensor:
        if not self.groups:
            return x
        self.seed, self.siamese = seed, seed != -1
        self._reseed()
        group = self.groups[torch.randint(0, len(self.groups), size=(1,)).item()]
        B, p = x.shape[0], self.p
        if group == "color":
            x = x + (self._draw(B, 1, 1, 1).to(x.device) - 0.5) * p.brightness
            m = x.mean(dim=1, keepdim=True)
            x = (x - m) * (self._draw(B, 1, 1, 1).to(x.device) * p.saturation) + m
            m = x.mean(dim=[1, 2, 3], keepdim=True)
            x = (x - m) * (self._draw(B, 1, 1, 1).to(x.device) + p.contrast) + m
        elif group == "scale":
            r = p.ratio_scale
            self._reseed()
            sx = torch.rand(B) * (r - 1.0 / r) + 1.0 / r
            self._reseed()
            sy = torch.rand(B) * (r - 1.0 / r) + 1.0 / r
            x = self._affine(x, [[[sx[i], 0, 0], [0, sy[i], 0]] for i in range(B)])  # per image, in Python
        elif group == "rotate":
            self._reseed()
            a = (torch.rand(B) - 0.5) * 2 * p.ratio_rotate / 180 * float(math.pi)
            x = self._affine(x, [[[torch.cos(a[i]), torch.sin(-a[i]), 0], [torch.sin(a[i]), torch.cos(a[i]), 0]]
                                 for i in range(B)])
        elif group == "flip":
            x = torch.where(self._draw(B, 1, 1, 1).to(x.device) < p.prob_flip, x.flip(3), x)
        elif group == "crop":  # integer shift: gather from a zero-padded copy
            H, W = x.shape[2:]
            sh, sw = int(H * p.ratio_crop_pad + 0.5), int(W * p.ratio_crop_pad + 0.5)
            tx = self._draw(B, 1, 1, low=-sh, high=sh + 1).to(x.device)
            ty = self._draw(B, 1, 1, low=-sw, high=sw + 1).to(x.device)
            gb, gx, gy = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(H, device=x.device),
                                        torch.arange(W, device=x.device), indexing="ij")
            gx = torch.clamp(gx + tx + 1, 0, H + 1)
            gy = torch.clamp(gy + ty + 1, 0, W + 1)
            padded = torch.nn.functional.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
            x = padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)
        elif group == "cutout":
            H, W = x.shape[2:]
            ch, cw = int(H * p.ratio_cutout + 0.5), int(W * p.ratio_cutout + 0.5)
            ox = self._draw(B, 1, 1, low=0, high=H + (1 - ch % 2)).to(x.device)
            oy = self._draw(B, 1, 1, low=0, high=W + (1 - cw % 2)).to(x.device)
            gb, gx, gy = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(ch, device=x.device),
                                        torch.arange(cw, device=x.device), indexing="ij")
            gx = torch.clamp(gx + ox - ch // 2, min=0, max=H - 1)
            gy = torch.clamp(gy + oy - cw // 2, min=0, max=W - 1)
            mask = torch.ones(B, H, W, dtype=x.dtype, device=x.device)
            mask[gb, gx, gy] = 0
            x = x * mask.unsqueeze(1)
        return x.contiguous()


def _reference_convnet(**kw) -> torch.nn.Module:
    """The reference's ConvNet (``utils.ConvNet``: instance norm, average pooling), as it builds it: the
    package's ConvNet with PyTorch's ``nn.AvgPool2d(2, 2)`` in place of :class:`~dcprivacy.nets.AvgPool2x2`
    (the same numbers up to rounding; the package's pooling is one of the speed-ups measured)."""
    from .nets import AvgPool2x2, make_net
    net = make_net("convnet", **kw)
    for i, m in enumerate(net.features):
        if isinstance(m, AvgPool2x2):
            net.features[i] = torch.nn.AvgPool2d(2, 2)
    return net


class ReferenceDM:
    """One iteration of the reference's DM loop: a fresh ConvNet (default initialisation, frozen); per
    class, a random batch of that class's images (a NumPy permutation of its indices), the class's
    synthetic images, one siamese DSA seed for both, ``embed`` of each and the squared distance of
    their means; the summed loss, one SGD step on the images, the loss read back to the host."""

    def __init__(self, images_all, labels_all, *, ipc=10, batch_real=256, width=128, strategy=None, seed=0):
        import numpy as np
        self.np_rng, self.images_all = np.random.default_rng(seed), images_all
        labels = labels_all.cpu().numpy()
        self.num_classes = int(labels.max()) + 1
        self.indices_class = [np.flatnonzero(labels == c) for c in range(self.num_classes)]
        self.ipc, self.batch_real, self.dsa = ipc, batch_real, _ReferenceDSA(strategy)
        self.shape = tuple(images_all.shape[1:])
        self.make = lambda: _reference_convnet(channels=self.shape[0], num_classes=self.num_classes,
                                               im_size=self.shape[-1], width=width).to(images_all.device)
        first = [self.images_all[self._batch(c, ipc)] for c in range(self.num_classes)]  # real init
        self.image_syn = torch.cat(first).detach().requires_grad_(True)
        self.optimizer_img = torch.optim.SGD([self.image_syn], lr=1.0, momentum=0.5)

    def _batch(self, c, n):
        return self.np_rng.permutation(self.indices_class[c])[:n]

    def __call__(self) -> float:
        net = self.make()
        net.train()
        for param in net.parameters():
            param.requires_grad = False
        loss = torch.tensor(0.0, device=self.image_syn.device)
        for c in range(self.num_classes):
            img_real = self.images_all[self._batch(c, self.batch_real)]
            img_syn = self.image_syn[c * self.ipc:(c + 1) * self.ipc].reshape(self.ipc, *self.shape)
            seed = int(self.np_rng.integers(100000))  # the reference: the wall clock in ms, mod 100000
            img_real, img_syn = self.dsa(img_real, seed), self.dsa(img_syn, seed)
            out_real = net.embed(img_real).detach()
            out_syn = net.embed(img_syn)
            loss += torch.sum((torch.mean(out_real, dim=0) - torch.mean(out_syn, dim=0)) ** 2)
        self.optimizer_img.zero_grad()
        loss.backward()
        self.optimizer_img.step()
        return loss.item()


class ReferenceEvaluation:
    """One model of the reference's ``evaluate_synset``: SGD (lr 0.01, momentum 0.9, weight decay 5e-4)
    over a ``DataLoader`` of a ``TensorDataset`` (batch 256, shuffled); every batch augmented by DSA with
    per-image parameters; loss and accuracy read back to the host every batch, as its ``epoch()`` does."""

    def __init__(self, images, labels, *, width=128, strategy=None, batch=256, seed=0):
        torch.manual_seed(seed)
        self.net = _reference_convnet(channels=images.shape[1], num_classes=int(labels.max()) + 1,
                                      im_size=images.shape[-1], width=width).to(images.device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=batch,
                                                  shuffle=True, num_workers=0)
        self.dsa = _ReferenceDSA(strategy)

    def __call__(self) -> tuple[float, float]:
        import numpy as np
        self.net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for img, lab in self.loader:
            img = self.dsa(img.float())
            lab = lab.long()
            output = self.net(img)
            loss = self.criterion(output, lab)
            correct += int(np.sum(np.argmax(output.cpu().data.numpy(), axis=-1) == lab.cpu().data.numpy()))
            loss_sum += loss.item() * lab.shape[0]
            seen += lab.shape[0]
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return loss_sum / seen, correct / seen


def _stats(times: list[float], gflop: float, conv_gflops: float, prefix: str) -> dict:
    med = statistics.median(times)
    return {f"{prefix}_s": round(med, 4), f"{prefix}_min_s": round(min(times), 4),
            f"{prefix}_gflops": round(gflop / med, 2),
            f"{prefix}_fraction_of_conv_throughput": round(gflop / med / conv_gflops, 3)}


def _interleaved(run_ours, reference, rounds: int, device: torch.device) -> tuple[list[float], list[float], float]:
    """Time the package's command path and the reference alternately (A, B, A, B, …) in one process.

    ``run_ours(iterations, callback)`` calls the command's own function with a per-iteration
    ``callback``; inside it, after each of our iterations, one reference iteration runs. Our time is the
    gap between one callback's end and the next one's start (the reference runs outside it); the first iteration
    of each (warm-up: allocations, kernel choice) is not counted, and our first is returned on its own:
    ``(ours, reference, first_s)``, ``first_s`` the seconds to our first callback (set-up, compilation)."""
    ours, ref, last, first = [], [], [None], []
    started = time.perf_counter()

    def callback(*_):
        _sync(device)
        now = time.perf_counter()
        if last[0] is not None:
            ours.append(now - last[0])
        else:
            first.append(now - started)
        t = time.perf_counter()
        reference()
        _sync(device)
        if last[0] is not None:
            ref.append(time.perf_counter() - t)
        last[0] = time.perf_counter()

    run_ours(rounds + 1, callback)
    return ours, ref, first[0]


PROFILE_GROUPS = (  # (share name, substrings of profiler event names), first match wins
    ("convolutions", ("convolution",)),
    ("fused normalisation/ReLU/pooling (compiled)", ("CompiledFxGraph",)),
    ("normalisation", ("group_norm", "batch_norm", "instance_norm")),
    ("ReLU", ("clamp_min", "relu", "threshold_backward")),
    ("pooling", ("avg_pool",)),
    ("augmentation", ("grid_sampler", "affine_grid", "bitwise", "aten::lt", "aten::ge", "aten::eq")),
    ("matrix products", ("aten::mm", "aten::bmm", "aten::addmm", "einsum")),
    ("sampling and gathering", ("index", "gather", "randperm", "sort", "uniform", "randint", "normal_")),
    ("copies and layout", ("copy_", "_to_copy", "contiguous", "clone", "cat", "stack")),
    ("optimiser", ("sgd", "foreach", "Optimizer")),
)


def profile_shares(run, device: torch.device) -> dict:
    """Where ``run()``'s time goes: ``torch.profiler``'s self time of every operator (on a CUDA device, the
    kernels' time), grouped by :data:`PROFILE_GROUPS`, as fractions that sum to one ("other operators":
    the rest, elementwise arithmetic and Python overhead included in the operators that run it)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    totals = {name: 0.0 for name, _ in PROFILE_GROUPS}
    totals["other operators"] = 0.0
    for event in prof.key_averages():
        t = float(getattr(event, attr, 0.0) or 0.0)
        if event.key.startswith("ProfilerStep") or t <= 0:
            continue
        name = next((n for n, keys in PROFILE_GROUPS if any(k.lower() in event.key.lower() for k in keys)),
                    "other operators")
        totals[name] += t
    whole = sum(totals.values()) or 1.0
    small = [name for name, t in totals.items() if t / whole < 0.005 and name != "other operators"]
    for name in small:  # below half a percent: counted with the rest
        totals["other operators"] += totals.pop(name)
    return {name: round(t / whole, 3) for name, t in totals.items()}


def _qualname(fn) -> str:
    fn = getattr(fn, "__wrapped__", fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def bench_condense(*, width: int = 128, ipc: int = 10, batch_real: int = 256, iterations: int = 3,
                   per_class_pool: int = 0, device=None, seed: int = 0, compile: bool = True, dc: bool = True,
                   shared: bool = True) -> dict:
    """Seconds per DM iteration of ``condense --method dm`` (its function, :func:`~dcprivacy.condense.
    distribution_matching`, called as the command calls it) against the reference's per-class loop
    (:class:`ReferenceDM`), interleaved in one process, at the reference's settings (the whole training
    set as the pool unless ``per_class_pool``), with the arithmetic the command picks for the reference's
    20000 iterations (compiled, and the real side in bfloat16, on a CPU that has it). Also (``compile``): the
    other compilation choice; K runs sharing their draws (per run); DC's matching step vectorized over
    classes vs a per-class loop.
    """
    import torch.nn.functional as F

    from . import condense as C
    from .augment import DEFAULT_STRATEGY
    from .data import class_balanced_subset, load_dataset
    from .nets import conv_flops, make_net

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    idx = class_balanced_subset(ds.train_y, per_class_pool, seed=seed) if per_class_pool else \
        torch.arange(len(ds.train_y))
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    num_classes = ds.num_classes
    dm = C.distribution_matching  # what `condense --method dm` calls (looked up now, as the command does)
    common = dict(ipc=ipc, width=width, seed=seed, indices=idx, device=device, checkpoint=None, batch_real=batch_real,
                  precision="auto")  # the command's default arithmetic (bfloat16 real side where it pays)
    run = lambda compiled: (lambda n, cb: dm(x, y, iterations=n, compile=compiled, callback=cb, callback_every=1,
                                             **common))
    reference = ReferenceDM(x, y, ipc=ipc, batch_real=batch_real, width=width, strategy=DEFAULT_STRATEGY, seed=seed)
    flops_img = conv_flops(make_net("convnet", width=width, num_classes=num_classes))
    b = min(batch_real or len(y), int(torch.bincount(y).min()))
    dm_flops = flops_img * (num_classes * b + 2 * num_classes * ipc)  # forward real + syn, backward syn
    result = {"benchmark": "condense", "device": str(device), "width": width, "ipc": ipc, "batch_real": b,
              "pool": len(y), "augment": DEFAULT_STRATEGY, "iterations_timed": iterations,
              "timed_function": _qualname(dm), "reference": "DatasetCondensation main_DM.py (re-implemented)",
              "dm_gflop_per_iteration": dm_flops / 1e9, **conv_throughput(device, width=width)}
    # what `condense --method dm` runs at the reference's 20000 iterations (compiled where that pays)
    protocol_iterations = 20000
    compiled = compile_pays(device, width, protocol_iterations, 500)
    ours, ref, first_s = _interleaved(run(compiled), reference, iterations, device)
    result["cpu_allocator_keeps_freed_memory"] = cpu.keep_freed_memory() if device.type == "cpu" else None
    result.update(dm_compiled=compiled, protocol_iterations=protocol_iterations,
                  dm_first_iteration_s=round(first_s, 2))  # set-up and compilation
    result.update(_stats(ours, dm_flops / 1e9, result["conv_gflops"], "dm_condense"))
    result.update(_stats(ref, dm_flops / 1e9, result["conv_gflops"], "dm_reference"))
    result["dm_precision"] = "bf16" if fast_dtype(device, width, "auto") is not None else "fp32"
    result["dm_speedup_over_reference"] = round(statistics.median(ref) / statistics.median(ours), 3)
    result["dm_speedup_over_reference_min"] = round(min(ref) / min(ours), 3)
    ours_run = first_s + (protocol_iterations - 1) * statistics.median(ours)  # the first iteration's set-up included
    result["dm_speedup_over_reference_protocol"] = round(protocol_iterations * statistics.median(ref) / ours_run, 3)
    result["profile"] = profile_shares(lambda: run(compiled)(3, None), device)  # compiled graphs are cached
    if compile:  # the other choice too: eager if the default compiles, compiled if it does not
        other = "eager" if compiled else "compiled"
        ours_o, ref_o, _ = _interleaved(run(not compiled), reference, iterations, device)
        result.update(_stats(ours_o, dm_flops / 1e9, result["conv_gflops"], f"dm_condense_{other}"))
        result[f"dm_{other}_speedup_over_reference"] = round(statistics.median(ref_o) / statistics.median(ours_o), 3)

    if shared:  # K condensations sharing their random draws (MIA.shared_draws), per run, vs one run alone
        K = 16  # the quick MIA profile's runs
        members = torch.rand(K, len(y), generator=torch.Generator().manual_seed(seed)) < 0.5
        per_run = []
        dm(x, y, iterations=2, members=members.to(device), callback=lambda *a: per_run.append(time.perf_counter()),
           callback_every=1, **{**common, "batch_real": 2 * batch_real})
        result["dm_shared_runs"] = K
        result["dm_shared_per_run_s"] = round((per_run[1] - per_run[0]) / K, 4)
        result["dm_shared_speedup_per_run"] = round(result["dm_condense_s"] / result["dm_shared_per_run_s"], 3)

    if dc:  # DC's matching step: per-class gradients on real and synthetic images, their distance, one image step
        from .condense import class_gradients, gradient_distance
        C_ = num_classes
        pools = [x[y == c][:batch_real] for c in range(C_)]
        real = torch.stack(pools)
        net_dc = make_net("convnet", width=width, seed=seed).to(device)
        yr = torch.arange(C_, device=device).view(C_, 1).expand(C_, real.shape[1])
        ys = torch.arange(C_, device=device).view(C_, 1).expand(C_, ipc)
        xs = torch.randn(C_, ipc, *x.shape[1:], device=device, requires_grad=True)
        opt = torch.optim.SGD([xs], lr=0.1, momentum=0.5)

        def vectorized():
            g_real = {k: v.detach() for k, v in class_gradients(net_dc, real, yr, vectorize=True).items()}
            loss = gradient_distance(g_real, class_gradients(net_dc, xs, ys, vectorize=True))
            opt.zero_grad()
            loss.backward()
            opt.step()

        def per_class():
            params = list(net_dc.parameters())
            loss = 0
            for c in range(C_):
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
            t, _ = timed(fn, device, repeats=2)
            result[f"{name}_s"] = round(t, 4)
        result["dc_vmap_speedup_over_per_class_loop"] = round(result["dc_step_per_class_loop_s"] / result["dc_step_vmap_s"], 3)
    return result


def bench_evaluate(*, width: int = 128, ipc: int = 10, epochs: int = 5, models: int = 4, stacked: bool | None = None,
                   device=None, seed: int = 0) -> dict:
    """Seconds per model-epoch of ``evaluate`` (its function, :func:`~dcprivacy.condense.evaluate_synthetic`,
    called as the command calls it, on a DM set of ``ipc`` real images per class with DSA) against the
    reference's ``evaluate_synset`` training epoch (:class:`ReferenceEvaluation`), interleaved in one
    process. ``stacked`` (default: on a GPU): also time ``models`` models trained stacked against the same
    models one after another — the speed-up of vectorized evaluation."""
    from . import condense as C
    from .augment import DEFAULT_STRATEGY
    from .data import load_dataset
    from .nets import net_factory

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    syn = C.random_real_subset(ds.train_x, ds.train_y, ipc, seed=seed)
    syn.method = "dm"  # trained with DSA, 1000 epochs in the protocol: the case that costs most
    test_x, test_y = ds.test_x[:256].to(device), ds.test_y[:256].to(device)  # accuracy is not what is timed
    ev = C.evaluate_synthetic  # what `evaluate` calls (looked up now, as the command does)
    # the arithmetic `evaluate` picks for this set (1000 epochs with DSA): timed here on a few of them
    protocol_epochs = 1000
    precision, compiled = C.evaluation_arithmetic(device, width, protocol_epochs)
    run = lambda n, cb: ev(syn, test_x, test_y, models=1, epochs=n, width=width, seed=seed, device=device,
                           callback=cb, precision=precision, compile=compiled)
    reference = ReferenceEvaluation(syn.images.to(device), syn.labels.to(device), width=width,
                                    strategy=DEFAULT_STRATEGY, seed=seed)
    factory = net_factory("convnet", width=width, channels=syn.images.shape[1], num_classes=syn.num_classes,
                          im_size=syn.images.shape[-1])
    gflop = _gflop(factory, trained=len(syn.labels))
    result = {"benchmark": "evaluate", "device": str(device), "width": width, "images": len(syn.labels),
              "augment": DEFAULT_STRATEGY, "batch_size": 256, "epochs_timed": epochs,
              "timed_function": _qualname(ev), "reference": "DatasetCondensation utils.evaluate_synset (re-implemented)",
              "gflop_per_model_epoch": gflop, **conv_throughput(device, width=width)}
    ours, ref, first_s = _interleaved(run, reference, epochs, device)
    result["cpu_allocator_keeps_freed_memory"] = cpu.keep_freed_memory() if device.type == "cpu" else None
    result.update(precision=precision, compiled=compiled, protocol_epochs=protocol_epochs,
                  evaluate_first_epoch_s=round(first_s, 2))  # compilation included, once per model
    result.update(_stats(ours, gflop, result["conv_gflops"], "evaluate"))
    result.update(_stats(ref, gflop, result["conv_gflops"], "evaluate_reference"))
    result["evaluate_speedup_over_reference"] = round(statistics.median(ref) / statistics.median(ours), 3)
    result["evaluate_speedup_over_reference_min"] = round(min(ref) / min(ours), 3)
    # per model over the whole protocol, the first epoch's set-up and compilation included
    ours_run = result["evaluate_first_epoch_s"] + (protocol_epochs - 1) * statistics.median(ours)
    result["evaluate_speedup_over_reference_protocol"] = round(protocol_epochs * statistics.median(ref) / ours_run, 3)
    result["profile"] = profile_shares(lambda: run(3, None), device)
    if stacked if stacked is not None else device.type == "cuda":
        def per_model_epoch(stack):
            ticks = []
            ev(syn, test_x, test_y, models=models, epochs=epochs + 1, width=width, seed=seed, device=device,
               stack=stack, callback=lambda e: ticks.append(time.perf_counter()), precision=precision,
               compile=compiled)
            _sync(device)
            # stacked: one tick per epoch for all models; one after another: one per epoch of each model
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            return statistics.median(gaps) / (models if stack else 1)
        result["stacked_models"] = models
        result["stacked_s_per_model_epoch"] = round(per_model_epoch(True), 4)
        result["one_at_a_time_s_per_model_epoch"] = round(per_model_epoch(False), 4)
        result["stacked_speedup"] = round(result["one_at_a_time_s_per_model_epoch"] /
                                          result["stacked_s_per_model_epoch"], 3)
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
