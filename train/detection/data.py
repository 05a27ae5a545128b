"""Torch dataset for detection: images decoded once and kept in memory, box-aware augmentation, then the one
shared preprocessing; targets come out in model-input pixels."""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import read_image
from edgecam.runtime.preprocess import PreprocessSpec, preprocess

from .augment import DetAugmentConfig, Item, augment_detection, letterbox_boxes
from .samples import DetDataset


class DetectionDataset(Dataset):
    """(tensor CHW float32, targets (K, 5) float32 [class, x1, y1, x2, y2] in input pixels, index).

    Augmentation is seeded by (seed, epoch, index). The epoch and the mosaic switch live in a shared-memory
    tensor, so DataLoader workers (persistent ones too) see `set_epoch`/`close_mosaic` made before the
    epoch's iterator is created.
    """

    def __init__(self, det: DetDataset, spec: PreprocessSpec, aug: DetAugmentConfig | None, seed: int = 0):
        self.class_names = det.class_names
        self.spec = spec
        self.aug = aug if aug is not None and aug.enabled else None
        self.seed = seed
        self._state = torch.tensor([0, 1], dtype=torch.int64).share_memory_()  # [epoch, mosaic on]
        self.samples, self.images, bad = [], [], []
        for sample in det.samples:
            try:
                self.images.append(read_image(sample.path))
                self.samples.append(sample)
            except EdgecamError:  # readable when listed, gone or broken since
                bad.append(str(sample.path))
        if bad:
            print(f"warning: skipped {len(bad)} unreadable image(s): {', '.join(bad[:3])}", file=sys.stderr)
        if not self.images:
            raise EdgecamError("no readable images", path=det.root, fix="check the dataset files")

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    @property
    def mosaic(self) -> bool:
        return bool(self._state[1])

    def set_epoch(self, epoch: int) -> None:
        """Different, yet reproducible, augmentation every epoch."""
        self._state[0] = int(epoch)

    def close_mosaic(self, closed: bool = True) -> None:
        """Turn mosaic off (YOLO trainers do for the last epochs, so the model ends on whole, real images)."""
        self._state[1] = 0 if closed else 1

    def __len__(self) -> int:
        return len(self.images)

    def _item(self, index: int) -> Item:
        s = self.samples[index]
        return self.images[index], s.xyxy, s.classes

    def _mosaic_items(self, rng: np.random.Generator) -> list[Item]:
        return [self._item(int(i)) for i in rng.integers(0, len(self), 3)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img, boxes, classes = self._item(index)
        if self.aug is not None:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            cfg = self.aug if self.mosaic else self.aug.without_mosaic()
            size = (self.spec.width, self.spec.height)
            img, boxes, classes = augment_detection(img, boxes, classes, rng, cfg, size, self._mosaic_items)
        tensor, letterbox = preprocess(img, self.spec)
        xyxy = letterbox_boxes(boxes, letterbox)
        xyxy = np.clip(xyxy, 0, np.float32([self.spec.width, self.spec.height] * 2))
        targets = np.concatenate([classes.astype(np.float32)[:, None], xyxy], 1).reshape(-1, 5)
        return torch.from_numpy(tensor), torch.from_numpy(np.ascontiguousarray(targets)), index


def collate_detection(
    batch: list[tuple[torch.Tensor, torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> images (N, 3, H, W), targets (M, 6) [batch_idx, class, x1, y1, x2, y2], dataset indices (N,)."""
    images = torch.stack([b[0] for b in batch])
    rows = [torch.cat([torch.full((len(t), 1), float(i)), t], 1) for i, (_, t, _) in enumerate(batch)]
    targets = torch.cat(rows) if rows else torch.zeros((0, 6))
    indices = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return images, targets.float(), indices
