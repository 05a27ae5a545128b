"""Score a run's scenario events (its JSONL) against a synthetic video's ground truth: were the alerts right?

Pure Python (no torch, no model): the device that ran the scenario can score too. Used by `edgecam score-events`.

True events come from the truth file that `edgecam data video` writes beside the video:

- shelf (`rois`, per-frame slot `labels`): each run of a slot's state is a change at its first frame (the first
  frame counts as a change from "unknown", as the scenario sees it). A run of `low` is a true `low_stock`; a run of
  `empty` whose visible (unoccluded) time reaches `oos_seconds` is a true `out_of_stock` (a shorter gap is below
  the alert's patience, so no alert is right), and the end of such a run, if the video goes on, a true `restocked`.
- street (per-frame `boxes` with `ids`, version 2): each id's ground point (bottom-centre of its box, as the
  scenario uses) against the camera's zones and lines, with the scenario's own geometry: entering a zone (or
  appearing inside it) is a `zone_enter`, leaving it or disappearing inside it before the video ends a `zone_exit`,
  a stay of `loiter_seconds` a `loitering` at entry + loiter_seconds, and a ground point moving across a line (the
  segment between consecutive points off the line intersects it) a `line_cross` in or out.

Matching is one-to-one, per event type and key (the slot; the zone or line with the object's class). A predicted
event at time p matches a true one at t when t - tolerance <= p <= t + allowed delay + hidden, where the allowed
delay is `max_delay` if given, else the type's built-in wait (`oos_seconds` for out_of_stock, 0 otherwise) plus the
tolerance, and `hidden` is the time the slot was occluded before the alert could be due (the scenario does not
count time behind a shopper). True events are taken in order of their window's end, each matched to the earliest
free prediction inside its window: with windows of equal length this gives the most matches. Delay = p - t.

Street cool-downs are read from the config, as the scenario applies them: per event type and zone or line (every
class and, for lines, both directions share one), a zone's or line's own `cooldown_seconds` over the global one.
Taking the true events of one such key in time order, an event within the cool-down of the last expected one is
not expected (the scenario suppresses it on purpose); one later than the cool-down plus `COOLDOWN_MARGIN` after the
last event that may have fired is expected; one in between is optional (its timing decides): matched, it is neither
a hit nor a false alarm, unmatched, no miss. Line counts (`counts`) are compared apart, on every true crossing: the
scenario counts suppressed crossings too, and each `line_cross` carries the line's running counts.

Otherwise the truth is what happened, not what the scenario's settings let through: a shelf gap only just longer
than `oos_seconds` is due (the scenario also waits `min_frames` to believe a state). Timestamps are positions in
the video file (frame / fps), so runs on files are scored, not live cameras.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios.geometry import ground_point, point_in_polygon, segments_intersect, side_of_line

RETAIL_KINDS = ("out_of_stock", "low_stock", "restocked")
SECURITY_KINDS = ("zone_enter", "zone_exit", "line_cross in", "line_cross out", "loitering")
DEFAULT_TOLERANCE = 2.0
DEFAULT_OOS_SECONDS = 10.0  # RetailScenario's `oos_seconds` default
TRUTH_VERSIONS = (1, 2)
COOLDOWN_MARGIN = 1.0  # seconds either side of a cool-down's end in which an event may or may not be suppressed


@dataclass(frozen=True)
class TrueEvent:
    kind: str
    key: str
    time: float
    latest: float  # the last time a prediction still matches
    optional: bool = False  # may have been suppressed by a cool-down: neither a hit nor a miss


@dataclass(frozen=True)
class PredEvent:
    kind: str
    key: str
    time: float
    line: int  # in the JSONL


# ---- reading ---------------------------------------------------------------------------------------------------
def load_truth(path: Path) -> dict[str, Any]:
    """A ground-truth file of `edgecam data video` (either scene, version 1 or 2), checked enough to score."""
    fix = "give the .json that `edgecam data video` wrote beside the video"
    try:
        truth = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgecamError(f"cannot read the truth file: {exc.strerror}", path=path, fix="check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgecamError("not a JSON ground-truth file", path=path, fix=fix) from None
    if not isinstance(truth, dict) or not _finite(truth.get("fps")) or truth["fps"] <= 0:
        raise EdgecamError("not a ground-truth file (no positive `fps`)", path=path, fix=fix)
    version = truth.get("version", 1)
    if version not in TRUTH_VERSIONS:
        raise EdgecamError(f"truth version {version!r} is not one of {TRUTH_VERSIONS}", path=path, fix=fix)
    if isinstance(truth.get("rois"), list) and isinstance(truth.get("labels"), list):
        n = len(truth["rois"])
        if not all(isinstance(row, list) and len(row) == n for row in truth["labels"]):
            raise EdgecamError(f"`labels` rows must have one state per roi ({n})", path=path, fix=fix)
        truth["scene"] = "shelf"
    elif isinstance(truth.get("boxes"), list):
        truth["scene"] = "street"
        ids = truth.get("ids")
        if ids is not None and (
            not isinstance(ids, list)
            or len(ids) != len(truth["boxes"])
            or any(
                not isinstance(i, list) or not isinstance(b, list) or len(i) != len(b)
                for i, b in zip(ids, truth["boxes"], strict=True)
            )
        ):
            raise EdgecamError("`ids` must list one id per box in every frame", path=path, fix=fix)
    else:
        raise EdgecamError("not a ground-truth file (neither shelf `rois`/`labels` nor street `boxes`)", path, fix)
    return truth


def load_events(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, event) for every event in a run's JSONL; a bad line is an error naming it."""
    fix = "give the JSON lines file an `edgecam run --jsonl` (or a `sinks: {jsonl: ...}`) wrote"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgecamError(f"cannot read the events file: {exc.strerror}", path=path, fix="check the path") from None
    except UnicodeDecodeError:
        raise EdgecamError("not a text file", path=path, fix=fix) from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EdgecamError(f"line {n}: not JSON ({exc.msg})", path=path, fix=fix) from None
        events = record.get("events", []) if isinstance(record, dict) else None
        if not isinstance(events, list):
            raise EdgecamError(f"line {n}: not a frame record with an `events` list", path=path, fix=fix)
        for e in events:
            ts = e.get("timestamp") if isinstance(e, dict) else None
            if not isinstance(e, dict) or not isinstance(e.get("kind"), str) or not _finite(ts):
                raise EdgecamError(f"line {n}: an event without a `kind` and a numeric `timestamp`", path, fix=fix)
            out.append((n, e))
    return out


def load_scenario(config: Path, camera: str | None, class_names: Sequence[str]) -> Any:
    """The camera's scenario built from cameras.yaml exactly as `edgecam run` builds it (same parsing, same errors),
    without loading its bundle: the scorer needs only the slots, zones and lines."""
    from edgecam.runtime.scenarios import create_scenario

    try:
        raw = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgecamError(f"cannot read the config: {exc.strerror}", path=config, fix="check the path") from None
    except yaml.YAMLError:
        raise EdgecamError("invalid YAML", path=config, fix="check the indentation and quoting") from None
    cams = raw.get("cameras") if isinstance(raw, dict) else None
    cams = [c for c in cams if isinstance(c, dict)] if isinstance(cams, list) else []
    names = [str(c.get("name")) for c in cams]
    if camera is None and len(cams) != 1:
        raise EdgecamError(f"{len(cams)} cameras in the config", path=config, fix=f"pick one: --camera {names}")
    found = cams[0] if camera is None else next((c for c in cams if c.get("name") == camera), None)
    if found is None:
        raise EdgecamError(f"no camera named {camera!r}", path=config, fix=f"use one of: {', '.join(names)}")
    try:
        return create_scenario(
            found.get("scenario", "none"), found.get("scenario_config"), tuple(class_names), str(found.get("name"))
        )
    except EdgecamError as exc:
        raise EdgecamError(f"camera {found.get('name')!r}: {exc.message}", path=config, fix=exc.fix) from None


# ---- true events -----------------------------------------------------------------------------------------------
def _runs(states: Sequence[str]) -> list[tuple[str, int, int]]:
    """(state, first frame, end frame exclusive) for each run of equal states."""
    out: list[tuple[str, int, int]] = []
    for f, s in enumerate(states):
        if out and out[-1][0] == s:
            out[-1] = (s, out[-1][1], f + 1)
        else:
            out.append((s, f, f + 1))
    return out


def _due(hidden: Sequence[bool], f0: int, f1: int, wait: float, fps: float) -> tuple[bool, float]:
    """Whether a slot is visible for `wait` seconds within frames f0..f1 (the first visible frame when 0), and the
    seconds it was occluded until then."""
    seen = 0
    for f in range(f0, f1):
        seen += not hidden[f]
        if seen and seen / fps >= wait - 1e-9:
            return True, (f + 1 - f0 - seen) / fps
    return False, 0.0


def retail_truth(
    truth: dict[str, Any], names: Sequence[str], oos_seconds: float, tolerance: float, max_delay: float | None
) -> list[TrueEvent]:
    """True out_of_stock / low_stock / restocked per slot from the per-frame slot states (see the module doc)."""
    fps, labels = float(truth["fps"]), truth["labels"]
    occluded = truth.get("occluded") or [[] for _ in labels]
    out: list[TrueEvent] = []
    for i, name in enumerate(names):
        hidden = [i in row for row in occluded]
        runs = _runs([row[i] for row in labels])
        due: list[tuple[str, int, int, float]] = []  # (kind, first frame, end frame, built-in wait)
        for k, (state, f0, f1) in enumerate(runs):
            if state == "low":
                due.append(("low_stock", f0, f1, 0.0))
            elif state == "empty" and _due(hidden, f0, f1, oos_seconds, fps)[0]:
                due.append(("out_of_stock", f0, f1, oos_seconds))
                if k + 1 < len(runs):
                    due.append(("restocked", f1, runs[k + 1][2], 0.0))
        for kind, f0, f1, wait in due:
            seen, extra = _due(hidden, f0, f1, wait, fps)
            if seen:
                t = f0 / fps
                allowed = max_delay if max_delay is not None else wait + tolerance
                out.append(TrueEvent(kind, name, t, t + allowed + extra))
    return out


def _tracks(truth: dict[str, Any], path: Path) -> dict[int, list[tuple[int, str, tuple[float, float]]]]:
    """id -> [(frame, class, ground point)] from a version-2 street truth."""
    if truth.get("ids") is None:
        raise EdgecamError(
            "the street truth has no box `ids` (version 1): zone and line events need to know who is who",
            path=path,
            fix="regenerate it with `edgecam data video --scenario security` (same seed, same video)",
        )
    tracks: dict[int, list[tuple[int, str, tuple[float, float]]]] = defaultdict(list)
    for f, (boxes, ids) in enumerate(zip(truth["boxes"], truth["ids"], strict=True)):
        for box, tid in zip(boxes, ids, strict=True):
            tracks[int(tid)].append((f, str(box[4]), ground_point(tuple(float(v) for v in box[:4]))))  # type: ignore[arg-type]
    return tracks


def _raw_security_events(truth: dict[str, Any], scenario: Any, path: Path) -> list[tuple[str, str, str, float, float]]:
    """(kind, zone or line name, class, time, cool-down) of every true street event, before any cool-down."""
    fps, n = float(truth["fps"]), len(truth["boxes"])
    out: list[tuple[str, str, str, float, float]] = []
    for steps in _tracks(truth, path).values():
        cls = steps[0][1]
        for zone in scenario.zones:
            if zone.classes is not None and cls not in zone.classes:
                continue
            entered, cool = None, zone.cooldown_seconds
            for f, _, p in steps + [(steps[-1][0] + 1, cls, None)]:
                inside = p is not None and point_in_polygon(p, zone.polygon)
                if inside and entered is None:
                    entered = f / fps
                    out.append(("zone_enter", zone.name, cls, entered, cool))
                elif not inside and entered is not None:
                    if p is not None or f < n:  # disappearing at the video's end is not an exit
                        out.append(("zone_exit", zone.name, cls, f / fps, cool))
                    if zone.loiter_seconds is not None and f / fps - entered >= zone.loiter_seconds:
                        out.append(("loitering", zone.name, cls, entered + zone.loiter_seconds, cool))
                    entered = None
        for line in scenario.lines:
            if line.classes is not None and cls not in line.classes:
                continue
            anchor: tuple[int, tuple[float, float]] | None = None
            for f, _, p in steps:
                side = side_of_line(p, line.a, line.b)
                if side == 0:
                    continue
                if anchor is not None and side != anchor[0] and segments_intersect(anchor[1], p, line.a, line.b):
                    direction = "in" if side > 0 else "out"
                    if direction in line.directions:
                        out.append((f"line_cross {direction}", line.name, cls, f / fps, line.cooldown_seconds))
                anchor = (side, p)
    return out


def security_truth(
    truth: dict[str, Any], scenario: Any, tolerance: float, max_delay: float | None, path: Path
) -> list[TrueEvent]:
    """True zone / line / loitering events from the boxes' ids and ground points, the config's cool-downs applied
    (see the module doc)."""
    allowed = max_delay if max_delay is not None else tolerance
    by_key: dict[tuple[str, str], list[tuple[float, str, str, float]]] = defaultdict(list)
    for kind, name, cls, t, cool in _raw_security_events(truth, scenario, path):
        by_key[(kind.split(" ")[0], name)].append((t, kind, cls, cool))
    out: list[TrueEvent] = []
    for (_, name), events in by_key.items():
        certain: float | None = None  # the last event that must have fired
        possible: float | None = None  # the last event that may have fired
        for t, kind, cls, cool in sorted(events):
            if cool > 0 and certain is not None and t - certain < cool - COOLDOWN_MARGIN:
                continue  # suppressed by the cool-down
            optional = cool > 0 and possible is not None and t - possible < cool + COOLDOWN_MARGIN
            out.append(TrueEvent(kind, f"{name}/{cls}", t, t + allowed, optional))
            possible = t
            if not optional:
                certain = t
    return out


def line_counts(truth: dict[str, Any], scenario: Any, path: Path, events: list[tuple[int, dict[str, Any]]]) -> dict:
    """Per line and direction, true crossings against the scenario's count (the largest running count its
    `line_cross` events carry, else their number), and the count error: sum of |differences| / true crossings."""
    true: dict[str, dict[str, int]] = {line.name: dict.fromkeys(line.directions, 0) for line in scenario.lines}
    for kind, name, _, _, _ in _raw_security_events(truth, scenario, path):
        if kind.startswith("line_cross "):
            true[name][kind.split(" ")[1]] += 1
    seen: dict[str, dict[str, int]] = {name: dict.fromkeys(d, 0) for name, d in true.items()}
    ran: dict[str, dict[str, int]] = {name: dict.fromkeys(d, 0) for name, d in true.items()}
    for _, e in events:
        name, direction = e.get("line"), e.get("direction")
        if e["kind"] != "line_cross" or not isinstance(name, str) or not isinstance(direction, str):
            continue  # another event, or a line_cross naming no line: a false alarm for the matcher, no count
        if name not in seen or direction not in seen[name]:
            continue
        seen[name][direction] += 1
        counts = e.get("counts")
        if isinstance(counts, dict):
            for d in ran[name]:
                if _finite(counts.get(d)):
                    ran[name][d] = max(ran[name][d], int(counts[d]))
    out: dict[str, Any] = {"lines": {}}
    total = wrong = 0
    for name, dirs in true.items():
        out["lines"][name] = {}
        for d, n in dirs.items():
            counted = max(ran[name][d], seen[name][d])
            out["lines"][name][d] = {"true": n, "counted": counted}
            total, wrong = total + n, wrong + abs(counted - n)
    out["true"], out["wrong"] = total, wrong
    out["count_error"] = round(wrong / total, 4) if total else (0.0 if wrong == 0 else None)
    return out


# ---- predictions and matching ----------------------------------------------------------------------------------
def predicted(events: list[tuple[int, dict[str, Any]]], scene: str) -> tuple[list[PredEvent], dict[str, int]]:
    """The scored events of the JSONL as `PredEvent`s, and a count of the other kinds (planogram, tamper, ...)."""
    preds, ignored = [], defaultdict(int)
    for n, e in events:
        kind = e["kind"]
        if scene == "shelf" and kind in RETAIL_KINDS:
            preds.append(PredEvent(kind, str(e.get("slot")), float(e["timestamp"]), n))
        elif scene == "street" and kind in ("zone_enter", "zone_exit", "loitering"):
            preds.append(PredEvent(kind, f"{e.get('zone')}/{e.get('class')}", float(e["timestamp"]), n))
        elif scene == "street" and kind == "line_cross":
            key = f"{e.get('line')}/{e.get('class')}"
            preds.append(PredEvent(f"line_cross {e.get('direction')}", key, float(e["timestamp"]), n))
        else:
            ignored[kind] += 1
    return preds, dict(sorted(ignored.items()))


def match(
    truths: list[TrueEvent], preds: list[PredEvent], tolerance: float
) -> tuple[list[tuple[TrueEvent, PredEvent]], list[TrueEvent], list[PredEvent]]:
    """One-to-one matches (true, predicted), missed true events and false alarms (rules in the module doc)."""
    by_key: dict[tuple[str, str], list[PredEvent]] = defaultdict(list)
    for p in sorted(preds, key=lambda p: p.time):
        by_key[(p.kind, p.key)].append(p)
    used: set[int] = set()
    pairs, missed = [], []
    # the expected events first, then the optional ones (see the module doc) take what is left
    for t in sorted(truths, key=lambda t: (t.optional, t.latest, t.time)):
        hit = next(
            (p for p in by_key[(t.kind, t.key)] if id(p) not in used and t.time - tolerance <= p.time <= t.latest),
            None,
        )
        if hit is None:
            if not t.optional:
                missed.append(t)
        else:
            used.add(id(hit))
            pairs.append((t, hit))
    return pairs, missed, [p for p in preds if id(p) not in used]


def _row(kind: str, truths: list, preds: list, pairs: list) -> dict[str, Any]:
    tp, delays = len(pairs), [p.time - t.time for t, p in pairs]
    return {
        "kind": kind,
        "true": len(truths),
        "predicted": len(preds),
        "tp": tp,
        "fp": len(preds) - tp,
        "fn": len(truths) - tp,
        "precision": round(tp / len(preds), 4) if preds else None,
        "recall": round(tp / len(truths), 4) if truths else None,
        "median_delay": round(statistics.median(delays), 3) if delays else None,
        "max_delay": round(max(delays), 3) if delays else None,
    }


def score(truths: list[TrueEvent], preds: list[PredEvent], kinds: Sequence[str], tolerance: float) -> dict[str, Any]:
    """Per-kind and overall counts, precision, recall and delays, with the misses and false alarms listed. An
    optional true event (a cool-down may have suppressed it) and the prediction it matched are left out."""
    pairs, missed, false = match(truths, preds, tolerance)
    excused = {id(p) for t, p in pairs if t.optional}
    optional = sum(t.optional for t in truths)
    truths = [t for t in truths if not t.optional]
    preds = [p for p in preds if id(p) not in excused]
    pairs = [(t, p) for t, p in pairs if not t.optional]
    rows = [
        _row(
            k,
            [t for t in truths if t.kind == k],
            [p for p in preds if p.kind == k],
            [m for m in pairs if m[0].kind == k],
        )
        for k in kinds
    ]
    return {
        "rows": rows,
        "all": _row("all", truths, preds, pairs),
        "missed": [{"kind": t.kind, "key": t.key, "time": round(t.time, 3)} for t in missed],
        "false_alarms": [{"kind": p.kind, "key": p.key, "time": round(p.time, 3), "line": p.line} for p in false],
        "optional": {"true": optional, "matched": len(excused)},
    }


def score_events(
    events_path: Path,
    truth_path: Path,
    config: Path | None = None,
    camera: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_delay: float | None = None,
    oos_seconds: float | None = None,
) -> dict[str, Any]:
    """Everything `edgecam score-events` reports, as a JSON-able dict."""
    if not (_finite(tolerance) and tolerance >= 0) or (
        max_delay is not None and not (_finite(max_delay) and max_delay >= 0)
    ):
        raise EdgecamError("--tolerance and --max-delay must be numbers >= 0", fix="e.g. --tolerance 2")
    truth, events = load_truth(truth_path), load_events(events_path)
    scene = truth["scene"]
    preds, ignored = predicted(events, scene)
    try:
        truths, kinds, params = _truths(truth, truth_path, config, camera, tolerance, max_delay, oos_seconds)
        scenario = params.pop("scenario", None)
        report = score(truths, preds, kinds, tolerance)
        if scene == "shelf" and truth.get("occluded"):
            _mark_occluded(report["false_alarms"], truth, params["slots"], tolerance)
        if scene == "street":
            report["counts"] = line_counts(truth, scenario, truth_path, events)
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # a hand-edited file: one line, never a traceback
        fix = "regenerate it with `edgecam data video`"
        raise EdgecamError(f"malformed ground truth ({type(exc).__name__}: {exc})", path=truth_path, fix=fix) from None
    report.update(
        scene=scene,
        events=str(events_path),
        truth=str(truth_path),
        truth_version=truth.get("version", 1),
        params=params,
        ignored=ignored,
    )
    return report


def _truths(
    truth: dict[str, Any],
    truth_path: Path,
    config: Path | None,
    camera: str | None,
    tolerance: float,
    max_delay: float | None,
    oos_seconds: float | None,
) -> tuple[list[TrueEvent], Sequence[str], dict[str, Any]]:
    """The true events of either scene, the kinds scored and the parameters used."""
    scene = truth["scene"]
    params: dict[str, Any] = {"tolerance": tolerance, "max_delay": max_delay}
    if scene == "shelf":
        names = truth.get("slots")
        if config is not None:
            scenario = load_scenario(config, camera, ("empty", "low", "stocked"))
            if not hasattr(scenario, "slots"):
                raise EdgecamError(f"camera {scenario.source_id!r} runs no retail scenario", path=config)
            names = _slot_names(scenario, truth["rois"], config)
            oos_seconds = scenario.oos_seconds if oos_seconds is None else oos_seconds
        elif not isinstance(names, list) or len(names) != len(truth["rois"]):
            raise EdgecamError(
                "the shelf truth names no slots (version 1)", path=truth_path, fix="give --config and --camera"
            )
        params["slots"] = names
        params["oos_seconds"] = oos_seconds = DEFAULT_OOS_SECONDS if oos_seconds is None else oos_seconds
        truths, kinds = retail_truth(truth, names, oos_seconds, tolerance, max_delay), RETAIL_KINDS
    else:
        if config is None:
            raise EdgecamError("scoring a street video needs its zones and lines", fix="give --config (and --camera)")
        scenario = load_scenario(config, camera, truth.get("classes") or ("person", "vehicle"))
        if not hasattr(scenario, "zones"):
            raise EdgecamError(f"camera {scenario.source_id!r} runs no security scenario", path=config)
        truths, kinds = security_truth(truth, scenario, tolerance, max_delay, truth_path), SECURITY_KINDS
        params["cooldowns"] = {
            **{f"zone {z.name}": z.cooldown_seconds for z in scenario.zones},
            **{f"line {line.name}": line.cooldown_seconds for line in scenario.lines},
        }
        params["scenario"] = scenario  # popped by score_events: the line counts need its lines
    return truths, kinds, params


def _mark_occluded(false_alarms: list[dict[str, Any]], truth: dict[str, Any], names: list[str], tol: float) -> None:
    """Flag the false alarms raised while (or up to `tol` seconds after) a shopper covered the slot: what occlusion
    handling should remove."""
    fps, occluded, index = float(truth["fps"]), truth["occluded"], {n: i for i, n in enumerate(names)}
    for fa in false_alarms:
        i = index.get(fa["key"])
        f0, f1 = max(0, math.floor((fa["time"] - tol) * fps)), min(len(occluded), math.floor(fa["time"] * fps) + 1)
        fa["occluded"] = i is not None and any(i in occluded[f] for f in range(f0, f1))


def _slot_names(scenario: Any, rois: list, config: Path) -> list[str]:
    """The config's slot name for each truth roi: the slot whose roi overlaps it most (IoU >= 0.5)."""
    names = []
    for roi in rois:
        best = max(scenario.slots, key=lambda s: _iou(s.roi, roi))
        if _iou(best.roi, roi) < 0.5:
            raise EdgecamError(
                f"no slot of camera {scenario.source_id!r} covers the truth's roi {list(roi)}",
                path=config,
                fix="score the camera whose slots were drawn for this video",
            )
        names.append(best.name)
    return names


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table for people."""

    def cell(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        f"{'event':<16}{'true':>6}{'pred':>6}{'TP':>5}{'FP':>5}{'FN':>5}{'prec':>7}{'recall':>8}"
        f"{'delay p50':>11}{'max':>7}"
    ]
    for r in [*report["rows"], report["all"]]:
        lines.append(
            f"{r['kind']:<16}{r['true']:>6}{r['predicted']:>6}{r['tp']:>5}{r['fp']:>5}{r['fn']:>5}"
            f"{cell(r['precision'], '.2f'):>7}{cell(r['recall'], '.2f'):>8}"
            f"{cell(r['median_delay'], '.2f'):>11}{cell(r['max_delay'], '.2f'):>7}"
        )
    p = report["params"]
    lines.append(
        f"tolerance {p['tolerance']} s, max delay "
        + ("per type" if p["max_delay"] is None else f"{p['max_delay']} s")
        + (f", oos_seconds {p['oos_seconds']}" if "oos_seconds" in p else "")
        + f"; delays in seconds from the true change; {len(report['missed'])} missed, "
        f"{len(report['false_alarms'])} false alarms (--json lists them)"
    )
    opt = report.get("optional") or {}
    if opt.get("true"):
        lines.append(
            f"{opt['true']} true events fell at the end of a cool-down (either way is right): "
            f"{opt['matched']} came, not scored"
        )
    if "counts" in report:
        c = report["counts"]
        per = "; ".join(
            f"{name} " + ", ".join(f"{d} {v['counted']}/{v['true']}" for d, v in dirs.items())
            for name, dirs in c["lines"].items()
        )
        err = "-" if c["count_error"] is None else f"{100 * c['count_error']:.1f} %"
        lines.append(f"line counts (counted/true): {per or 'no lines'}; count error {err}")
    hidden = sum(bool(f.get("occluded")) for f in report["false_alarms"])
    if hidden:
        lines.append(f"{hidden} of the false alarms came while a shopper covered the slot (or just after)")
    if report["ignored"]:
        lines.append("not scored: " + ", ".join(f"{k} x{v}" for k, v in report["ignored"].items()))
    return "\n".join(lines)
