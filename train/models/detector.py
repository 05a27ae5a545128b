"""ECDet: a compact anchor-free detector (depthwise backbone, light PAN neck, decoupled heads at strides 8/16/32).

Only Conv/BN/ReLU/Add/Resize(nearest)/Concat/Reshape/Transpose: exports cleanly to ONNX and quantizes well. The single
output `preds` [N, A, 4 + C] is raw (log-distances and class logits); `edgecam.runtime.decode` turns it into boxes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgecam.train.models.layers import ConvBN, InvertedResidual, make_divisible
from edgecam.train.registry import register_model

STRIDES = (8, 16, 32)
# (expand, channels at width 1.0, repeats, first stride); stage outputs at strides 8, 16, 32 feed the neck
_BACKBONE = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 80, 2, 2), (4, 96, 1, 1), (4, 160, 2, 2)]
_TAPS = (2, 4, 5)  # indices of the stages whose outputs are P3, P4, P5


class DWSep(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1: the cheap workhorse of the neck and heads."""

    def __init__(self, cin: int, cout: int, stride: int = 1, act: str = "relu"):
        super().__init__(ConvBN(cin, cin, 3, stride, groups=cin, act=act), ConvBN(cin, cout, 1, act=act))


class Backbone(nn.Module):
    def __init__(self, width: float, depth: float, act: str):
        super().__init__()
        cin = make_divisible(16 * width)
        self.stem = ConvBN(3, cin, 3, 2, act=act)
        self.stages = nn.ModuleList()
        self.out_channels = []
        for i, (expand, channels, repeats, stride) in enumerate(_BACKBONE):
            cout = make_divisible(channels * width)
            blocks = []
            for j in range(max(1, round(repeats * depth))):
                blocks.append(InvertedResidual(cin, cout, stride if j == 0 else 1, expand, act))
                cin = cout
            self.stages.append(nn.Sequential(*blocks))
            if i in _TAPS:
                self.out_channels.append(cout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in _TAPS:
                outs.append(x)
        return outs


class PANLite(nn.Module):
    """Top-down then bottom-up fusion by addition at one common width."""

    def __init__(self, in_channels: list[int], ch: int, act: str):
        super().__init__()
        self.lateral = nn.ModuleList(ConvBN(c, ch, 1, act=act) for c in in_channels)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td = nn.ModuleList(DWSep(ch, ch, act=act) for _ in range(2))
        self.down = nn.ModuleList(ConvBN(ch, ch, 3, 2, groups=ch, act=act) for _ in range(2))
        self.bu = nn.ModuleList(DWSep(ch, ch, act=act) for _ in range(2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = (lat(f) for lat, f in zip(self.lateral, feats, strict=True))
        p4 = self.td[0](c4 + self.up(c5))
        p3 = self.td[1](c3 + self.up(p4))
        n4 = self.bu[0](p4 + self.down[0](p3))
        n5 = self.bu[1](c5 + self.down[1](n4))
        return [p3, n4, n5]


class Head(nn.Module):
    """Decoupled per-level branches: class logits and box log-distances."""

    def __init__(self, ch: int, num_classes: int, act: str, prior: float = 0.01):
        super().__init__()
        self.cls_branch = DWSep(ch, ch, act=act)
        self.reg_branch = DWSep(ch, ch, act=act)
        self.cls = nn.Conv2d(ch, num_classes, 1)
        self.reg = nn.Conv2d(ch, 4, 1)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.reg.weight, 0, 0.01)
        nn.init.constant_(self.reg.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.reg(self.reg_branch(x)), self.cls(self.cls_branch(x))], 1)  # N, 4 + C, H, W
        return out.flatten(2)


class ECDet(nn.Module):
    def __init__(
        self, num_classes: int, width: float = 0.5, depth: float = 0.67, neck: int = 64, act: str = "relu"
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = Backbone(width, depth, act)
        ch = make_divisible(neck)
        self.neck = PANLite(self.backbone.out_channels, ch, act)
        self.heads = nn.ModuleList(Head(ch, num_classes, act) for _ in STRIDES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.neck(self.backbone(x))
        out = torch.cat([head(f) for head, f in zip(self.heads, feats, strict=True)], 2)  # N, 4 + C, A
        return out.transpose(1, 2)  # N, A, 4 + C


@register_model("detect")
def ecdet_s(num_classes: int, **kwargs) -> ECDet:
    """Small: the default detector for 320 px inputs."""
    return ECDet(num_classes, **{"width": 0.5, "depth": 0.67, "neck": 64, **kwargs})


@register_model("detect")
def ecdet_m(num_classes: int, **kwargs) -> ECDet:
    """Medium: wider, for harder scenes or 416-640 px inputs."""
    return ECDet(num_classes, **{"width": 0.75, "depth": 1.0, "neck": 96, **kwargs})


@register_model("detect")
def test_det_tiny(num_classes: int, **kwargs) -> ECDet:
    """Tiny: for tests that must run in seconds."""
    return ECDet(num_classes, **{"width": 0.25, "depth": 0.34, "neck": 16, **kwargs})
