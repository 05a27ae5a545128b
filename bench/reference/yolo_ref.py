"""Reference detector: Ultralytics YOLOv8n trained from scratch on one of edgecam's real-image detection sets.

Run by the reference virtualenv's python (see ``bench/reference_env.py``), never by edgecam's: Ultralytics and its
torch pin are not dependencies of edgecam, and this script imports nothing from it. Offline by construction: no
pretrained weights (``yolov8n.yaml``, ``pretrained=False``), no AMP check (``amp=False``, which also downloads
``yolo11n.pt``), no font download (``check_font`` is stubbed: the dataset check asks for ``Arial.ttf`` even with
``plots=False``), no settings sync, no pip auto-install (``YOLO_AUTOINSTALL=0``: the export packages are installed in
the venv beforehand).

Prints one JSON line at the end and writes the same to ``OUT/result.json``::

    python yolo_ref.py --data runs/real/mnist-det/data.yaml --imgsz 320 --epochs 30 --batch 16 --out runs/ref/mnist-det
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _offline_env(out: Path) -> None:
    """Environment read by Ultralytics at import time, so it must be set before the first ``import ultralytics``."""
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() -> False without a DNS probe
    os.environ["YOLO_AUTOINSTALL"] = "0"  # never pip-install a missing export requirement mid-run
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics-config"))  # settings.json beside the results
    os.environ.setdefault("MPLBACKEND", "Agg")


def _offline_patches() -> None:
    """Settings and stubs that keep Ultralytics off the network (each one a quirk found in its source)."""
    from ultralytics import settings

    settings.update(
        {
            "sync": False,
            "clearml": False,
            "comet": False,
            "dvc": False,
            "mlflow": False,
            "raytune": False,
            "tensorboard": False,
            "wandb": False,
        }
    )

    def _no_font(*_args, **_kwargs):  # check_det_dataset() asks for Arial.ttf and would try to download it
        return None

    import ultralytics.data.utils as data_utils
    import ultralytics.utils.checks as checks

    checks.check_font = _no_font
    data_utils.check_font = _no_font
    try:
        import ultralytics.utils.plotting as plotting

        plotting.check_font = _no_font
    except ImportError:  # pragma: no cover - plotting always imports, but its font use is irrelevant with plots=False
        pass


def _mirror_dataset(data_yaml: Path, out: Path) -> Path:
    """A data.yaml under ``out`` whose split folders hold symlinks to the real images and labels.

    Why: Ultralytics writes ``labels/<split>.cache`` beside the label folders, i.e. into the shared dataset that
    edgecam's own benchmark reads; with a mirror of symlinks the cache lands in ``out`` instead. Falls back to the
    original yaml when the set is not laid out as ``images/<split>`` + ``labels/<split>``.
    """
    import yaml

    cfg = yaml.safe_load(data_yaml.read_text())
    root = Path(cfg.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    mirror = out / "dataset"
    for key in ("train", "val", "test"):
        rel = cfg.get(key)
        if rel is None:
            continue
        parts = Path(rel).parts
        if len(parts) != 2 or parts[0] != "images" or not (root / "labels" / parts[1]).is_dir():
            return data_yaml
        for kind in ("images", "labels"):
            # One symlink per file: check_det_dataset() resolve()s the split folder, which follows a folder symlink.
            folder = mirror / kind / parts[1]
            folder.mkdir(parents=True, exist_ok=True)
            for src in (root / kind / parts[1]).iterdir():
                link = folder / src.name
                if not link.is_symlink():
                    link.symlink_to(src)
    cfg["path"] = str(mirror)
    mirrored = mirror / "data.yaml"
    mirrored.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return mirrored


def _box_metrics(metrics) -> dict[str, float]:
    return {"map50": round(float(metrics.box.map50), 4), "map50_95": round(float(metrics.box.map), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="YOLO data.yaml")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="dataloader workers (0: in the main process)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads; default: Ultralytics' own choice, min(8, cpu_count - 1) (1 on a 2-core box)",
    )
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset of the FP32 export")
    ap.add_argument("--fliplr", type=float, default=None, help="override Ultralytics' horizontal-flip probability")
    ap.add_argument("--calib-fraction", type=float, default=0.5, help="share of the train split used for INT8 calib")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _offline_env(out)
    data = str(_mirror_dataset(args.data.resolve(), out))

    import torch

    _offline_patches()
    if args.threads:  # select_device() resets torch's threads to NUM_THREADS, so override that, not torch directly
        import ultralytics.utils as yutils
        import ultralytics.utils.torch_utils as ytorch

        yutils.NUM_THREADS = ytorch.NUM_THREADS = args.threads
        torch.set_num_threads(args.threads)
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    overrides = {} if args.fliplr is None else {"fliplr": args.fliplr}
    model = YOLO("yolov8n.yaml")  # architecture only: random init
    t0 = time.perf_counter()
    model.train(
        data=data,
        imgsz=args.imgsz,
        epochs=args.epochs,
        batch=args.batch,
        device="cpu",
        workers=args.workers,
        seed=args.seed,
        deterministic=True,
        pretrained=False,
        amp=False,
        plots=False,
        val=True,
        project=str(out),
        name="train",
        exist_ok=True,
        **overrides,
    )
    train_seconds = time.perf_counter() - t0
    best = out / "train" / "weights" / "best.pt"

    ref = YOLO(str(best))
    metrics = ref.val(data=data, imgsz=args.imgsz, batch=args.batch, split="val", device="cpu", plots=False)
    params = int(get_num_params(ref.model))
    gflops = round(float(get_flops(ref.model, imgsz=args.imgsz)), 3)

    onnx_path = YOLO(str(best)).export(
        format="onnx", imgsz=args.imgsz, batch=1, dynamic=False, simplify=True, opset=args.opset, device="cpu"
    )
    # INT8 calibration on train images (not the val split that is scored), letterboxed like validation.
    ov_dir = YOLO(str(best)).export(
        format="openvino",
        int8=True,
        data=data,
        split="train",
        fraction=args.calib_fraction,
        imgsz=args.imgsz,
        batch=1,
        dynamic=False,
        device="cpu",
    )
    ov_xml = next(Path(ov_dir).glob("*.xml"))
    int8 = {}
    try:  # accuracy of the INT8 IR on the same val split, through Ultralytics' own OpenVINO backend
        m8 = YOLO(str(ov_dir), task="detect").val(
            data=data, imgsz=args.imgsz, batch=1, split="val", device="cpu", plots=False
        )
        int8 = {f"int8_{k}": v for k, v in _box_metrics(m8).items()}
    except Exception as exc:  # noqa: BLE001 - the FP32 result still stands
        int8 = {"int8_error": f"{type(exc).__name__}: {exc}"}

    result = {
        **_box_metrics(metrics),
        **int8,
        "train_seconds": round(train_seconds, 1),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "data": str(args.data.resolve()),
        "best_pt": str(best),
        "onnx": str(Path(onnx_path).resolve()),
        "openvino_int8_xml": str(ov_xml.resolve()),
        "params": params,
        "gflops": gflops,
        "model": "yolov8n (from scratch)",
        "torch": torch.__version__,
        "ultralytics": __import__("ultralytics").__version__,
    }
    line = json.dumps(result)
    (out / "result.json").write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
