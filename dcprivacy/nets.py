"""Networks: the condensation literature's ConvNet, an MLP, and linear extractors.

Every model here is a plain ``nn.Module`` without running statistics, so it works unchanged
under ``torch.func.functional_call`` + ``vmap`` (many models at once, see :mod:`dcprivacy.train`)
and as a frozen random feature extractor (see :mod:`dcprivacy.condense`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

NORMS = ("instancenorm", "groupnorm", "layernorm", "none")


def _norm(kind: str, channels: int, size: int) -> nn.Module:
    if kind == "instancenorm":  # one group per channel: statistics of each image and channel alone
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(min(4, channels), channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, size, size], elementwise_affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r}: allowed values are {', '.join(NORMS)}")


def _convnet_map_size(norm: str, width: int, depth: int, im_size: int) -> int:
    """The ConvNet's arguments, checked before anything is built; the side of its first feature maps."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: allowed values are {', '.join(NORMS)}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth={depth}, width={width}: both must be at least 1")
    size = 32 if im_size == 28 else im_size  # 28×28 images are zero-padded to 32×32 by the first conv
    if size % (2 ** depth):
        raise ValueError(f"im_size={im_size} cannot be halved {depth} times (depth={depth})")
    return size


class AvgPool2x2(nn.Module):
    """2×2 average pooling with stride 2 — ``nn.AvgPool2d(2, 2)`` on maps of even size, summed as
    (top-left + bottom-left) + (top-right + bottom-right), so the same numbers up to rounding.

    Written as two strided additions because PyTorch's CPU kernel for ``avg_pool2d`` on NCHW maps is
    slow — several times slower than a pass over the memory in float32, more in bfloat16 — and the
    first block's maps (128 channels × 32 × 32 per image) make pooling a large share of a ConvNet's
    time (``python -m dcprivacy bench evaluate`` and ``bench condense`` measure it). Works on any
    leading dimensions (also under ``vmap``) and in either memory layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.unflatten(-1, (-1, 2)).unflatten(-3, (-1, 2))  # [..., H/2, 2, W/2, 2]
        columns = v.select(-3, 0) + v.select(-3, 1)  # [..., H/2, W/2, 2]: the two rows of each window
        return (columns.select(-1, 0) + columns.select(-1, 1)) * 0.25


class FirstConv(nn.Conv2d):
    """The ConvNet's first convolution: an ``nn.Conv2d`` that stays in float32 under mixed precision
    (``torch.autocast``) while its weight is being trained. With one (or three) input channels its weight
    gradient in bfloat16 measured several times slower on a CPU than in float32, and its share of the
    network's arithmetic is small. Everywhere else it is a plain convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ConvNet(nn.Module):
    """The ConvNet of Zhao et al. (DC), DSA and DM: ``depth`` blocks of 3×3 conv → norm → ReLU → 2×2
    average pool (:class:`FirstConv`, :class:`AvgPool2x2`: faster paths on a CPU), then a linear head.
    28×28 inputs (MNIST-like) are zero-padded by 3 in the first conv, so the maps are 32×32 as for
    CIFAR-10. With the defaults (width 128, depth 3) the features are 128·4·4 = 2048 numbers. No running
    statistics: ``instancenorm`` is ``GroupNorm(width, width)``, computed per image, so a batch of many
    classes gives exactly what each class alone would.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm", im_size: int = 28):
        super().__init__()
        size = _convnet_map_size(norm, width, depth, im_size)
        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            conv = FirstConv if d == 0 else nn.Conv2d
            layers += [conv(in_ch, width, 3, padding=3 if (d == 0 and im_size == 28) else 1),
                       _norm(norm, width, size), nn.ReLU(inplace=False), AvgPool2x2()]
            in_ch, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features (what DM matches)."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """A ReLU MLP on flattened images; ``embed()`` is the last hidden layer."""

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 128, depth: int = 2,
                 im_size: int = 28):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth={depth}, width={width}: both must be at least 1")
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = channels * im_size * im_size
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class LinearExtractor(nn.Module):
    """ψ_θ(x) = θ·vec(x) with θ ∈ R^{k×d} drawn i.i.d. N(0, 1): the extractor of the linear theory."""

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 128, im_size: int = 28):
        super().__init__()
        d = channels * im_size * im_size
        self.theta = nn.Linear(d, width, bias=False)
        nn.init.normal_(self.theta.weight, 0.0, 1.0)
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"convnet": ConvNet, "mlp": MLP, "linear": LinearExtractor}


def make_net(arch: str = "convnet", *, channels: int = 1, num_classes: int = 10, im_size: int = 28,
             seed: int | None = None, **kwargs) -> nn.Module:
    """Build a network by name; with ``seed`` its initial weights depend on that seed alone."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: allowed values are {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    if seed is None:
        return cls(channels=channels, num_classes=num_classes, im_size=im_size, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(channels=channels, num_classes=num_classes, im_size=im_size, **kwargs)


def net_factory(arch: str = "convnet", **kwargs) -> Callable[[int | None], nn.Module]:
    """A function ``seed -> fresh network`` with the architecture fixed (what training and DM take)."""
    make_net(arch, **kwargs)  # fail now, not deep inside a training loop, on a bad argument
    return lambda seed=None: make_net(arch, seed=seed, **kwargs)


def conv_flops(net: nn.Module, im_size: int = 28, channels: int = 1) -> int:
    """Multiply-adds ×2 of one forward pass of one image through ``net.embed`` (convs + linears)."""
    flops = 0

    def hook(mod, inp, out):
        nonlocal flops
        if isinstance(mod, nn.Conv2d):
            k = math.prod(mod.kernel_size) * mod.in_channels // mod.groups
            flops += 2 * k * out[0].numel()
        elif isinstance(mod, nn.Linear):
            flops += 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net.embed(torch.zeros(1, channels, im_size, im_size, device=next(net.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return flops
