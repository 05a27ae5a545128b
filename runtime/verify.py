"""`edgecam verify`: the device self-test before serving. Every file against its sha256, then the golden frames
through each variant on each backend, compared with the outputs stored at export. No torch, no export/ imports.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import backend_names, create_backend
from edgecam.runtime.bundle import DIGEST_KEY, MANIFEST, Bundle, Variant, load_bundle, sha256_file
from edgecam.runtime.decode import decode_detections
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.golden import (
    MATCH_MARGIN,
    Comparison,
    compare_classify,
    compare_detect,
    default_tolerance,
    load_frames,
    load_output,
    sigmoid_scores,
)
from edgecam.runtime.model import default_threads, detect_settings, output_problem
from edgecam.runtime.preprocess import Letterbox, preprocess_batch
from edgecam.runtime.types import Detections

DRIFT_FIX = "the model no longer gives its exported output: re-copy the bundle or re-export it"
MISFIT = "output does not fit the manifest"  # a run's problem that starts so: class_names do not describe the model
MISFIT_FIX = "re-export the bundle: its class_names / detect entry do not describe this model"
NONFINITE = "the model outputs NaN or inf"
NONFINITE_FIX = "the model is broken (trained to NaN, or a damaged export): re-export a good checkpoint"
UNSEALED_NOTE = (
    f"{MANIFEST} has no {DIGEST_KEY} (written by an earlier edgecam): the manifest itself is not covered by a "
    "checksum, only the files it lists (re-export to add it)"
)


@dataclass
class GoldenRun:
    """One variant on one backend, re-run on the golden frames."""

    variant: str
    backend: str
    metrics: dict[str, Any]
    problems: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        m = self.metrics
        if "top1_same" in m:
            return f"top-1 {m['top1_same']}/{m['frames']}, max Δprob {m['max_prob_diff']:.1e}"
        if "boxes" in m:
            boxes = f"{m['matched']:.3f} of {m['boxes']} boxes matched"
            return f"{boxes}, min IoU {m['min_iou']:.3f}, max Δscore {m['max_score_diff']:.1e}"
        return "; ".join(self.problems)


@dataclass
class VerifyReport:
    """Files checked, golden runs and one line per problem; `passed` means safe to serve."""

    bundle: str
    task: str
    files: dict[str, str]  # relative path -> "ok" | "missing" | "changed"
    golden_frames: int  # 0: the bundle stores none
    runs: list[GoldenRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "CPU"  # the engines' device (an OpenVINO device or an ONNX Runtime execution provider)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        runs = [{**asdict(r), "passed": r.passed} for r in self.runs]
        return {**asdict(self), "runs": runs, "passed": self.passed}

    def format(self) -> str:
        intact = sum(s == "ok" for s in self.files.values())
        golden = f"{self.golden_frames} golden frames" if self.golden_frames else "no golden frames"
        lines = [f"{self.bundle} ({self.task}): {intact}/{len(self.files)} files intact, {golden}, on {self.device}"]
        for r in self.runs:
            verdict = "ok" if r.passed else "FAIL"
            lines.append(f"  {r.variant:<16}{r.backend:<13}{verdict:<6}{r.summary()}  ({r.seconds * 1000:.0f} ms)")
        lines += [f"  note: {n}" for n in self.notes]
        verdict = "verified" if self.passed else f"FAILED with {len(self.problems)} problem(s)"
        lines.append(f"{verdict} in {self.seconds:.2f} s")
        return "\n".join(lines)


def _file_status(root: Path, rel: str, info: dict[str, Any]) -> str:
    path = root / rel
    if not path.is_file():
        return "missing"
    return "ok" if sha256_file(path) == info.get("sha256") else "changed"


def _golden_entry(bundle: Bundle) -> dict[str, Any] | None:
    entry = bundle.manifest.get("golden")
    if entry is None:
        return None
    keys = ("frames", "outputs", "files")
    if (
        not isinstance(entry, dict)
        or any(not entry.get(k) for k in keys)
        or not isinstance(entry["frames"], str)
        or not isinstance(entry["outputs"], dict)
        or not all(isinstance(v, str) for v in entry["outputs"].values())
        or not isinstance(entry["files"], dict)
        or not all(isinstance(v, dict) for v in entry["files"].values())
    ):
        raise EdgecamError(f"malformed 'golden' entry: it needs {list(keys)}", path=bundle.root, fix="re-export")
    return entry


def _plan(bundle: Bundle, backend: str | None, variant: str | None) -> list[tuple[Variant, str]]:
    """(variant, backend) pairs to run: the ones asked for, else every variant on every backend that runs it."""
    formats = {name: create_backend(name).formats for name in ([backend] if backend else backend_names())}
    if variant is not None:
        variants = [bundle.variant(variant, formats[backend] if backend else None)]
    else:
        variants = list(bundle.variants.values())
    pairs = [(v, name) for v in variants for name, fmts in formats.items() if v.format in fmts]
    if not pairs:
        raise EdgecamError(
            f"no variant of this bundle runs on backend {backend!r}",
            path=bundle.root,
            fix=f"choose a backend that reads {sorted({v.format for v in variants})}",
        )
    return pairs


def _compare(
    bundle: Bundle,
    reference: np.ndarray,
    output: np.ndarray,
    tolerance: dict[str, float],
    frames: list[np.ndarray],
    letterboxes: list[Letterbox],
) -> Comparison:
    if bundle.task == "classify":
        return compare_classify(reference, output, tolerance)
    if reference.shape != output.shape:
        return Comparison({}, [f"output shape {output.shape} differs from the stored {reference.shape}"])
    settings = detect_settings(bundle)
    spec = bundle.preprocess

    def decode(raw: np.ndarray) -> list[Detections]:
        return [
            decode_detections(
                r,
                settings.strides,
                (spec.height, spec.width),
                conf=max(settings.conf - MATCH_MARGIN, 0.0),
                iou=settings.iou,
                max_det=settings.max_det,
                letterbox=lb,
                orig_size=(im.shape[1], im.shape[0]),
            )
            for r, lb, im in zip(raw, letterboxes, frames, strict=True)
        ]

    all_scores = float(np.abs(sigmoid_scores(reference) - sigmoid_scores(output)).max()) if output.size else 0.0
    return compare_detect(decode(reference), decode(output), tolerance, settings.conf, all_scores)


def _run(
    bundle: Bundle,
    var: Variant,
    backend: str,
    golden: dict[str, Any],
    frames: list[np.ndarray],
    batch: np.ndarray,
    letterboxes: list[Letterbox],
    threads: int,
    skip_missing: bool,
    device: str | None = None,
) -> GoldenRun | None:
    """None when the backend's package is not installed and `skip_missing` (backends were not chosen by hand)."""
    t0 = time.perf_counter()
    output = _infer(bundle, var, backend, batch, threads, skip_missing, device)
    if not isinstance(output, np.ndarray):
        return None if output is None else GoldenRun(var.name, backend, {}, [output], time.perf_counter() - t0)
    reference = load_output(bundle.root / golden["outputs"][var.name])
    tolerance = golden.get("tolerance", {}).get(var.name) or default_tolerance(bundle.task, var.precision)
    result = _compare(bundle, reference, output, tolerance, frames, letterboxes)
    return GoldenRun(var.name, backend, result.metrics, result.problems, time.perf_counter() - t0)


def _infer(
    bundle: Bundle,
    var: Variant,
    backend: str,
    batch: np.ndarray,
    threads: int,
    skip_missing: bool,
    device: str | None = None,
) -> np.ndarray | str | None:
    """The variant's first output for `batch` on `backend`; a problem line when it cannot run or its output does
    not fit the manifest (a class cut from class_names); None when the backend is not installed and
    `skip_missing`."""
    try:
        engine = create_backend(backend)
        engine.load(bundle.path_of(var), threads=threads, precision=var.precision, device=device or "CPU")
        output = np.asarray(engine.infer(batch)[0])
    except Exception as exc:  # any engine failure is this run's result, reported rather than raised
        if skip_missing and (isinstance(exc, ImportError) or isinstance(exc.__cause__, ImportError)):
            return None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot run: {first}"
    problem = output_problem(bundle, output.shape, len(batch))
    if problem:
        return f"{MISFIT}: {problem}"
    if not np.isfinite(output).all():  # a model trained to NaN, or damaged with its checksums redone
        return f"{NONFINITE}: {int(np.count_nonzero(~np.isfinite(output)))} of {output.size} values"
    return output


def _probe(
    report: VerifyReport,
    bundle: Bundle,
    pairs: list[tuple[Variant, str]],
    threads: int,
    skip: bool,
    device: str | None = None,
) -> None:
    """Without golden frames: one blank image through each intact variant, so a manifest whose class_names do
    not fit the model, or a model that outputs NaN, still fails (its checksums alone would pass)."""
    blank = np.zeros((1, *bundle.preprocess.input_shape), np.float32)
    for var, name in pairs:
        if any(report.files.get(rel) != "ok" for rel in var.files):
            continue
        output = _infer(bundle, var, name, blank, threads, skip, device)
        if output is None:
            _note(report, f"backend {name} is not installed: skipped")
        elif isinstance(output, str):
            report.problems.append(f"{bundle.path_of(var)} [{var.name} on {name}]: {output} ({_fix(output)})")


def _fix(problem: str) -> str:
    if problem.startswith("cannot run"):
        return "check that this backend can read the model"
    if problem.startswith(NONFINITE):
        return NONFINITE_FIX
    return MISFIT_FIX if problem.startswith(MISFIT) else DRIFT_FIX


def _note(report: VerifyReport, note: str) -> None:
    if note not in report.notes:
        report.notes.append(note)


def verify_bundle(
    bundle: Bundle | str | Path,
    backend: str | None = None,
    variant: str | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> VerifyReport:
    """Checksums of every file, then the golden frames on the chosen variants and backends, on `device` (the
    engine's device name; None: the CPU; give a `backend` with it, since device names belong to one engine).

    Problems found in the bundle (changed or missing files, drift) are returned in the report; an unreadable
    manifest or an unknown backend / variant raises EdgecamError.
    """
    t0 = time.perf_counter()
    if device is not None and backend is None:
        raise EdgecamError(f"device {device!r} needs a backend", fix="give --backend openvino or onnxruntime")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, check=False)
    golden = _golden_entry(bundle)
    pairs = _plan(bundle, backend, variant)
    listed = {rel: info for var in bundle.variants.values() for rel, info in var.files.items()}
    listed.update(golden["files"] if golden else {})
    status = {rel: _file_status(bundle.root, rel, info) for rel, info in listed.items()}
    report = VerifyReport(str(bundle.root), bundle.task, status, int(golden.get("count", 0)) if golden else 0)
    report.device = device or "CPU"
    for rel, state in status.items():
        if state == "missing":
            report.problems.append(f"{rel}: missing (copy the whole bundle directory)")
        elif state == "changed":
            report.problems.append(f"{rel}: sha256 differs from the manifest (file changed or corrupt; re-copy it)")
    if golden is None:
        report.notes.append(
            "no golden frames in this bundle: only checksums and output shapes verified (re-export to add them)"
        )
        _probe(report, bundle, pairs, threads or default_threads(), backend is None, device)
    elif status.get(golden["frames"]) != "ok":
        report.notes.append(f"golden comparison skipped: {golden['frames']} failed its check")
    else:
        frames = load_frames(bundle.root / golden["frames"])
        batch, letterboxes = preprocess_batch(frames, bundle.preprocess)
        report.golden_frames = len(frames)
        for var, name in pairs:
            needed = [*var.files, golden["outputs"].get(var.name)]
            bad = [rel for rel in needed if status.get(rel) != "ok"]
            if needed[-1] is None:
                _note(report, f"{var.name}: no golden output stored, only its checksums verified")
                continue
            if bad:
                _note(report, f"{var.name} not run: {', '.join(bad)} failed the checksum")
                continue
            args = (golden, frames, batch, letterboxes, threads or default_threads(), backend is None, device)
            run = _run(bundle, var, name, *args)
            if run is None:
                _note(report, f"backend {name} is not installed: skipped")
                continue
            report.runs.append(run)
            if run.problems:
                where = f"{bundle.path_of(var)} [{var.name} on {name}]"
                report.problems.append(f"{where}: {'; '.join(run.problems)} ({_fix(run.problems[0])})")
    if not bundle.sealed:
        report.notes.append(UNSEALED_NOTE)
    report.seconds = time.perf_counter() - t0
    return report
