"""Replay a synthetic shelf video through the retail scenario with slot readings made from its ground truth.

The readings are right (score 0.95) while a slot is in view, and wrong while the video's shopper covers it: a
random other label at a random score between 0.4 and 0.99, the way the demo classifier reads a slot it cannot see
("stocked 0.47", "low 0.99"). A few in-view frames read a wrong label at an uncertain score. Counting the events
that contradict the truth shows what the occlusion handling is worth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scenarios.geometry import covered_fraction
from edgecam.runtime.types import Classification, Detections, Frame

STATES = ("stocked", "low", "empty")
HIDDEN = 0.1  # a shopper covering this share of a slot makes its reading garbage
WRONG = {"restocked": ("empty",), "low_stock": ("stocked", "empty"), "out_of_stock": ("stocked", "low")}


@dataclass
class Replay:
    events: list[tuple[int, str, str]] = field(default_factory=list)  # (frame, kind, slot)
    false_events: list[tuple[int, str, str, str]] = field(default_factory=list)  # ... and the true state
    occluded_frames: int = 0  # slot-frames the scenario held
    hidden_frames: int = 0  # slot-frames the shopper covered
    agree: float = 0.0  # share of slot-frames (once a state is known) whose state equals the truth

    def counts(self) -> dict[str, int]:
        return dict(Counter(kind for _, kind, _, _ in self.false_events))


def readings(truth: list[str], hidden: list[bool], rng: np.random.Generator) -> list[Classification]:
    """One frame's slot results: right when in view (now and then uncertain), garbage when hidden."""
    out = []
    for label, covered in zip(truth, hidden, strict=True):
        if covered:
            label, score = str(rng.choice([s for s in STATES if s != label])), float(rng.uniform(0.4, 0.99))
        elif rng.random() < 0.03:
            label, score = str(rng.choice([s for s in STATES if s != label])), 0.5
        else:
            score = 0.95
        rest = (1.0 - score) / 2
        out.append(Classification(np.array([score if s == label else rest for s in STATES]), STATES))
    return out


def replay(video: Any, config: dict[str, Any], boxes: bool = False, seed: int = 0) -> Replay:
    """Run the scenario over `video` (a `ShelfVideo`); `boxes` feeds the shopper boxes as person detections."""
    names = ("person",) if boxes else STATES
    slots = [{"name": f"s{i}", "roi": list(roi)} for i, roi in enumerate(video.rois)]
    sc = create_scenario("retail", {"slots": slots, "cooldown_seconds": 0, **config}, names, "shelf")
    rng, cap, out = np.random.default_rng(seed), cv2.VideoCapture(str(video.path)), Replay()
    known = agreeing = 0
    try:
        for f in range(video.n_frames):
            ok, image = cap.read()
            assert ok, f"frame {f} of {video.path} did not decode"
            truth, shoppers = video.labels[f], video.shoppers[f]
            hidden = [any(covered_fraction(_xyxy(r), b) >= HIDDEN for b in shoppers) for r in video.rois]
            dets = None
            if boxes:
                xyxy = np.array(shoppers, np.float32).reshape(-1, 4)
                dets = Detections(xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy), np.int64))
            frame = Frame(image, timestamp=f / video.fps, index=f)
            for e in sc.update(frame, dets, [], readings(truth, hidden, rng)):
                assert not e.data["occluded"], e  # no event ever comes from a frame where its slot was hidden
                slot = int(e.data["slot"][1:])
                out.events.append((f, e.kind, e.data["slot"]))
                if truth[slot] in WRONG[e.kind]:
                    out.false_events.append((f, e.kind, e.data["slot"], truth[slot]))
            state = sc.state()["slots"]
            out.hidden_frames += sum(hidden)
            for i, t in enumerate(truth):
                slot = state[f"s{i}"]
                out.occluded_frames += slot["occluded"]
                if slot["state"] is not None:
                    known += 1
                    agreeing += slot["state"] == t
    finally:
        cap.release()
    out.agree = agreeing / max(1, known)
    return out


def _xyxy(roi: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    x, y, w, h = roi
    return (float(x), float(y), float(x + w), float(y + h))
