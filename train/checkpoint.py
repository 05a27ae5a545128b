"""Self-describing checkpoints: state dict + model args + class names + preprocessing spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgecam import __version__
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.prune import restore_pruned_channels
from edgecam.train.registry import create_model


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    *,
    name: str,
    args: dict[str, Any],
    task: str,
    class_names: tuple[str, ...],
    spec: PreprocessSpec,
    epoch: int,
    metrics: dict[str, Any],
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write atomically: a crash mid-save never corrupts the previous best.pt."""
    state = {
        "edgecam_version": __version__,
        "task": task,
        "model": {"name": name, "args": args},
        "class_names": list(class_names),
        "preprocess": spec.to_dict(),
        "epoch": epoch,
        "metrics": metrics,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild exactly the trained model (eval mode) and return it with the checkpoint's metadata."""
    path = Path(path)
    if not path.is_file():
        raise EdgecamError("checkpoint not found", path=path, fix="give RUN_DIR/best.pt from `edgecam train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/zip errors of many types for bad files
        raise EdgecamError(f"not a readable edgecam checkpoint ({type(exc).__name__})", path=path) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise EdgecamError(
            "not an edgecam checkpoint (no model args)", path=path, fix="use a file from `edgecam train`"
        )
    model = create_model(ckpt["model"]["name"], **ckpt["model"]["args"])
    restore_pruned_channels(model, ckpt.get("pruned"))  # a pruned checkpoint replays its channel removal
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        written_by = ckpt.get("edgecam_version", "an unknown version")
        raise EdgecamError(
            f"weights do not fit the model {ckpt['model']['name']!r}: {str(exc).splitlines()[0]}",
            path=path,
            fix=f"the checkpoint was written by edgecam {written_by}, this is {__version__}: ecnet_s, ecnet_m and "
            "ecdet_s became dense (INT8-friendly) in 0.2.0; retrain, or load it with the edgecam that wrote it",
        ) from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["preprocess_spec"] = PreprocessSpec.from_dict(ckpt["preprocess"])
    return model, meta
