"""Building blocks that export cleanly to ONNX and quantize well to INT8 (conv, BN, ReLU-family only)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts to multiples of 8: SIMD-friendly and what pruning later rounds to as well."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=True)


class ConvBN(nn.Sequential):
    """conv -> BatchNorm -> activation (the BN folds into the conv at export)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        s: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        bn: bool = True,
    ):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        if act:
            layers.append(activation(act))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: float, act: str, bn: bool = True):
        super().__init__()
        hidden = make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBN(cin, hidden, 1, act=act, bn=bn))
        layers += [
            ConvBN(hidden, hidden, 3, stride, groups=hidden, act=act, bn=bn),
            ConvBN(hidden, cout, 1, act=None, bn=bn),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class FusedResidual(nn.Module):
    """Fused-MBConv (EfficientNetV2) at expansion 1: dense 3x3 -> 1x1 project, add, ReLU.

    Dense convolutions where a MobileNet block has a depthwise one: they run on the CPU's INT8 (VNNI/AMX) kernels, and
    fewer, heavier layers pay less per-layer overhead.
    """

    def __init__(self, channels: int, act: str = "relu", bn: bool = True):
        super().__init__()
        self.block = nn.Sequential(
            ConvBN(channels, channels, 3, act=act, bn=bn), ConvBN(channels, channels, 1, act=None, bn=bn)
        )
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.block(x))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast (YOLOv5/v8): three chained 5x5 max-pools widen the receptive field of the last
    stage to the whole input for the cost of two 1x1 convs; the neck then carries that context down to P3/P4."""

    def __init__(self, channels: int, act: str = "relu"):
        super().__init__()
        hidden = channels // 2
        self.reduce = ConvBN(channels, hidden, 1, act=act)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.fuse = ConvBN(hidden * 4, channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        p1 = self.pool(x)
        p2 = self.pool(p1)
        return self.fuse(torch.cat([x, p1, p2, self.pool(p2)], 1))


class GaussianNoise(nn.Module):
    """Hidden-layer noise injection: adds N(0, std) during training only, identity at inference/export."""

    def __init__(self, std: float = 0.0):
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x
