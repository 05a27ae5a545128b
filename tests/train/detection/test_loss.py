import numpy as np
import pytest
import torch

from edgecam.runtime.decode import anchor_points, decode_boxes
from edgecam.train.detection.loss import DetectionLoss, box_iou_pairs, decode_ltrb
from edgecam.train.registry import create_model

STRIDES = (8, 16, 32)


def test_torch_decode_is_the_runtime_decode():
    """The loss decodes in torch (for gradients); it must be the same math as the device's numpy decoder."""
    pts, st = anchor_points(64, 96, STRIDES)
    raw = np.random.default_rng(0).normal(0, 2, (len(pts), 4)).astype(np.float32)
    ours = decode_ltrb(torch.from_numpy(raw), torch.from_numpy(pts.copy()), torch.from_numpy(st.copy())).numpy()
    np.testing.assert_allclose(ours, decode_boxes(raw, pts, st), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("a", "b", "iou", "giou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0, 1.0),
        ([0, 0, 10, 10], [0, 0, 10, 5], 0.5, 0.5),
        ([0, 0, 10, 10], [20, 0, 30, 10], 0.0, -1 / 3),  # hull 30x10, union 200
    ],
)
def test_iou_and_giou(a, b, iou, giou):
    got_iou, got_giou = box_iou_pairs(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))
    assert got_iou.item() == pytest.approx(iou, abs=1e-5)
    assert got_giou.item() == pytest.approx(giou, abs=1e-5)


def _assign(targets, hw=(64, 64), num_classes=3, seed=0):
    crit = DetectionLoss(num_classes, STRIDES)
    pts, st = crit.grid(*hw)
    torch.manual_seed(seed)
    n = int(targets[:, 0].max().item()) + 1 if len(targets) else 1
    scores = torch.rand(n, len(pts), num_classes)
    boxes = decode_ltrb(torch.zeros(n, len(pts), 4), pts, st)
    return crit.assign(scores, boxes, targets, pts, st, n), pts


@pytest.mark.parametrize(
    "box",
    [[8, 8, 40, 40], [30, 30, 35, 34], [0, 0, 64, 64], [50, 2, 62, 20]],  # medium, smaller than a stride, whole image
)
def test_every_box_gets_positives_near_it(box):
    targets = torch.tensor([[0, 1, *box]], dtype=torch.float32)
    (scores, tboxes, fg), pts = _assign(targets)
    assert fg[0].any()
    x1, y1, x2, y2 = box
    p = pts[fg[0]]
    margin = 2.5 * 32
    assert ((p[:, 0] > x1 - margin) & (p[:, 0] < x2 + margin) & (p[:, 1] > y1 - margin) & (p[:, 1] < y2 + margin)).all()
    assert torch.allclose(tboxes[0][fg[0]], torch.tensor(box, dtype=torch.float32))
    assert (scores[0][fg[0]][:, [0, 2]] == 0).all(), "only the box's class gets a target score"
    assert (scores[0][fg[0]][:, 1] >= 0).all() and scores[0][fg[0]][:, 1].max() <= 1.0


def test_no_boxes_no_positives_and_anchors_are_not_shared():
    targets = torch.tensor([[1, 0, 0, 0, 40, 40], [1, 2, 20, 20, 64, 64]], dtype=torch.float32)
    (scores, tboxes, fg), _ = _assign(targets)
    assert not fg[0].any() and scores[0].sum() == 0
    owners = scores[1].gt(0).sum(-1)
    assert owners.max() <= 1, "an anchor is assigned to one box at most"


def test_a_tiny_detector_overfits_one_image():
    torch.manual_seed(0)
    model = create_model("test_det_tiny", num_classes=2)
    crit = DetectionLoss(2, STRIDES)
    x = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 4, 4, 30, 40], [0, 1, 34, 10, 60, 60], [1, 1, 10, 10, 50, 50]])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for _ in range(60):
        loss, _ = crit(model(x), targets.float(), (64, 64))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
