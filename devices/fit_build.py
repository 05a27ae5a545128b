"""How `edgecam fit` builds its candidates: checkpoints (prune + fine-tune, or a fine-tune at another input size) and
bundles (export, INT8 with or without accuracy control), cached; and the chosen variant's bundle at the end.

Import rule (DESIGN.md): this is the one place in devices/ that uses train/ (pruning, fine-tuning, checkpoints) and
export/ (bundles); both are imported inside the functions that need them, so importing `edgecam.devices` never pulls
in torch or the training code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecam.runtime.errors import EdgecamError

if TYPE_CHECKING:
    from edgecam.devices.fit import Candidate, FitOptions

# Per engine: what a precision exports (the variants export_bundle writes) and which of them is timed. Accuracy-
# controlled INT8 for ONNX Runtime goes through NNCF on the IR: the layers it keeps in float are excluded from the
# ONNX QDQ file (export/bundle_writer.py), so that bundle carries the IR it was decided on as well.
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "openvino": {
        "fp32": ("openvino-fp32",),
        "fp16": ("openvino-fp16",),
        "bf16": ("openvino-bf16",),
        "int8": ("openvino-int8",),
        "int8-ac": ("openvino-int8",),
    },
    "onnxruntime": {
        "fp32": ("onnx-fp32",),
        "int8": ("onnx-int8",),
        "int8-ac": ("openvino-int8", "onnx-int8"),
    },
}
STAGE_DONE = "fit-stage.json"  # written into a cached checkpoint's folder once it is complete


def final_bundle(chosen: Candidate, builder: Builder, dest: Path) -> dict[str, Any]:
    """OUT/bundle holds the chosen precision's variant(s) only (so `edgecam run` takes it by default): a copy of the
    candidate's bundle when that is all it holds, else exported again from the same checkpoint with the same
    calibration (an accuracy that comes out differently is noted on the row). Then `edgecam verify` (checksums,
    golden frames) must pass."""
    from edgecam.runtime.bundle import MANIFEST
    from edgecam.runtime.verify import verify_bundle

    wanted = VARIANTS[chosen.backend][chosen.precision]
    held = json.loads((Path(chosen.bundle) / MANIFEST).read_text())["variants"]
    if set(held) == set(wanted):
        shutil.copytree(chosen.bundle, dest)
        how = "copied"
    else:
        manifest = builder.export(Path(chosen.checkpoint), dest, wanted, ac=chosen.precision == "int8-ac")
        again = manifest["variants"][chosen.variant]["metrics"].get(builder.metric)
        if again != chosen.accuracy:
            chosen.note = f"re-exported alone: {builder.metric} {again} (measured {chosen.accuracy})"
        how = "exported with this variant only"
    report = verify_bundle(dest)
    if not report.passed:
        raise EdgecamError(f"the chosen bundle failed `edgecam verify`: {report.problems[0]}", path=dest)
    return {"passed": True, "golden_frames": report.golden_frames, "bundle": how}


class Builder:
    """Checkpoints and bundles for the grid, cached under OUT/cache/<key>/ (the key covers the checkpoint's bytes,
    the data and the settings that shape what is built), so a second run re-measures without rebuilding."""

    def __init__(self, checkpoint: Path, data: Path, out: Path, opts: FitOptions) -> None:
        from edgecam.train.checkpoint import load_checkpoint

        _, meta = load_checkpoint(checkpoint)
        self.checkpoint_path, self.data, self.opts, self.meta = checkpoint, data, opts, meta
        self.task = meta["task"]
        spec = meta["preprocess_spec"]
        if spec.height != spec.width:
            raise EdgecamError("fit searches square input sizes; this model's input is not square", path=checkpoint)
        self.native_size = spec.height
        self.size_step = max(meta["detect"]["strides"]) if self.task == "detect" else 8
        self.metric = "top1" if self.task == "classify" else "map50"
        key = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        settings = [str(data.resolve()), opts.finetune_epochs, opts.calib, opts.max_drop]
        key = hashlib.sha256(json.dumps([key, *settings]).encode()).hexdigest()[:12]
        self.cache = out / "cache" / key

    def built(self, ratio: float, size: int) -> bool:
        return (ratio == 0 and size == self.native_size) or (self._folder(ratio, size) / STAGE_DONE).is_file()

    def _folder(self, ratio: float, size: int) -> Path:
        return self.cache / f"prune{ratio:g}-{size}px"

    def share(self, rows: list[Candidate], deadline: float) -> float:
        """Minutes one fine-tune may take: the time left split evenly over the fine-tunes still to come (a pruned
        smaller model counts the resize fine-tune it starts from), so the first ones do not eat the whole search."""
        units = {(c.ratio, c.size) for c in rows if c.status == "not tried"}
        units |= {(0.0, s) for r, s in units if r > 0}
        todo = sum(not self.built(r, s) for r, s in units)
        return max((deadline - time.monotonic()) / 60 / max(todo, 1), 0.05)

    def checkpoint(self, ratio: float, size: int, minutes: float) -> tuple[Path, bool]:
        """The checkpoint of (ratio, size) and whether it was cached: the original at its own size; at another size
        a short fine-tune from it (`edgecam train --weights`); pruned: `edgecam prune` of that, fine-tuned."""
        if ratio == 0 and size == self.native_size:
            return self.checkpoint_path, True
        folder = self._folder(ratio, size)
        if self.built(ratio, size):
            return folder / "best.pt", True
        shutil.rmtree(folder, ignore_errors=True)
        if ratio == 0:
            seconds = self._resize(size, folder, minutes)
        else:
            src, _ = self.checkpoint(0.0, size, minutes)
            seconds = self._prune(src, ratio, folder, minutes)
        (folder / STAGE_DONE).write_text(
            json.dumps({"ratio": ratio, "size": size, "seconds": round(seconds, 1)}) + "\n"
        )
        return folder / "best.pt", False

    def _resize(self, size: int, folder: Path, minutes: float) -> float:
        """Fine-tune the original at `size` with the trainer (`--weights`): the pruning fine-tune's learning rate and
        warm-up, and the trainer's own data pipeline at the new size."""
        from edgecam.train.config import TrainConfig
        from edgecam.train.prune_finetune import FINETUNE_LR_SCALE, FINETUNE_WARMUP_EPOCHS

        cfg = TrainConfig.from_dict(dict(self.meta.get("config") or {"task": self.task}))
        changes = {
            "data": str(self.data),
            "out": str(folder),
            "imgsz": size,
            "epochs": self.opts.finetune_epochs,
            "weights": str(self.checkpoint_path),
            "lr": cfg.lr * FINETUNE_LR_SCALE,
            "warmup_epochs": min(cfg.warmup_epochs, FINETUNE_WARMUP_EPOCHS, self.opts.finetune_epochs / 2),
            "patience": 0,
            "time_limit": minutes,
            "progress": False,
        }
        cfg = replace(cfg, **changes)
        if self.task == "detect":
            from edgecam.train.detection.trainer import train_detector as train
        else:
            from edgecam.train.trainer import train_classifier as train
        return float(train(cfg).seconds)

    def _prune(self, src: Path, ratio: float, folder: Path, minutes: float) -> float:
        """`edgecam prune --ratio R --finetune-epochs E` on the checkpoint of that size."""
        from edgecam.train.prune_finetune import PruneConfig, prune_checkpoint

        pcfg = PruneConfig(
            ratio=ratio,
            finetune_epochs=self.opts.finetune_epochs,
            time_limit=minutes,
            data=str(self.data),
            latency_runs=1,
            onnx_latency=False,
            progress=False,
        )
        report = prune_checkpoint(src, folder, pcfg)
        return float(report["finetune"]["seconds"])

    def bundle(self, ckpt: Path, cand: Candidate, precisions: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
        """`edgecam export`/`quantize` for the candidate: one bundle per (ratio, size) holds every plain precision
        (one ONNX trace for all of them), accuracy-controlled INT8 gets its own (`--max-drop`). INT8 gates are
        recorded, not enforced: the search compares accuracy itself."""
        from edgecam.runtime.bundle import MANIFEST

        table = VARIANTS[cand.backend]
        if cand.precision == "int8-ac":
            variants, name = table["int8-ac"], "bundle-int8-ac"
        else:
            variants = tuple(dict.fromkeys(v for p in precisions if p != "int8-ac" for v in table[p]))
            name = "bundle-" + "+".join(p for p in precisions if p != "int8-ac")
        path = self.cache / f"prune{cand.ratio:g}-{cand.size}px" / name
        if (path / MANIFEST).is_file():
            return path, json.loads((path / MANIFEST).read_text())
        return path, self.export(ckpt, path, variants, ac=cand.precision == "int8-ac")

    def export(self, ckpt: Path, path: Path, variants: tuple[str, ...], ac: bool) -> dict[str, Any]:
        from edgecam.export.bundle_writer import export_bundle

        return export_bundle(
            ckpt,
            path,
            data=self.data,
            variants=variants,
            force=True,
            calib=self.opts.calib,
            max_drop=self.opts.max_drop if ac else None,
            allow_drop=True,
        )
