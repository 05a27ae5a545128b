"""`edgecam val CHECKPOINT`: the PyTorch model through the same evaluation code as every exported variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.evaluate import evaluate_classifier
from edgecam.train.checkpoint import load_checkpoint


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path) -> dict[str, Any]:
    model, meta = load_checkpoint(checkpoint)
    if meta["task"] != "classify":
        raise EdgecamError(f"validation of {meta['task']} checkpoints is not supported yet", path=checkpoint)

    @torch.no_grad()
    def predict(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch)).numpy()

    report = evaluate_classifier(predict, data, meta["preprocess_spec"], tuple(meta["class_names"]))
    report.update(model=str(checkpoint), variant="pytorch", backend="pytorch")
    return report
