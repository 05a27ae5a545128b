"""Torch datasets over the shared ImageFolder reader; images are decoded once and kept in memory."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from edgecam.runtime.imagefolder import Split, load_images
from edgecam.runtime.preprocess import PreprocessSpec, preprocess
from edgecam.train.augment import AugmentConfig, augment


class ClassificationDataset(Dataset):
    """(tensor, label) pairs: augmentation (train only) then the one shared preprocessing."""

    def __init__(self, split: Split, spec: PreprocessSpec, aug: AugmentConfig | None, seed: int, label: str):
        self.images, self.targets, self.skipped = load_images(split, label)
        self.classes = split.classes
        self.spec = spec
        self.aug = aug if aug is not None and aug.enabled else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Different, yet reproducible, augmentation every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.aug is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            img = augment(img, rng, self.aug)
        tensor, _ = preprocess(img, self.spec)
        return torch.from_numpy(tensor), self.targets[index]

    def class_counts(self) -> list[int]:
        return np.bincount(np.asarray(self.targets), minlength=len(self.classes)).tolist()
