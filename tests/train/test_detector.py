import pytest
import torch
from torch import nn

from edgecam.train.flops import count_flops
from edgecam.train.registry import create_model, list_models


@pytest.mark.parametrize("name", list_models("detect"))
def test_every_detector_keeps_the_output_contract(name):
    """One raw output [N, A, 4 + C], anchors at strides 8/16/32 in that order (what decode and the loss read)."""
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 96))
    assert model.strides == (8, 16, 32)
    assert out.shape == (2, sum((64 // s) * (96 // s) for s in model.strides), 4 + 5)


@pytest.mark.parametrize("name", list_models("detect"))
def test_detectors_are_int8_friendly(name):
    """Dense convs and ReLU only: depthwise convs and non-ReLU activations gain nothing from INT8 on the CPU."""
    modules = list(create_model(name, num_classes=3).modules())
    assert not [m for m in modules if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert {type(m) for m in modules if not list(m.children())} <= {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Upsample}


def test_the_default_detector_fits_its_compute_budget():
    """ecdet_s at 320 px stays within 0.85 GFLOPs (about a third of YOLOv8n's 2.2 at the same size, the latency
    budget of the real-image benchmark), ecdet_n within 0.6, and the tiny model stays tiny."""
    small = count_flops(create_model("ecdet_s", num_classes=17), (3, 320, 320))
    nano = count_flops(create_model("ecdet_n", num_classes=17), (3, 320, 320))
    tiny = count_flops(create_model("test_det_tiny", num_classes=17), (3, 320, 320))
    assert nano["gflops"] <= 0.6 < small["gflops"] <= 0.85
    assert tiny["gflops"] < small["gflops"] / 10 and tiny["params_m"] < 0.1


@pytest.mark.parametrize("num_classes", [1, 10, 80])
def test_initial_class_scores_expect_a_few_objects_per_level_not_a_flat_prior(num_classes):
    """At initialisation each level's class scores add up to about five objects in a 640 px image (YOLOv8's bias
    init), at most 0.01 each: a flat 0.01 on every anchor and class made the negatives' loss swamp the positives' in
    the first epochs, and the class branch learnt nothing on real images for ten epochs."""
    model = create_model("ecdet_s", num_classes=num_classes).eval()
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.zeros(1, 3, 640, 640))[0, :, 4:])
    anchors = [(640 // s) ** 2 for s in model.strides]
    start = 0
    for n in anchors:
        level = scores[start : start + n]
        start += n
        assert level.max() <= 0.0101
        if 5.0 / num_classes / n <= 0.01:
            assert level.sum() == pytest.approx(5.0, rel=0.35)  # the conv weights add noise around the bias
