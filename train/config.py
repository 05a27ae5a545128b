"""Training configuration: one dataclass; YAML keys and command-line flags have the same names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgecam.runtime.errors import EdgecamError
from edgecam.train.augment import AugmentConfig


@dataclass
class TrainConfig:
    """Every regulariser is a switch here (0 / False = off)."""

    task: str = "classify"
    data: str = ""
    out: str = "runs/train"
    model: str = "ecnet_s"
    imgsz: int = 96
    epochs: int = 30
    batch: int = 64  # the global batch: under torchrun each of N processes takes batch / N per step
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-3
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | onecycle
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    # regularisation
    dropout: float = 0.2
    batchnorm: bool = True
    pooling: str = "avg"  # avg | max
    weight_decay: float = 5e-4  # L2 (decoupled for AdamW)
    l1: float = 0.0  # L1 penalty on weights, added to the loss
    input_noise: float = 0.0  # std of Gaussian noise added to the normalised input
    hidden_noise: float = 0.0  # std of Gaussian noise on the last feature map
    patience: int = 8  # early stopping on the validation metric (0 = off)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # detection
    mosaic: float = 0.5  # probability of a 4-image mosaic
    close_mosaic: int = 2  # turn mosaic off for the last N epochs
    ema: bool = True  # keep an exponential moving average of the weights (detection)
    cls_gain: float = 1.0  # detection loss: weight of the classification term
    box_gain: float = 2.5  # detection loss: weight of the box (GIoU) term
    workers: int = 0  # data-loading worker processes
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (CUDA only)
    weights: str | None = None  # start from this checkpoint (its architecture; new classes re-initialise the heads)
    # model shape overrides (None = the registered default)
    width: float | None = None
    act: str | None = None
    # run
    val_fraction: float = 0.2
    seed: int = 0
    threads: int | None = None
    time_limit: float | None = None  # minutes; no epoch starts that would end past it
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        checks = [
            (self.task in ("classify", "detect"), "task must be classify or detect"),
            (self.optimizer in ("adamw", "sgd"), "optimizer must be adamw or sgd"),
            (self.scheduler in ("cosine", "onecycle"), "scheduler must be cosine or onecycle"),
            (self.pooling in ("avg", "max"), "pooling must be avg or max"),
            (self.epochs >= 1 and self.batch >= 1 and self.imgsz >= 16, "epochs, batch >= 1 and imgsz >= 16"),
            (0 <= self.dropout < 1 and self.lr > 0, "dropout in [0, 1) and lr > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise EdgecamError(f"invalid training config: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise EdgecamError(f"unknown training option(s) {unknown}", fix=f"valid keys: {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise EdgecamError(f"invalid training config: {exc}") from None


# Where detection needs other defaults than the classifier (the dataclass defaults are the classifier's).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "detect": {
        "model": "ecdet_s",
        "imgsz": 320,
        "batch": 16,
        "lr": 2e-3,
        "epochs": 60,
        "patience": 15,
        "label_smoothing": 0.0,
        "dropout": 0.0,
    },
}


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """YAML file (optional) with command-line overrides on top; None values in overrides are ignored."""
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise EdgecamError("config file not found", path=path) from None
        except yaml.YAMLError as exc:
            raise EdgecamError(f"invalid YAML: {exc}", path=path, fix="fix the syntax") from None
        if not isinstance(loaded, dict):
            raise EdgecamError("config must be a mapping of option: value", path=path)
        data.update(loaded)
    task = overrides.get("task") or data.get("task") or "classify"
    data = {**TASK_DEFAULTS.get(task, {}), **data}
    aug = dict(data.pop("augment", {}) or {})
    aug.update(overrides.pop("augment", {}) or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["augment"] = aug
    try:
        return TrainConfig.from_dict(data)
    except EdgecamError as exc:
        if path:
            exc.path = str(path)
        raise
