"""Structured channel pruning: torch-pruning's dependency graph removes whole channels from every coupled layer
(residual adds, depthwise convs, the detector neck's upsample + add), so the model really gets smaller and faster.

A pruned model no longer matches `create_model(name, **args)`. Its checkpoint therefore carries, under
`PRUNED_KEY`, torch-pruning's pruning history (which channels left which layer, in order: plain lists that
`torch.load(weights_only=True)` accepts); `restore_pruned_channels` replays it on the freshly built registered model
before the weights load. That function is the hook `edgecam.train.checkpoint.load_checkpoint` calls.

Besides pruning, this module measures (GFLOPs, parameters, state-dict size, interleaved eager / ONNX Runtime
latency) and formats the report. It imports neither the checkpoint code nor the trainers, so the checkpoint module can
import it; the `edgecam prune` run (fine-tuning, distillation, report files, sweep) is `edgecam.train.prune_finetune`.
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from edgecam.runtime.errors import EdgecamError
from edgecam.train.flops import count_flops

PRUNED_KEY = "pruned"  # checkpoint key of the pruning record
PRUNED_FORMAT = 1
ROUND_TO = 8  # channel counts stay multiples of 8: SIMD-friendly, and what turns fewer FLOPs into less time
TARGET_MAX_RATIO = 0.9  # target-GFLOPs mode removes at most this fraction of the channels,
TARGET_SCAN = 0.05  # ... scanning up in these steps to the first that meets the target (past about 0.7, layers
TARGET_TOLERANCE = 0.005  # emptied by rounding make GFLOPs rise again), then bisecting that step to this width


def check_prune_args(ratio: float | None, target_gflops: float | None) -> None:
    """Exactly one of ratio (fraction of channels to remove) and target GFLOPs, each in its valid range."""
    if (ratio is None) == (target_gflops is None):
        raise EdgecamError(
            "give exactly one of --ratio and --target-gflops",
            fix="e.g. --ratio 0.5 removes half the channels; --target-gflops 0.1 prunes until the model fits",
        )
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise EdgecamError(f"--ratio {ratio} must lie strictly between 0 and 1", fix="e.g. --ratio 0.5")
    if target_gflops is not None and not target_gflops > 0.0:
        raise EdgecamError(f"--target-gflops {target_gflops} must be positive", fix="e.g. --target-gflops 0.1")


def protected_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels never change: the stem (first conv), every `nn.Linear` (the classifier) and
    the final `cls`/`reg` convs of detector heads, whose output channels are the output format."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise EdgecamError(f"{type(model).__name__} has no convolutions to prune")
    layers: list[nn.Module] = [convs[0]]
    layers += [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in model.modules():
        layers += [getattr(m, a) for a in ("cls", "reg") if isinstance(getattr(m, a, None), nn.Conv2d)]
    return layers


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv and linear layer, by module name: what the report and tests compare."""
    return {
        name: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }


def prune_model(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    ratio: float | None = None,
    target_gflops: float | None = None,
    global_pruning: bool = False,
    round_to: int = ROUND_TO,
) -> dict[str, Any]:
    """Remove channels in place: `ratio` of them, or the fewest that bring GFLOPs down to `target_gflops`.

    Importance is the group L2 norm (all coupled weights of a channel together). Uniform pruning removes `ratio`
    of each layer group's channels; `global_pruning` ranks channels across the whole network instead. The target
    is met by bisecting the ratio on copies of the model (`target_ratio`), then pruning once at the ratio found, so
    the result lands just below the target rather than a coarse step past it. Returns the record to store in the
    checkpoint under `PRUNED_KEY`.
    """
    check_prune_args(ratio, target_gflops)
    before = count_flops(model, input_shape)
    searched = 0
    if target_gflops is not None:
        channel_ratio, searched = target_ratio(model, input_shape, target_gflops, global_pruning, round_to)
    else:
        channel_ratio = float(ratio)
    pruner = _prune_once(model, input_shape, channel_ratio, global_pruning, round_to)
    history = [
        [str(n), bool(out), [int(getattr(i, "idx", i)) for i in idxs]] for n, out, idxs in pruner.pruning_history()
    ]
    return {
        "format": PRUNED_FORMAT,
        "input_shape": [int(s) for s in input_shape],
        "history": history,
        "ratio": ratio,
        "target_gflops": target_gflops,
        "channel_ratio": round(channel_ratio, 4),
        "global": bool(global_pruning),
        "round_to": round_to,
        "search_evaluations": searched,
        "base": before,
    }


def target_ratio(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    target_gflops: float,
    global_pruning: bool = False,
    round_to: int = ROUND_TO,
) -> tuple[float, int]:
    """The smallest channel ratio (to `TARGET_TOLERANCE`) whose pruned copy needs at most `target_gflops`, and how
    many copies were pruned to find it. GFLOPs fall in steps as the ratio grows (channels go `round_to` at a time),
    not always monotonically, hence the scan before the bisection."""
    base = count_flops(model, input_shape)["gflops"]
    if target_gflops >= base:
        raise EdgecamError(
            f"the model already needs only {base:.4g} GFLOPs <= --target-gflops {target_gflops}",
            fix=f"give a target below {base:.4g} or skip pruning",
        )

    def gflops_at(r: float) -> float:
        trial = copy.deepcopy(model)
        _prune_once(trial, input_shape, r, global_pruning, round_to)
        return count_flops(trial, input_shape)["gflops"]

    low, evaluations, fewest = 0.0, 0, base
    for step in range(1, round(TARGET_MAX_RATIO / TARGET_SCAN) + 1):
        high = step * TARGET_SCAN
        evaluations += 1
        got = gflops_at(high)
        if got <= target_gflops:
            break
        low, fewest = high, min(fewest, got)
    else:
        raise EdgecamError(
            f"cannot reach {target_gflops} GFLOPs: removing up to {TARGET_MAX_RATIO:.0%} of the channels leaves "
            f"at least {fewest:.4g} GFLOPs",
            fix="raise --target-gflops, or start from a smaller model or input size",
        )
    while high - low > TARGET_TOLERANCE:  # gflops_at(low) > target >= gflops_at(high)
        mid = (low + high) / 2
        evaluations += 1
        if gflops_at(mid) <= target_gflops:
            high = mid
        else:
            low = mid
    return high, evaluations


def _prune_once(
    model: nn.Module, input_shape: tuple[int, int, int], ratio: float, global_pruning: bool, round_to: int
) -> tp.pruner.MetaPruner:
    """One torch-pruning step removing `ratio` of the channels in place; the pruner holds the history."""
    was_training = model.training
    model.eval()  # tracing runs a forward pass: BatchNorm statistics must not see the dummy input
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            torch.zeros(1, *input_shape),
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=global_pruning,
            ignored_layers=protected_layers(model),
            round_to=round_to,
        )
        pruner.step()
    finally:
        model.train(was_training)
    return pruner


def restore_pruned_channels(model: nn.Module, pruned: dict[str, Any] | None) -> nn.Module:
    """Checkpoint hook: replay a stored pruning history on a freshly built model; unpruned checkpoints (None) pass
    through untouched. Deterministic: the same channels leave the same layers, so the state dict fits exactly."""
    if not pruned:
        return model
    if not isinstance(pruned, dict) or pruned.get("format") != PRUNED_FORMAT:
        raise EdgecamError(
            f"unknown pruning record format {pruned.get('format') if isinstance(pruned, dict) else pruned!r}",
            fix="re-run `edgecam prune` with this edgecam version",
        )
    was_training = model.training
    model.eval()
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *pruned["input_shape"]))
        graph.load_pruning_history([(name, out, list(idxs)) for name, out, idxs in pruned["history"]])
    except (AttributeError, IndexError, KeyError, RuntimeError, ValueError) as exc:
        raise EdgecamError(
            f"the pruning history does not fit the model ({type(exc).__name__}: {exc})",
            fix="the checkpoint was pruned from a different architecture; re-run `edgecam prune`",
        ) from None
    finally:
        model.train(was_training)
    return model


def model_stats(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, float]:
    """GFLOPs, parameters and the serialized state-dict size: what storage and compute budgets are checked against."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return {**count_flops(model, input_shape), "state_dict_mb": round(buf.tell() / 2**20, 4)}


def compare_latency(
    models: dict[str, nn.Module],
    input_shape: tuple[int, int, int],
    runs: int = 50,
    rounds: int = 5,
    onnx: bool = True,
) -> dict[str, dict[str, float]]:
    """Batch-1 CPU latency (median ms) of each model in torch eager and, with `onnx`, ONNX Runtime.

    The models take turns in `rounds` interleaved blocks, so load from other processes hits all of them alike.
    Eager timing comes first: after the ONNX exporter has traced the models, eager timings drift.
    """
    x = torch.rand(1, *input_shape)
    result = _time_interleaved({n: {"torch": _eager_runner(m, x)} for n, m in models.items()}, runs, rounds)
    if onnx:
        with tempfile.TemporaryDirectory() as tmp:
            runners = {
                n: {"onnxruntime": _onnx_runner(m, x, Path(tmp) / f"model{i}.onnx")}
                for i, (n, m) in enumerate(models.items())
            }
            for name, times in _time_interleaved(runners, runs, rounds).items():
                result[name].update(times)
    return result


def _eager_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    model = model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _onnx_runner(model: nn.Module, x: torch.Tensor, path: Path) -> Callable[[], object]:
    """The graph `edgecam export` writes (train/onnx_trace.py), loaded by the runtime's own backend."""
    from edgecam.runtime.backends import create_backend
    from edgecam.train.onnx_trace import trace_onnx

    trace_onnx(model, tuple(x.shape[1:]), path)
    engine = create_backend("onnxruntime")
    engine.load(path, threads=torch.get_num_threads())
    batch = x.numpy()
    return lambda: engine.infer(batch)


def _time_interleaved(
    runners: dict[str, dict[str, Callable[[], object]]], runs: int, rounds: int
) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in r} for n, r in runners.items()}
    for r in runners.values():
        for fn in r.values():
            for _ in range(5):  # warm-up: allocator, thread pools, lazy initialisation
                fn()
    per_round = max(1, math.ceil(runs / rounds))
    for _ in range(rounds):
        for name, r in runners.items():
            for key, fn in r.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    fn()
                    times[name][key].append((time.perf_counter() - start) * 1e3)
    return {n: {f"{k}_ms": round(statistics.median(v), 4) for k, v in t.items()} for n, t in times.items()}


def plot_metric_vs_gflops(points: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """One point per pruning ratio plus the unpruned model (ratio 0), labelled with the ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(points, key=lambda p: p["gflops"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["gflops"] for p in pts], [p[metric] for p in pts], "o-")
    for i, p in enumerate(pts):
        label = "unpruned" if p["ratio"] == 0 else f"ratio {p['ratio']:g}"
        offset = (4, -12 if i % 2 else 6)  # alternate above / below: neighbouring points are often close
        ax.annotate(label, (p["gflops"], p[metric]), textcoords="offset points", xytext=offset, fontsize=8)
    name = {"top1": "top-1 accuracy", "map50": "mAP@0.5"}.get(metric, metric)
    ax.set(xlabel="GFLOPs", ylabel=name, title=f"{name} vs GFLOPs after pruning + fine-tuning", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_prune_report(report: dict[str, Any]) -> str:
    """The human table `edgecam prune` prints: before, after and after/before per measured quantity."""
    rows = [
        ("GFLOPs", "gflops", "{:.4g}"),
        ("params (M)", "params_m", "{:.4g}"),
        ("state dict (MB)", "state_dict_mb", "{:.3f}"),
    ]
    rows += [(f"latency {k[:-3]} (ms)", k, "{:.3f}") for k in report["before"] if k.endswith("_ms")]
    if report["metric"]:
        rows += [(k, k, "{:.4f}") for k in ("top1", "map50", "map50_95") if k in report["after"]]
    lines = [f"{'':<26}{'before':>10}{'after':>10}{'after/before':>14}"]
    for label, key, fmt in rows:
        b, a = report["before"][key], report["after"][key]
        ratio = f"{a / b:.2f}" if b else "-"
        lines.append(f"{label:<26}{fmt.format(b):>10}{fmt.format(a):>10}{ratio:>14}")
    speedups = ", ".join(f"{k} {v:.2f}x" for k, v in report["speedup"].items())
    lines.append(f"speedup: {speedups} at {report['threads']} thread(s)")
    lines.append(f"pruned checkpoint: {report['pruned_checkpoint']}")
    return "\n".join(lines)
