import pytest
import torch
from torch import nn

from edgecam.runtime.errors import EdgecamError
from edgecam.train.flops import count_flops
from edgecam.train.registry import create_model, list_models, model_task, register_model


def test_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_model("classify")
        def ecnet_s(num_classes: int):  # noqa: ARG001 - same name as the built-in
            return None


def test_unknown_model_names_the_choices():
    with pytest.raises(EdgecamError, match="ecnet_s"):
        create_model("no_such_model", num_classes=3)


@pytest.mark.parametrize("name", list_models("classify"))
@pytest.mark.parametrize("size", [64, 96])
def test_every_classifier_runs_at_small_inputs(name, size):
    model = create_model(name, num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 4)
    assert model_task(name) == "classify"


@pytest.mark.parametrize(
    ("kwargs", "present", "absent"),
    [
        ({"batchnorm": True}, nn.BatchNorm2d, None),
        ({"batchnorm": False}, None, nn.BatchNorm2d),
        ({"pooling": "max"}, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d),
        ({"pooling": "avg"}, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
        ({"act": "hardswish"}, nn.Hardswish, nn.ReLU6),
        ({"act": "relu"}, nn.ReLU, nn.ReLU6),
    ],
)
def test_switches_change_the_architecture(kwargs, present, absent):
    types = {type(m) for m in create_model("ecnet_s", num_classes=3, **kwargs).modules()}
    if present:
        assert present in types
    if absent:
        assert absent not in types


def test_dropout_and_hidden_noise_only_act_in_training():
    model = create_model("test_tiny", num_classes=3, dropout=0.5, hidden_noise=1.0)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)


def test_width_multiplier_scales_flops_and_params():
    small = count_flops(create_model("ecnet_s", num_classes=3, width=0.5), (3, 96, 96))
    big = count_flops(create_model("ecnet_s", num_classes=3, width=1.0), (3, 96, 96))
    assert 0 < small["gflops"] < big["gflops"]
    assert 0 < small["params_m"] < big["params_m"]


def test_flops_count_matches_a_hand_computed_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels x 10x10 positions x 3 input channels x 3x3 kernel MACs, 2 FLOPs each
    assert count_flops(conv, (3, 10, 10))["gflops"] == pytest.approx(2 * 8 * 100 * 27 / 1e9, rel=1e-3)
