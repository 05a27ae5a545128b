"""Reference classifier: torchvision MobileNetV3-Small trained from scratch on one of edgecam's real-image sets.

Run by the reference virtualenv's python (see ``bench/reference_env.py``), never by edgecam's, and imports nothing
from edgecam, so the reference side shares only the files, the image size and the epoch budget with ours.

Recipe (fixed, not tuned per set): AdamW lr 3e-3, one linear warm-up epoch then cosine to zero, per step; random
resized crop with scale (0.7, 1) and no flip (digits are asymmetric); ImageNet mean/std; the epoch with the best
val top-1 is kept. Exports ONNX FP32 (dynamic batch) and an OpenVINO INT8 IR (static batch 1) quantized by NNCF on
~300 train images, and scores both exports on the same val split.

Prints one JSON line at the end and writes the same to ``OUT/result.json``::

    python cls_ref.py --data runs/real/mnist-cls --imgsz 64 --epochs 30 --batch 64 --out runs/ref/mnist-cls
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.models import mobilenet_v3_small

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class InMemoryFolder(torch.utils.data.Dataset):
    """ImageFolder decoded once: the sets are a few thousand 64x64 PNGs, so decoding per epoch would dominate."""

    def __init__(self, root: Path, classes: list[str], transform) -> None:
        self.transform = transform
        self.items: list[tuple[Image.Image, int]] = []
        for idx, name in enumerate(classes):
            for f in sorted((root / name).iterdir()):
                if f.suffix.lower() in IMG_EXTENSIONS:
                    with Image.open(f) as im:
                        self.items.append((im.convert("RGB"), idx))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        img, label = self.items[i]
        return self.transform(img), label


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode otherwise NaN-fills every new tensor: measured 8x slower steps on this CPU (Ultralytics does
    # the same in its own deterministic setup).
    torch.utils.deterministic.fill_uninitialized_memory = False
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _top1(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def _top1_numpy(predict, dataset: InMemoryFolder) -> float:
    """Top-1 of an exported model, fed one image at a time as the device would."""
    correct = 0
    for i in range(len(dataset)):
        x, y = dataset[i]
        correct += int(int(np.argmax(predict(x.unsqueeze(0).numpy()))) == y)
    return correct / max(len(dataset), 1)


def _export_onnx(model: nn.Module, path: Path, imgsz: int, opset: int) -> None:
    """TorchScript exporter (``dynamo=False``): no onnxscript needed, and the graph OpenVINO and ORT both expect."""
    x = torch.zeros(1, 3, imgsz, imgsz)
    torch.onnx.export(
        model,
        x,
        str(path),
        opset_version=opset,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True,
        dynamo=False,
    )


def _export_openvino_int8(onnx_path: Path, xml_path: Path, calib: list[np.ndarray], imgsz: int) -> None:
    """Static-batch-1 IR from the ONNX graph, then NNCF post-training quantization on un-augmented train images."""
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_path))
    ov_model.reshape([1, 3, imgsz, imgsz])
    quantized = nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=len(calib))
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)  # as Ultralytics does for its INT8 IR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="folder with train/<class>/ and val/<class>/")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--calib-size", type=int, default=300, help="train images for INT8 calibration")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    gen = _seed_everything(args.seed)

    data = args.data.resolve()
    classes = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    norm = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    train_tf = transforms.Compose([transforms.RandomResizedCrop(args.imgsz, scale=(0.7, 1.0)), *norm])
    eval_tf = transforms.Compose([transforms.Resize((args.imgsz, args.imgsz)), *norm])
    train_set = InMemoryFolder(data / "train", classes, train_tf)
    val_set = InMemoryFolder(data / "val", classes, eval_tf)
    loader_kw = {"num_workers": args.workers, "persistent_workers": args.workers > 0}
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch, shuffle=True, drop_last=True, generator=gen, **loader_kw
    )
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=256, shuffle=False, **loader_kw)

    model = mobilenet_v3_small(weights=None, num_classes=len(classes))
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_loader)
    total = args.epochs * steps_per_epoch
    warm = max(1, round(args.warmup_epochs * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    loss_fn = nn.CrossEntropyLoss()

    history, best_top1, best_epoch, best_state = [], -1.0, -1, None
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        running, seen = 0.0, 0
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(y)
            seen += len(y)
        top1 = _top1(model, val_loader)
        history.append({"epoch": epoch + 1, "loss": round(running / max(seen, 1), 4), "top1": round(top1, 4)})
        print(json.dumps({"progress": history[-1], "elapsed_s": round(time.perf_counter() - t0, 1)}), flush=True)
        if top1 > best_top1:
            best_top1, best_epoch, best_state = top1, epoch + 1, copy.deepcopy(model.state_dict())
    train_seconds = time.perf_counter() - t0

    model.load_state_dict(best_state)
    model.eval()
    torch.save({"state_dict": best_state, "classes": classes, "imgsz": args.imgsz}, out / "best.pt")
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")

    onnx_path = out / "mobilenet_v3_small.onnx"
    _export_onnx(model, onnx_path, args.imgsz, args.opset)
    rng = np.random.default_rng(args.seed)
    calib_idx = rng.choice(len(train_set), size=min(args.calib_size, len(train_set)), replace=False)
    calib = [eval_tf(train_set.items[int(i)][0]).unsqueeze(0).numpy() for i in calib_idx]
    xml_path = out / "openvino_int8" / "mobilenet_v3_small_int8.xml"
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    _export_openvino_int8(onnx_path, xml_path, calib, args.imgsz)

    import onnxruntime as ort
    import openvino as ov

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_top1 = _top1_numpy(lambda a: sess.run(None, {"images": a})[0], val_set)
    compiled = ov.Core().compile_model(str(xml_path), "CPU")
    int8_top1 = _top1_numpy(lambda a: compiled(a)[0], val_set)

    result = {
        "top1": round(best_top1, 4),
        "best_epoch": best_epoch,
        "onnx_top1": round(onnx_top1, 4),
        "int8_top1": round(int8_top1, 4),
        "train_seconds": round(train_seconds, 1),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "seed": args.seed,
        "data": str(data),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "onnx": str(onnx_path),
        "openvino_int8_xml": str(xml_path),
        "calib_images": len(calib),
        "params": params,
        "model": "mobilenet_v3_small (from scratch)",
        "torch": torch.__version__,
    }
    line = json.dumps(result)
    (out / "result.json").write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
