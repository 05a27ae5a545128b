"""`edgecam fit`: search pruning ratio x input size x precision for the most accurate variant that meets a device's
latency budget, built and measured with the pipeline's own functions, and return it as a sealed bundle.

Every candidate goes through what a user would run by hand: `edgecam prune` (prune + short fine-tune), a short
fine-tune at a smaller input size (`edgecam train --weights`), `edgecam export` / `quantize` (INT8 by NNCF, with or
without accuracy control), and `devices.benchmark.time_variant` for the latency here. Its accuracy is the one the
bundle's manifest records: the variant's own engine on DATA's validation split.

Import rule (DESIGN.md): devices/ imports export/ only in this feature, to build variants, and train/ only here, for
pruning and fine-tuning. Both are imported lazily inside the functions of `fit_build`, so importing
`edgecam.devices` (profiles, benchmark, package, install) never pulls in torch or the training code.

Why a smaller input size gets its own fine-tune rather than re-using the checkpoint at a new size: on the demo
classifier (64 px), evaluating at 32 px without it dropped validation top-1 from 0.99 to 0.76.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgecam.devices.fit_build import VARIANTS, Builder, final_bundle
from edgecam.devices.profiles import Budget, DeviceProfile, load_profile
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import MAX_SIDE

DEFAULT_RATIOS = (0.0, 0.3, 0.5)
SIZE_STEPS = (1.0, 0.5)  # default input sizes: the model's own and half of it (`--sizes` for more)
PRECISION_ORDER = ("fp32", "fp16", "bf16", "int8", "int8-ac")  # cheapest to build first
MIN_SIZE = 16  # the smallest input size the trainer fine-tunes at (train/config.py)


@dataclass
class FitOptions:
    """Everything `edgecam fit` takes besides the checkpoint, profile and data."""

    fps: float | None = None
    cameras: int | None = None
    latency_ms: float | None = None
    time_limit: float = 10.0  # minutes for the whole search
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    sizes: tuple[int, ...] | None = None  # None: the model's size and half of it
    precisions: tuple[str, ...] | None = None  # None: the profile's, INT8 with and without accuracy control
    finetune_epochs: int = 1
    batch: int = 1  # inputs per inference call: a frame's slot crops go in one call
    runs: int = 100
    warmup: int = 10
    calib: int = 300
    max_drop: float = 0.5  # points of top-1 / mAP@0.5 that accuracy-controlled INT8 may lose
    progress: bool = True


@dataclass
class Candidate:
    """One point of the grid and what was measured for it; a row of fit.json."""

    ratio: float
    size: int
    precision: str
    backend: str
    variant: str
    status: str = "not tried"  # measured | failed | skipped | not tried
    accuracy: float | None = None
    latency_here_ms: float | None = None
    p95_here_ms: float | None = None
    device_latency_ms: float | None = None
    meets_budget: bool | None = None
    seconds: float = 0.0  # this candidate's own work, plus any checkpoint it was the first to need
    checkpoint_cached: bool | None = None
    gate: dict[str, Any] | None = None
    note: str = ""
    chosen: bool = False
    bundle: str | None = None  # the cached bundle it was measured in
    checkpoint: str | None = None

    @property
    def label(self) -> str:
        return f"prune {self.ratio:g}, {self.size} px, {self.precision}"


# ------------------------------------------------------------------------------------------------- inputs


def resolve_budget(profile: DeviceProfile, opts: FitOptions) -> tuple[Budget, str]:
    """The profile's budget, or the one given on the command line (`--fps/--cameras` or `--latency-ms`)."""
    if opts.fps is not None and opts.latency_ms is not None:
        raise EdgecamError("give --fps (with --cameras) or --latency-ms, not both", fix="e.g. --fps 10 --cameras 2")
    if opts.cameras is not None and opts.latency_ms is not None:
        raise EdgecamError("--cameras goes with --fps, not with --latency-ms", fix="drop --cameras")
    b = profile.budget
    if opts.latency_ms is not None:
        raw, source = {"latency_ms": opts.latency_ms}, "command line"
    elif opts.fps is not None or opts.cameras is not None:
        if opts.fps is None and b.fps is None:
            raise EdgecamError(
                f"--cameras needs a frame rate and profile {profile.name!r} budgets a latency", fix="add --fps F"
            )
        raw, source = {"fps": opts.fps or b.fps, "cameras": opts.cameras or b.cameras}, "command line"
    else:
        return b, f"profile {profile.name}"
    try:
        return Budget.model_validate({**raw, "peak_memory_mb": b.peak_memory_mb}), source
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise EdgecamError(f"invalid budget: {where + ': ' if where else ''}{err['msg']}") from None


def precisions_for(profile: DeviceProfile, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The precisions to try, cheapest to build first: the profile's (INT8 both with and without accuracy control)
    that its engine has a variant for, or the ones asked for, which must all be runnable."""
    table = VARIANTS[profile.backend]
    if asked is None:
        wanted = [p for p in profile.precisions if p in table] + (["int8-ac"] if "int8" in profile.precisions else [])
    else:
        unknown = [p for p in asked if p not in table]
        if unknown:
            raise EdgecamError(
                f"precision(s) {', '.join(unknown)} have no {profile.backend} variant",
                fix=f"choose from {', '.join(table)}",
            )
        wanted = list(asked)
    if not wanted:
        raise EdgecamError(f"profile {profile.name!r} lists no precision {profile.backend} has a variant for")
    return tuple(p for p in PRECISION_ORDER if p in wanted)


def default_sizes(native: int, step: int) -> tuple[int, ...]:
    """The model's input size and half of it, multiples of `step` (8; a detector's largest stride)."""
    sizes = []
    for f in SIZE_STEPS:
        s = max(step, int(round(native * f / step)) * step)
        if s >= MIN_SIZE and s not in sizes:
            sizes.append(s)
    return tuple(sizes)


def check_options(opts: FitOptions) -> None:
    checks = [
        (opts.time_limit > 0, "--time-limit must be a positive number of minutes"),
        (bool(opts.ratios) and all(0 <= r < 1 for r in opts.ratios), "--ratios must lie in [0, 1), e.g. 0,0.3,0.5"),
        (opts.sizes is None or (bool(opts.sizes) and all(MIN_SIZE <= s <= MAX_SIDE for s in opts.sizes)),
         f"--sizes must be {MIN_SIZE}..{MAX_SIDE} pixels"),
        (opts.finetune_epochs >= 1, "--finetune-epochs must be at least 1"),
        (opts.batch >= 1, "--batch must be at least 1"),
        (opts.runs >= 1 and opts.warmup >= 0, "--runs must be at least 1"),
        (opts.calib >= 1, "--calib must be at least 1"),
        (0 <= opts.max_drop < 100, "--max-drop is in points, 0..100"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise EdgecamError(message)


def unit_order(ratios: tuple[float, ...], sizes: tuple[int, ...], native: int) -> list[tuple[float, int]]:
    """(ratio, size) pairs cheap-first: the unpruned model at its own size (nothing to fine-tune), then by the
    estimated fine-tuning cost, pixels x remaining channels squared, plus the resize fine-tune that a pruned
    smaller model starts from."""

    def own(r: float, s: int) -> float:
        return 0.0 if (r, s) == (0.0, native) else (s / native) ** 2 * (1 - r) ** 2

    def cost(r: float, s: int) -> float:
        return own(r, s) + (own(0.0, s) if r > 0 and s != native else 0.0)

    units = {(float(r), int(s)) for r in ratios for s in sizes}
    return sorted(units, key=lambda u: (cost(*u), -u[1], u[0]))


def choose(rows: list[Candidate]) -> Candidate | None:
    """The most accurate measured candidate that meets the budget; the faster one on a tie."""
    ok = [c for c in rows if c.status == "measured" and c.meets_budget]
    return max(ok, key=lambda c: (c.accuracy or 0.0, -(c.device_latency_ms or 0.0))) if ok else None


def closest(rows: list[Candidate]) -> Candidate | None:
    """The measured candidate with the lowest predicted device latency: what came closest to the budget."""
    measured = [c for c in rows if c.status == "measured" and c.device_latency_ms is not None]
    return min(measured, key=lambda c: c.device_latency_ms) if measured else None


# ------------------------------------------------------------------------------------------------- search


@dataclass
class FitResult:
    report: dict[str, Any]
    rows: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.chosen else 1


def fit(
    checkpoint: str | Path, device: str | Path, data: str | Path, out: str | Path, opts: FitOptions | None = None
) -> FitResult:
    """Search the grid within `opts.time_limit` minutes; write OUT/fit.json, OUT/fit.png and, when a candidate
    meets the budget, OUT/bundle (the chosen variant's bundle, verified). A stale OUT/bundle is removed first."""
    opts = opts or FitOptions()
    check_options(opts)
    profile = load_profile(device)
    budget, budget_source = resolve_budget(profile, opts)
    precisions = precisions_for(profile, opts.precisions)
    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    if not checkpoint.is_file():
        raise EdgecamError("checkpoint not found", path=checkpoint, fix="give RUN_DIR/best.pt from `edgecam train`")
    if not data.exists():
        raise EdgecamError("dataset not found", path=data, fix="give the folder the checkpoint was trained on")

    started = time.monotonic()
    builder = Builder(checkpoint, data, out, opts)
    native, step = builder.native_size, builder.size_step
    sizes = tuple(sorted(set(opts.sizes or default_sizes(native, step)), reverse=True))
    bad = [s for s in sizes if s % step]
    if bad:
        raise EdgecamError(f"--sizes {bad} must be multiples of {step} for this model")
    rows = [
        Candidate(r, s, p, profile.backend, VARIANTS[profile.backend][p][-1])
        for r, s in unit_order(opts.ratios, sizes, native)
        for p in precisions
    ]
    threads = min(profile.threads_or_cores(), os.cpu_count() or 1)
    latency_budget = budget.latency_ms_per_frame()
    shutil.rmtree(out / "bundle", ignore_errors=True)  # a bundle from an earlier run is not this run's answer

    from tqdm import tqdm

    deadline = started + opts.time_limit * 60
    stopped_for_time = False
    bar = tqdm(rows, desc="fit", unit="candidate", disable=not opts.progress)
    try:
        for cand in bar:
            if time.monotonic() > deadline and any(c.status != "not tried" for c in rows):
                stopped_for_time = True
                cand.note = "time limit reached before it started"
                continue
            bar.set_description(f"fit: {cand.label}")
            skip = should_skip(cand, rows, opts.max_drop)
            if skip:
                cand.status, cand.note = "skipped", skip
                continue
            t0 = time.monotonic()
            try:
                minutes = builder.share(rows, deadline)
                _measure(cand, builder, precisions, threads, minutes)
                cand.device_latency_ms = round(cand.latency_here_ms * profile.speed_factor, 4)
                cand.meets_budget = cand.device_latency_ms <= latency_budget
            except EdgecamError as exc:
                if cand is rows[0]:  # the model as given cannot be exported or measured: bad input
                    raise
                cand.status, cand.note = "failed", str(exc)
            cand.seconds = round(time.monotonic() - t0, 1)
            best = choose(rows)
            bar.set_postfix_str(f"best {best.label} {best.accuracy:.3f}" if best else "none meets the budget yet")
    finally:
        bar.close()  # before any error line, so it starts a line of its own

    chosen = choose(rows)
    verify = None
    if chosen:
        chosen.chosen = True
        verify = final_bundle(chosen, builder, out / "bundle")
    from edgecam.devices.fit_report import closest_message, plot_fit

    near = None if chosen else closest(rows)
    report = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "device": profile.name,
        "profile": {
            "backend": profile.backend,
            "device": profile.engine_device,
            "speed_factor": profile.speed_factor,
            "speed_factor_source": profile.speed_factor_source,
            "runs_here": profile.runs_here()[0],
        },
        "budget": {
            "latency_ms_per_frame": round(latency_budget, 4),
            "fps": budget.fps,
            "cameras": budget.cameras if budget.fps else None,
            "latency_ms": budget.latency_ms,
            "from": budget_source,
        },
        "timing": {
            "backend": profile.backend,
            "device_here": "CPU",
            "threads": threads,
            "batch": opts.batch,
            "runs": opts.runs,
            "statistic": "p50 of the engine's own call on a bound input (devices.benchmark.time_variant)",
            "device_latency": f"latency here x speed_factor {profile.speed_factor:g} ({profile.speed_factor_source})",
        },
        "metric": builder.metric,
        "grid": {"ratios": list(opts.ratios), "sizes": list(sizes), "precisions": list(precisions)},
        "finetune_epochs": opts.finetune_epochs,
        "time_limit_min": opts.time_limit,
        "elapsed_s": round(time.monotonic() - started, 1),
        "stopped_for_time": stopped_for_time,
        "candidates": [{**asdict(c), "label": c.label} for c in rows],
        "chosen": rows.index(chosen) if chosen else None,
        "bundle": str(out / "bundle") if chosen else None,
        "verify": verify,
        "closest": closest_message(near, profile, latency_budget) if near else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    report["plot"] = str(plot_fit(rows, latency_budget, profile, builder.metric, out / "fit.png"))
    (out / "fit.json").write_text(json.dumps(report, indent=2) + "\n")
    return FitResult(report, rows, chosen)


def should_skip(cand: Candidate, rows: list[Candidate], max_drop: float) -> str:
    """Accuracy control only reverts layers when plain INT8 lost more than `max_drop`: when it did not, the result
    would be the same model, so the candidate is not built twice."""
    if cand.precision != "int8-ac":
        return ""
    plain = next((c for c in rows if (c.ratio, c.size, c.precision) == (cand.ratio, cand.size, "int8")), None)
    if plain is None or plain.status != "measured" or not plain.gate or plain.gate.get("drop") is None:
        return ""
    drop = plain.gate["drop"]
    if drop > max_drop:
        return ""
    lost = f"lost {drop:.2f} points (<= {max_drop:g})" if drop > 0 else "lost nothing"
    lost = f"gained {-drop:.2f} points" if drop < 0 else lost
    return f"plain INT8 {lost}: accuracy control would change nothing"


def _measure(cand: Candidate, builder: Builder, precisions: tuple[str, ...], threads: int, minutes: float) -> None:
    """Build (or take from the cache) the candidate's checkpoint and bundle; read the variant's validation accuracy
    from the manifest and time it here."""
    from edgecam.devices.benchmark import time_variant
    from edgecam.runtime.bundle import load_bundle

    ckpt, cand.checkpoint_cached = builder.checkpoint(cand.ratio, cand.size, minutes)
    cand.checkpoint = str(ckpt)
    bundle, manifest = builder.bundle(ckpt, cand, precisions)
    entry = manifest["variants"][cand.variant]
    cand.bundle = str(bundle)
    cand.accuracy = entry["metrics"].get(builder.metric)
    cand.gate = entry.get("gate")
    if cand.accuracy is None:
        raise EdgecamError(f"the validation split gave no {builder.metric}", path=builder.data)
    b = load_bundle(bundle)
    shape = (builder.opts.batch, *b.preprocess.input_shape)
    var = b.variants[cand.variant]
    timed = time_variant(
        b.path_of(var), cand.backend, var.precision, shape, builder.opts.runs, builder.opts.warmup, threads
    )
    cand.latency_here_ms, cand.p95_here_ms = timed["p50_ms"], timed["p95_ms"]
    cand.status = "measured"
