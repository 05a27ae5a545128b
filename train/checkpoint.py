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
    ckpt = _read(path)
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
            "ecdet_s became dense (INT8-friendly) in 0.2.0, and ecdet_s/ecdet_m gained two-conv heads in 0.3.0 (the "
            "0.2.0 ecdet_s is ecdet_n); retrain, or load it with the edgecam that wrote it",
        ) from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["preprocess_spec"] = PreprocessSpec.from_dict(ckpt["preprocess"])
    return model, meta


def _read(path: Path) -> dict[str, Any]:
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
    return ckpt


def class_dependent_keys(name: str, args: dict[str, Any]) -> set[str]:
    """State-dict keys whose shape follows the number of classes (the heads' output layers)."""
    n = int(args["num_classes"])
    a = create_model(name, **args).state_dict()
    b = create_model(name, **{**args, "num_classes": n + 1}).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def model_from_weights(
    path: str | Path, task: str, class_names: tuple[str, ...]
) -> tuple[torch.nn.Module, str, dict[str, Any], dict[str, Any] | None, str]:
    """Start training from an earlier checkpoint (`--weights`): its architecture (pruned channels included) and
    weights; a changed class list re-initialises only the layers whose shape follows the classes.

    Returns (model, name, args, pruning record, one line saying what was loaded).
    """
    path = Path(path)
    ckpt = _read(path)
    if ckpt.get("task") != task:
        raise EdgecamError(
            f"--weights is a {ckpt.get('task')} checkpoint, this run trains a {task} model",
            path=path,
            fix=f"give a {task} checkpoint or drop --weights",
        )
    name = ckpt["model"]["name"]
    args = {**ckpt["model"]["args"], "num_classes": len(class_names)}
    model = restore_pruned_channels(create_model(name, **args), ckpt.get("pruned"))
    same_classes = list(ckpt.get("class_names", [])) == list(class_names)
    skip = set() if same_classes else class_dependent_keys(name, args)
    target = model.state_dict()
    weights = {
        k: v for k, v in ckpt["state_dict"].items() if k in target and target[k].shape == v.shape and k not in skip
    }
    missing = sorted(k for k in target if k not in weights and k not in skip)
    if missing:
        raise EdgecamError(
            f"the weights do not fit {name!r} ({len(missing)} tensors differ, e.g. {missing[0]})",
            path=path,
            fix=f"the checkpoint was written by edgecam {ckpt.get('edgecam_version', '?')}; retrain from scratch",
        )
    model.load_state_dict(weights, strict=False)
    what = "all layers" if same_classes else f"all but the class outputs ({len(skip)} tensors re-initialised)"
    return model, name, args, ckpt.get("pruned"), f"started from {path}: {what}"
