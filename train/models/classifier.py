"""ECNet: compact classifiers for 64-224 px inputs.

`ecnet_s` / `ecnet_m` are dense (`ECNetDense`: stride-2 3x3 convs and fused residual blocks, ReLU): on this CPU class
their INT8 forms run 1.25x (ONNX Runtime) to 2.3x (OpenVINO) faster than FP32 and pruning speeds them up in proportion,
where the MobileNetV2-style `ECNet` (kept for `ecnet_tiny` and tests) gained nothing from INT8, as depthwise convs do.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecam.train.models.layers import ConvBN, FusedResidual, GaussianNoise, InvertedResidual, make_divisible
from edgecam.train.registry import register_model

# (expand ratio, output channels at width 1.0, repeats, first stride)
_STAGES = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 80, 2, 2), (4, 112, 1, 1), (4, 160, 1, 2)]


class PooledClassifier(nn.Module):
    """features -> (training noise) -> global pooling -> dropout -> linear: the end both families share."""

    def __init__(
        self, features: list[nn.Module], channels: int, num_classes: int, pooling: str, dropout: float, noise: float
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError("a classifier needs at least 2 classes")
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
        self.features = nn.Sequential(*features)
        self.noise = GaussianNoise(noise)
        self.pool = nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.noise(self.features(x))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))


class ECNet(PooledClassifier):
    """Stem -> inverted-residual stages -> 1x1 head -> global pooling -> dropout -> linear."""

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        depth: float = 1.0,
        act: str = "relu6",
        pooling: str = "avg",
        dropout: float = 0.2,
        hidden_noise: float = 0.0,
        head_channels: int = 512,
        stages: int = len(_STAGES),
        batchnorm: bool = True,
    ):
        cin = make_divisible(16 * width)
        bn = batchnorm
        layers: list[nn.Module] = [ConvBN(3, cin, 3, 2, act=act, bn=bn)]
        for expand, channels, repeats, stride in _STAGES[:stages]:
            cout = make_divisible(channels * width)
            for i in range(max(1, round(repeats * depth))):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, act, bn))
                cin = cout
        head = make_divisible(head_channels * min(width, 1.0))
        layers.append(ConvBN(cin, head, 1, act=act, bn=bn))
        super().__init__(layers, head, num_classes, pooling, dropout, hidden_noise)


def init_weights(model: nn.Module) -> None:
    """He init for convs, unit BN, small linear weights: what both families train from."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class ECNetDense(PooledClassifier):
    """Stride-2 dense 3x3 stages, a fused residual block after each but the first -> 1x1 head -> pool -> linear.

    No depthwise convs and few, heavy layers: the work lands on the CPU's INT8 (VNNI/AMX) kernels, and removing
    channels removes time in proportion.
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        head_channels: int = 256,
        act: str = "relu",
        pooling: str = "avg",
        dropout: float = 0.2,
        hidden_noise: float = 0.0,
        batchnorm: bool = True,
    ):
        layers: list[nn.Module] = []
        cin = 3
        for i, channels in enumerate(widths):
            cout = make_divisible(channels * width)
            layers.append(ConvBN(cin, cout, 3, 2, act=act, bn=batchnorm))
            if i > 0:  # none at the first, full-resolution stage, where a 3x3 conv costs the most
                layers.append(FusedResidual(cout, act, bn=batchnorm))
            cin = cout
        head = make_divisible(head_channels * width)
        layers.append(ConvBN(cin, head, 1, act=act, bn=batchnorm))
        super().__init__(layers, head, num_classes, pooling, dropout, hidden_noise)


@register_model("classify")
def ecnet_s(num_classes: int, **kwargs) -> ECNetDense:
    """Small, dense: the default for shelf-slot crops and scene classification at 64-128 px (0.025 GFLOPs at 64)."""
    kwargs.pop("depth", None)  # one block per stage: depth does not apply
    return ECNetDense(num_classes, **kwargs)


@register_model("classify")
def ecnet_m(num_classes: int, **kwargs) -> ECNetDense:
    """Medium, dense: 1.5x the width, for harder data at 128-224 px."""
    kwargs.pop("depth", None)
    return ECNetDense(num_classes, **{"width": 1.5, **kwargs})


@register_model("classify")
def ecnet_tiny(num_classes: int, **kwargs) -> ECNet:
    """Tiny: for very small inputs or tight budgets."""
    return ECNet(num_classes, **{"width": 0.35, "depth": 0.5, "head_channels": 128, "stages": 5, **kwargs})


@register_model("classify")
def test_tiny(num_classes: int, **kwargs) -> ECNet:
    """A few thousand parameters: for tests that must run in seconds."""
    return ECNet(num_classes, **{"width": 0.25, "depth": 0.34, "head_channels": 32, "stages": 3, **kwargs})
