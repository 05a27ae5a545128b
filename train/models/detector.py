"""ECDet: a compact anchor-free detector built for INT8 on the CPU (dense 3x3 convs, ReLU, strides 8/16/32).

Why dense: the previous depthwise-separable design (MobileNetV2 blocks, DWSep neck and heads) ran no faster in INT8
than in FP32 under OpenVINO: depthwise convs gain nothing from INT8, its many thin 1x1 convs were memory-bound, and the
fixed costs (quantizing the input, reorders) ate the rest. Here every layer is a plain conv: stride-2 3x3 convs
downsample, fused-MBConv residual blocks (3x3 + 1x1, EfficientNetV2) work at strides 8-32, a PAN neck fuses by
addition with 3x3 convs, and decoupled heads use one (ecdet_n) or two (ecdet_s, ecdet_m) 3x3 convs per branch. About
3x the FLOPs of the depthwise design, yet INT8 runs faster than it did and more than 2x faster than FP32, since the
work lands on the VNNI/AMX kernels.

Only Conv/BN/ReLU/Add/Resize(nearest)/Concat/Reshape/Transpose: exports cleanly to ONNX and quantizes well. The single
output `preds` [N, A, 4 + C] is raw (log-distances and class logits); `edgecam.runtime.decode` turns it into boxes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgecam.train.models.layers import SPPF, ConvBN, FusedResidual, make_divisible
from edgecam.train.registry import register_model

STRIDES = (8, 16, 32)
# (channels at width 1.0, residual blocks at depth 1.0) per stride-2 stage: strides 2, 4, 8, 16, 32. No blocks at
# strides 2 and 4, where a 3x3 conv costs the most per channel; the last three stages feed the neck.
_BACKBONE = [(16, 0), (32, 0), (48, 1), (96, 1), (128, 1)]
_NECK_RATIO = (0.5, 0.75, 1.0)  # neck widths at P3, P4, P5 relative to `neck`: thinner where the maps are larger


class Backbone(nn.Module):
    def __init__(self, width: float, depth: float, act: str, blocks: tuple[int, ...] | None = None, sppf: bool = False):
        super().__init__()
        self.stages = nn.ModuleList()
        cin = 3
        repeats = blocks or [round(r * depth) for _, r in _BACKBONE]
        if len(repeats) != len(_BACKBONE):
            raise ValueError(f"blocks needs {len(_BACKBONE)} counts (strides 2..32), got {list(repeats)}")
        for (channels, _), n in zip(_BACKBONE, repeats, strict=True):
            cout = make_divisible(channels * width)
            layers: list[nn.Module] = [ConvBN(cin, cout, 3, 2, act=act)]
            layers += [FusedResidual(cout, act) for _ in range(n)]
            self.stages.append(nn.Sequential(*layers))
            cin = cout
        if sppf:
            self.stages[-1].append(SPPF(cin, act))
        self.out_channels = [make_divisible(c * width) for c, _ in _BACKBONE[-3:]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[-3:]


class PAN(nn.Module):
    """Top-down then bottom-up fusion by addition; a 3x3 conv after each fusion, 1x1 convs to change width."""

    def __init__(self, in_channels: list[int], widths: list[int], act: str):
        super().__init__()
        c3, c4, c5 = widths
        self.lateral = nn.ModuleList(ConvBN(ci, co, 1, act=act) for ci, co in zip(in_channels, widths, strict=True))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce = nn.ModuleList([ConvBN(c5, c4, 1, act=act), ConvBN(c4, c3, 1, act=act)])
        self.td = nn.ModuleList([ConvBN(c4, c4, 3, act=act), ConvBN(c3, c3, 3, act=act)])
        self.down = nn.ModuleList([ConvBN(c3, c4, 3, 2, act=act), ConvBN(c4, c5, 3, 2, act=act)])
        self.bu = nn.ModuleList([ConvBN(c4, c4, 3, act=act), ConvBN(c5, c5, 3, act=act)])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = (lat(f) for lat, f in zip(self.lateral, feats, strict=True))
        p4 = self.td[0](c4 + self.up(self.reduce[0](c5)))
        p3 = self.td[1](c3 + self.up(self.reduce[1](p4)))
        n4 = self.bu[0](p4 + self.down[0](p3))
        n5 = self.bu[1](c5 + self.down[1](n4))
        return [p3, n4, n5]


def _branch(cin: int, cout: int, depth: int, act: str) -> nn.Module:
    """`depth` 3x3 convs; a single one stays a bare ConvBN so 0.2.0 checkpoints keep their parameter names."""
    convs = [ConvBN(cin if i == 0 else cout, cout, 3, act=act) for i in range(depth)]
    return convs[0] if depth == 1 else nn.Sequential(*convs)


class Head(nn.Module):
    """Decoupled per-level branches of `depth` 3x3 convs: class logits and box log-distances.

    The class branch is at least `cls_width` wide: telling classes apart by shape needs more features than the thin
    P3 level of the neck carries (YOLOv8 widens its class branch the same way).
    """

    def __init__(self, ch: int, num_classes: int, act: str, prior: float = 0.01, depth: int = 1, cls_width: int = 0):
        super().__init__()
        cw = max(ch, cls_width)
        self.cls_branch = _branch(ch, cw, depth, act)
        self.reg_branch = _branch(ch, ch, depth, act)
        self.cls = nn.Conv2d(cw, num_classes, 1)
        self.reg = nn.Conv2d(ch, 4, 1)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.reg.weight, 0, 0.01)
        nn.init.constant_(self.reg.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.reg(self.reg_branch(x)), self.cls(self.cls_branch(x))], 1)  # N, 4 + C, H, W
        return out.flatten(2)


def _level_prior(stride: int, num_classes: int, objects: float = 5.0, size: int = 640) -> float:
    """Initial class score of a level: `objects` per image spread over the classes and the level's anchors (YOLOv8's
    bias init). A flat 0.01 makes the first epochs push 10-100x more negative gradient than positive."""
    return min(0.01, objects / num_classes / (size / stride) ** 2)


class ECDet(nn.Module):
    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        depth: float = 1.0,
        neck: int = 64,
        act: str = "relu",
        head_depth: int = 1,
        cls_width: int = 0,
        blocks: tuple[int, ...] | None = None,
        sppf: bool = False,
        prior_scale: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = Backbone(width, depth, act, tuple(blocks) if blocks else None, sppf)
        widths = [make_divisible(neck * r) for r in _NECK_RATIO]
        self.neck = PAN(self.backbone.out_channels, widths, act)
        priors = [_level_prior(s, num_classes) if prior_scale else 0.01 for s in STRIDES]
        self.heads = nn.ModuleList(
            Head(ch, num_classes, act, prior=p, depth=head_depth, cls_width=cls_width)
            for ch, p in zip(widths, priors, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.neck(self.backbone(x))
        out = torch.cat([head(f) for head, f in zip(self.heads, feats, strict=True)], 2)  # N, 4 + C, A
        return out.transpose(1, 2)  # N, A, 4 + C


@register_model("detect")
def ecdet_n(num_classes: int, **kwargs) -> ECDet:
    """Nano: one conv per head branch (0.57 GFLOPs at 320 px): the fastest, for classes told apart easily."""
    return ECDet(num_classes, **{"width": 1.0, "depth": 1.0, "neck": 64, **kwargs})


@register_model("detect")
def ecdet_s(num_classes: int, **kwargs) -> ECDet:
    """Small: the default detector for 320 px inputs. Two convs per head branch and a class branch at least 64 wide
    (0.81 GFLOPs): on real images, where classes differ by shape, the class branch is what learns slowest."""
    return ECDet(num_classes, **{"width": 1.0, "depth": 1.0, "neck": 64, "head_depth": 2, "cls_width": 64, **kwargs})


@register_model("detect")
def ecdet_m(num_classes: int, **kwargs) -> ECDet:
    """Medium: wider, for harder scenes or 416-640 px inputs."""
    return ECDet(num_classes, **{"width": 1.5, "depth": 1.0, "neck": 96, "head_depth": 2, "cls_width": 96, **kwargs})


@register_model("detect")
def test_det_tiny(num_classes: int, **kwargs) -> ECDet:
    """Tiny: for tests that must run in seconds."""
    return ECDet(num_classes, **{"width": 0.25, "depth": 0.34, "neck": 16, **kwargs})
