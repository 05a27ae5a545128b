"""Detector loss: task-aligned assignment (TOOD/YOLOv8 style), quality-aware classification, GIoU boxes.

The class target of a positive anchor is its normalised alignment (score^a x IoU^b), so the predicted score estimates
localisation quality as well as class: the runtime ranks and thresholds one number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgecam.runtime.decode import anchor_points

MAX_LOG = 8.0  # the runtime clips log-distances to the same range


def decode_ltrb(raw: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Torch twin of `edgecam.runtime.decode.decode_boxes` (needed for gradients); the tests pin them together."""
    dist = torch.exp(raw.clamp(-MAX_LOG, MAX_LOG)) * strides[:, None]
    return torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1)


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise IoU and GIoU of matching boxes (..., 4)."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + eps
    iou = inter / union
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1) + eps
    return iou, iou - (hull - union) / hull


class DetectionLoss(nn.Module):
    def __init__(
        self,
        num_classes: int,
        strides: tuple[int, ...],
        topk: int = 10,
        alpha: float = 1.0,
        beta: float = 6.0,
        center_radius: float = 2.5,
        cls_weight: float = 1.0,
        box_weight: float = 2.5,
    ):
        super().__init__()
        self.num_classes, self.strides = num_classes, tuple(strides)
        self.topk, self.alpha, self.beta, self.radius = topk, alpha, beta, center_radius
        self.cls_weight, self.box_weight = cls_weight, box_weight
        self._grid: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def grid(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (h, w) not in self._grid:
            pts, st = anchor_points(h, w, self.strides)
            self._grid[(h, w)] = (torch.from_numpy(pts.copy()).float(), torch.from_numpy(st.copy()).float())
        return self._grid[(h, w)]

    def forward(self, preds: torch.Tensor, targets: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, dict]:
        """preds (N, A, 4 + C) raw; targets (M, 6) [batch_idx, class, x1, y1, x2, y2] in input pixels."""
        n = preds.shape[0]
        points, strides = self.grid(*hw)
        boxes = decode_ltrb(preds[..., :4], points, strides)  # N, A, 4
        logits = preds[..., 4:]
        with torch.no_grad():
            target_scores, target_boxes, fg = self.assign(logits.sigmoid(), boxes, targets, points, strides, n)
        norm = target_scores.sum().clamp(min=1.0)
        cls_loss = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / norm
        if fg.any():
            _, giou = box_iou_pairs(boxes[fg], target_boxes[fg])
            weight = target_scores.sum(-1)[fg].clamp(min=0.05)  # early on IoUs are ~0: still learn the box
            box_loss = ((1.0 - giou) * weight).sum() / norm
        else:
            box_loss = boxes.sum() * 0.0
        loss = self.cls_weight * cls_loss + self.box_weight * box_loss
        return loss, {"cls": float(cls_loss.detach()), "box": float(box_loss.detach()), "fg": int(fg.sum())}

    def assign(self, scores, boxes, targets, points, strides, n):
        """Per image: candidates = anchors inside the box or near its centre; top-k by alignment; one box per anchor."""
        a, c = scores.shape[1], scores.shape[2]
        target_scores = torch.zeros(n, a, c)
        target_boxes = torch.zeros(n, a, 4)
        fg = torch.zeros(n, a, dtype=torch.bool)
        for i in range(n):
            gt = targets[targets[:, 0] == i]
            if len(gt) == 0:
                continue
            cls, gbox = gt[:, 1].long(), gt[:, 2:6]  # G, 4
            # candidate mask G x A
            inside = (points[None, :, 0] > gbox[:, None, 0]) & (points[None, :, 0] < gbox[:, None, 2])
            inside &= (points[None, :, 1] > gbox[:, None, 1]) & (points[None, :, 1] < gbox[:, None, 3])
            centre = (gbox[:, :2] + gbox[:, 2:]) / 2
            near = ((points[None] - centre[:, None]).abs() < self.radius * strides[None, :, None]).all(-1)
            cand = inside | (near & self._small(gbox, strides))
            iou, _ = box_iou_pairs(gbox[:, None, :], boxes[i][None, :, :])  # G, A
            score = scores[i][:, cls].T  # G, A
            align = score.pow(self.alpha) * iou.pow(self.beta) * cand
            k = min(self.topk, a)
            top = align.topk(k, dim=1).indices
            chosen = torch.zeros_like(cand)
            chosen.scatter_(1, top, True)
            chosen &= cand
            # an anchor claimed by several boxes goes to the one it overlaps most
            multi = chosen.sum(0) > 1
            if multi.any():
                best = (iou * chosen).argmax(0)
                keep = torch.zeros_like(chosen)
                keep[best, torch.arange(a)] = True
                chosen = torch.where(multi[None], keep & chosen, chosen)
            pos = chosen.any(0)
            if not pos.any():
                continue
            owner = chosen.float().argmax(0)  # A
            align_c = align * chosen
            # normalise: the best anchor of each box gets that box's best IoU as its target score
            norm = align_c.amax(1, keepdim=True) + 1e-9
            t = (align_c / norm * (iou * chosen).amax(1, keepdim=True)).amax(0)  # A
            fg[i] = pos
            target_boxes[i] = gbox[owner]
            target_scores[i, pos, cls[owner[pos]]] = t[pos]
        return target_scores, target_boxes, fg

    @staticmethod
    def _small(gbox: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """Centre-prior candidates only help boxes too small to hold anchor centres at that stride."""
        size = (gbox[:, 2:] - gbox[:, :2]).min(-1).values  # G
        return size[:, None] < 2 * strides[None, :]
