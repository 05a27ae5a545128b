"""`make bench`'s real-image section: edgecam's default detector and classifier against Ultralytics YOLOv8n and a
MobileNetV3-Small, each trained from scratch on the same files, image size and epochs.

The sets come from real photographs and real handwriting (`edgecam.bench.realdata`), never from edgecam's renderer.
The `mnist-*` sets are the ones defaults were tuned on; the `optdigits-*` sets were held back and are reported on
their own. The references train in a virtualenv of their own (`edgecam.bench.reference_env`): they are yardsticks,
never dependencies. Every latency is measured in a separate process, ours and the reference's alternating.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgecam.bench.realdata import CLS_SETS, DET_SETS, build_classification_set, build_detection_set

EPOCHS = 30
DET_IMGSZ, CLS_IMGSZ = 320, 64
HELD_OUT = ("optdigits-det", "optdigits-cls")
ROUNDS = 3  # latency: ours, reference, ours, reference, ... each in its own process; the median of the rounds
SECTION = "## Real images: edgecam vs reference models trained from scratch on the same files"
REFERENCE_DIR = Path(__file__).parent / "reference"


def _log(msg: str) -> None:
    print(f"[bench-real] {msg}", file=sys.stderr, flush=True)


def _code_key(*parts: str) -> str:
    """Results are reused only while the training code and the settings are the same."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in ("train", "export"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    digest.update("|".join(parts).encode())
    return digest.hexdigest()[:16]


def _cached(out: Path, key: str) -> dict[str, Any] | None:
    path = out / "result.json"
    if path.is_file():
        result = json.loads(path.read_text())
        if result.get("key") == key:
            return result
    return None


def _store(out: Path, key: str, result: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    result = {**result, "key": key}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _edgecam(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edgecam", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def ensure_sets(work: Path) -> dict[str, Path]:
    """Build every set once (seeded, so a rebuilt set is the same set)."""
    paths = {}
    for name in DET_SETS:
        root = work / "data" / name
        if not (root / "data.yaml").is_file():
            _log(f"building {name}")
            build_detection_set(name, root)
        paths[name] = root / "data.yaml"
    for name in CLS_SETS:
        root = work / "data" / name
        if not (root / "val").is_dir():
            _log(f"building {name}")
            build_classification_set(name, root, CLS_IMGSZ)
        paths[name] = root
    return paths


def _variant_file(bundle: Path, variant: str) -> str:
    from edgecam.runtime.bundle import load_bundle

    b = load_bundle(bundle)
    return str(b.path_of(b.variant(variant)))


def ours(task: str, data: Path, out: Path) -> dict[str, Any]:
    """`edgecam train` with its defaults (only data, image size and epochs given), then `edgecam export --int8`."""
    imgsz = DET_IMGSZ if task == "detect" else CLS_IMGSZ
    key = _code_key(task, str(imgsz), str(EPOCHS))
    if (hit := _cached(out, key)) is not None:
        return hit
    _log(f"training edgecam's default {task} model on {data}")
    run = _edgecam(
        "train", "--task", task, "--data", str(data), "--imgsz", str(imgsz), "--epochs", str(EPOCHS),
        "--out", str(out / "train"),
    )  # fmt: skip
    bundle = out / "bundle"
    _edgecam("export", run["best"], "--out", str(bundle), "--int8", "--data", str(data), "--force", "--allow-drop")
    manifest = json.loads((bundle / "edgecam.json").read_text())
    variants = manifest["variants"]
    metric = "map50" if task == "detect" else "top1"
    result = {
        "model": manifest["model"]["name"],
        "gflops": manifest["model"]["gflops"],
        "params_m": manifest["model"].get("params_m"),
        metric: run["best_metrics"][metric],
        "int8_" + metric: variants["openvino-int8"]["metrics"].get(metric),
        "train_seconds": run["seconds"],
        "epochs_run": run["epochs_run"],
        "stop_reason": run.get("stop_reason", ""),
        "fp32_file": _variant_file(bundle, "onnx-fp32"),
        "int8_file": _variant_file(bundle, "openvino-int8"),
    }
    if task == "detect":
        result["map50_95"] = run["best_metrics"]["map50_95"]
    return _store(out, key, result)


def _reference_script(task: str) -> Path:
    return REFERENCE_DIR / ("yolo_ref.py" if task == "detect" else "cls_ref.py")


def reference_key(task: str, data: Path) -> str:
    """A reference result is reused while its script, image size, epochs and data are the same."""
    imgsz = DET_IMGSZ if task == "detect" else CLS_IMGSZ
    return hashlib.sha256(_reference_script(task).read_bytes() + f"{imgsz}|{EPOCHS}|{data}".encode()).hexdigest()[:16]


def reference_result(task: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The reference script's JSON line in the shape of `ours`' results."""
    return {
        "model": "YOLOv8n" if task == "detect" else "MobileNetV3-Small",
        "gflops": raw.get("gflops"),
        "params_m": raw["params"] / 1e6 if raw.get("params") else None,
        "train_seconds": raw["train_seconds"],
        "fp32_file": raw["onnx"],
        "int8_file": raw["openvino_int8_xml"],
        **{k: raw[k] for k in ("map50", "map50_95", "top1", "int8_map50", "int8_top1") if k in raw},
    }


def reference(task: str, python: Path, data: Path, out: Path) -> dict[str, Any]:
    """YOLOv8n or MobileNetV3-Small from scratch in the reference virtualenv, same files, size and epochs."""
    imgsz = DET_IMGSZ if task == "detect" else CLS_IMGSZ
    script = _reference_script(task)
    key = reference_key(task, data)
    if (hit := _cached(out, key)) is not None:
        return hit
    _log(f"training the reference {task} model on {data} (separate virtualenv)")
    cmd = [str(python), str(script), "--data", str(data), "--imgsz", str(imgsz), "--epochs", str(EPOCHS)]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"reference {task} training failed: {proc.stderr.strip()[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    return _store(out, key, reference_result(task, raw))


def latencies(models: list[dict[str, Any]], runs: int) -> None:
    """OpenVINO INT8 and ONNX Runtime FP32 p50 of each model, alternating a b a b in separate processes."""
    from statistics import median

    from edgecam.bench.timing import time_model_file

    samples: dict[tuple[int, str], list[dict[str, float]]] = {}
    for _ in range(ROUNDS):
        for i, r in enumerate(models):
            samples.setdefault((i, "ort"), []).append(time_model_file(Path(r["fp32_file"]), "onnxruntime", runs=runs))
            samples.setdefault((i, "ov"), []).append(time_model_file(Path(r["int8_file"]), "openvino", runs=runs))
    for i, r in enumerate(models):
        r["ort_fp32_ms"] = median(s["p50_ms"] for s in samples[(i, "ort")])
        r["ov_int8_ms"] = median(s["p50_ms"] for s in samples[(i, "ov")])
        r["ov_int8_p95_ms"] = median(s["p95_ms"] for s in samples[(i, "ov")])
        r["ov_int8_fps"] = median(s.get("fps_throughput", 0.0) for s in samples[(i, "ov")])


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _table(task: str, rows: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> list[str]:
    metric, name = ("map50", "mAP@0.5") if task == "detect" else ("top1", "top-1")
    head = f"| set | model | GFLOPs | {name} |" + (" mAP@0.5:0.95 |" if task == "detect" else "")
    head += f" INT8 {name} | train min | OV INT8 p50 ms | OV INT8 FPS (throughput) | ORT FP32 p50 ms | latency vs ref |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for set_name, mine, ref in rows:
        role = f"{set_name} (held out)" if set_name in HELD_OUT else set_name
        for r, other in ((mine, ref), (ref, None)):
            if r is None:
                continue
            ratio = "-"
            if other and other.get("ov_int8_ms"):
                ratio = (
                    f"OV INT8 {r['ov_int8_ms'] / other['ov_int8_ms']:.2f}x, "
                    f"ORT FP32 {r['ort_fp32_ms'] / other['ort_fp32_ms']:.2f}x"
                )
            cells = [role, r["model"], _fmt(r.get("gflops"), ".3g"), _fmt(r.get(metric), ".4f")]
            if task == "detect":
                cells.append(_fmt(r.get("map50_95"), ".4f"))
            cells += [
                _fmt(r.get("int8_" + metric), ".4f"),
                _fmt(r["train_seconds"] / 60, ".1f"),
                _fmt(r.get("ov_int8_ms")),
                _fmt(r.get("ov_int8_fps"), ".0f"),
                _fmt(r.get("ort_fp32_ms")),
                ratio,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def real_data_section(work: str | Path, runs: int = 200) -> list[str]:
    """Train, export and time both sides on every real set; the markdown section for BENCHMARKS.md."""
    from edgecam.bench import reference_env

    work = Path(work)
    sets = ensure_sets(work)
    python = reference_env.ensure_reference_env(work / "reference-venv")
    why = reference_env.last_error
    if python is None:
        _log(f"reference models skipped: {why}")
    lines = [
        SECTION,
        "",
        f"Every model trained from scratch for {EPOCHS} epochs on the same files (detection {DET_IMGSZ} px, "
        f"classification {CLS_IMGSZ} px): edgecam with `edgecam train` defaults, the references in their own "
        "virtualenv (Ultralytics YOLOv8n from `yolov8n.yaml`, torchvision MobileNetV3-Small). The sets are built "
        "from real photographs and real handwriting (`edgecam.bench.realdata`); `mnist-*` is where defaults were "
        "tuned, `optdigits-*` was held out. mAP on the 150 validation images, INT8 = the OpenVINO NNCF variant. "
        f"Latency: batch 1, 2 threads, each model in its own process, ours and the reference alternating, the median "
        f"of {ROUNDS} rounds of {runs} runs (OpenVINO with the f32 hint for non-INT8 parts, as edgecam's runtime "
        "runs it). Training minutes are wall time on this machine as it was during the run: compare within a row "
        "pair only.",
        "",
    ]
    for task, names in (("detect", list(DET_SETS)), ("classify", list(CLS_SETS))):
        rows = []
        for name in names:
            mine = ours(task, sets[name], work / name / "edgecam")
            ref = None
            if python is not None:
                try:
                    ref = reference(task, python, sets[name], work / name / "reference")
                except (RuntimeError, ValueError, KeyError) as exc:
                    _log(f"reference on {name} failed: {exc}")
            latencies([mine, ref] if ref else [mine], runs)
            rows.append((name, mine, ref))
        lines += [f"### {'Detection' if task == 'detect' else 'Classification'}", ""]
        lines += _table(task, rows) + [""]
    if python is None:
        lines += [f"Reference models could not be installed here ({why}); only edgecam's figures are shown.", ""]
    return lines


def _bounds(text: str, title: str = SECTION) -> tuple[int, int] | None:
    start = text.find(title)
    if start < 0:
        return None
    end = text.find("\n## ", start + len(title))
    return start, (end + 1 if end >= 0 else len(text))


def read_section(path: str | Path, title: str = SECTION) -> list[str]:
    """The section `title` (by default the real-image one) of an existing BENCHMARKS.md ([] when there is none)."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    span = _bounds(text, title)
    return text[span[0] : span[1]].rstrip("\n").split("\n") if span else []


def write_section(path: str | Path, lines: list[str]) -> Path:
    """Put a section (its first line is its `## ` title) into BENCHMARKS.md, replacing an earlier one with the same
    title; the rest of the file is kept."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    span = _bounds(text, lines[0])
    if span:
        text = text[: span[0]] + text[span[1] :]
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    return path
