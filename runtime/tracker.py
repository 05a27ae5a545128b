"""Multi-object tracking: ByteTrack-style two-stage IoU association over a constant-velocity Kalman filter.

Why two stages: a half-occluded person scores low; matching low-score boxes only against tracks that already exist
keeps that person's id alive without letting background noise start identities of its own.
Why a third, motion-gated stage: a new track has no velocity yet, so a small person walking faster than about a box
width per frame (low frame rates) never overlaps its own last box, and a track lost behind a vehicle comes back
beside its prediction, not on it. What IoU left unmatched is matched by the Kalman filter's own uncertainty
(Mahalanobis distance, as in SORT's successors), which is wide for young or lost tracks and tight for steady ones,
or by the box last seen (as OC-SORT does: a person who stops dead is not where the velocity says).
Why seconds: time comes from the frames' timestamps (velocities are px/s, `max_lost` is seconds), so the same
settings hold at 5 or 30 FPS and across dropped or irregular frames.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from edgecam.runtime.decode import box_iou
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Detections

_FORBIDDEN = 1e6  # cost of a pair the gate rejects: finite, so the solver never sees an infeasible matrix
# Kalman noise as fractions of box size (w for x and w, h for y and h), so near and far objects behave alike.
_MEAS_STD = 0.05  # a detector's box jitters by ~5% of its size
_POS_NOISE = 0.3  # per sqrt(second): drift of the position beyond constant velocity
_VEL_NOISE = 1.0  # per sqrt(second): how quickly velocity changes (a person turns, stops, starts)
_INIT_VEL_STD = 4.0  # a new track's velocity is unknown: a few box sizes per second either way
CHI2_95_4DOF = 9.4877  # the 95 % quantile of chi-square with 4 degrees of freedom: (cx, cy, w, h) residuals


def _to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[:, 2:4], 0.0) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def _size(mean: np.ndarray) -> np.ndarray:
    """(k, 4) scale per measured component: (w, h, w, h), floored at 1 px so noise never vanishes."""
    wh = np.maximum(mean[:, 2:4], 1.0)
    return np.concatenate([wh, wh], axis=1)


def _kf_predict(mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Batched constant-velocity step of dt seconds; state (cx, cy, w, h, vcx, vcy, vw, vh)."""
    f = np.eye(8)
    f[:4, 4:] = dt * np.eye(4)
    size = _size(mean)
    q = np.concatenate([(_POS_NOISE * size) ** 2, (_VEL_NOISE * size) ** 2], axis=1) * dt
    return mean @ f.T, f @ cov @ f.T + q[:, :, None] * np.eye(8)


def _kf_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched correction with measured (cx, cy, w, h) boxes z (k, 4)."""
    s = cov[:, :4, :4] + ((_MEAS_STD * _size(mean)) ** 2)[:, :, None] * np.eye(4)
    gain_t = np.linalg.solve(s, cov[:, :4, :])  # (k, 4, 8): the transposed Kalman gain, as S and P are symmetric
    mean = mean + np.einsum("kij,ki->kj", gain_t, z - mean[:, :4])
    cov = cov - np.einsum("kij,kil->kjl", gain_t, cov[:, :4, :])
    return mean, (cov + cov.transpose(0, 2, 1)) / 2


@dataclass(eq=False)
class Track:
    """One object over time.

    `xyxy` is the last matched detection box, or the motion model's prediction while the track is lost.
    `history` holds observed (timestamp, cx, y2) points: the bottom-centre, where the object stands on the floor, which
    is what line-crossing and dwell zones drawn on the ground are tested against. Predictions are never added.
    """

    track_id: int
    class_id: int
    xyxy: np.ndarray
    score: float
    state: str  # "tentative" | "confirmed" | "lost"
    hits: int
    misses: int
    first_seen: float
    last_seen: float
    history: deque
    mean: np.ndarray = field(repr=False)
    cov: np.ndarray = field(repr=False)
    observed: np.ndarray | None = field(default=None, repr=False)  # the last matched detection box

    @property
    def confirmed(self) -> bool:
        """Confirmed and matched in the latest update (a lost track is not visible)."""
        return self.state == "confirmed"


class ByteTracker:
    """Associates detections across frames and gives confirmed objects stable, never-reused ids.

    Stage 1 matches every live track (tentative, confirmed, lost) to detections with score >= high_thresh, gated
    by `match_iou`. Stage 2 matches the confirmed and lost tracks still unmatched to detections with
    low_thresh <= score < high_thresh, gated by the stricter `low_match_iou`; low-score boxes never start or confirm
    tracks. Stage 3 matches the tracks still unmatched to the high-score detections still unmatched by the squared
    Mahalanobis distance of the box to the track's predicted box, gated at `motion_gate` (0 turns it off), or, after
    those, by IoU >= `match_iou` with the track's last detected box (an object that stopped short).
    Unmatched detections with score >= new_track_thresh (and >= high_thresh) start tentative tracks, which
    are confirmed after `min_hits` consecutive matches and dropped at their first miss, so a flicker never gets an id.
    A confirmed track that misses becomes lost and is removed once unmatched for more than `max_lost` seconds (or more
    than `max_lost_frames` updates, when that is set instead). With `class_aware` a box only matches a track of its
    class; without it a track takes the class of its latest box.
    """

    def __init__(
        self,
        high_thresh: float = 0.5,
        low_thresh: float = 0.1,
        new_track_thresh: float = 0.6,
        match_iou: float = 0.3,
        low_match_iou: float = 0.5,
        min_hits: int = 3,
        max_lost: float = 1.0,
        class_aware: bool = True,
        history: int = 64,
        max_lost_frames: int | None = None,
        motion_gate: float = CHI2_95_4DOF,
    ) -> None:
        checks = {
            "0 <= low_thresh <= high_thresh <= 1": 0 <= low_thresh <= high_thresh <= 1,
            "0 <= new_track_thresh <= 1": 0 <= new_track_thresh <= 1,
            "0 < match_iou <= 1 and 0 < low_match_iou <= 1": 0 < match_iou <= 1 and 0 < low_match_iou <= 1,
            "min_hits >= 1 and history >= 1": min_hits >= 1 and history >= 1,
            "max_lost >= 0 and max_lost_frames >= 0 (or None)": max_lost >= 0
            and (max_lost_frames is None or max_lost_frames >= 0),
            "motion_gate >= 0": motion_gate >= 0,
        }
        for rule, ok in checks.items():
            if not ok:
                raise EdgecamError(
                    f"invalid tracker settings: need {rule}", fix="fix the tracker section of the config"
                )
        self.high_thresh, self.low_thresh, self.new_track_thresh = high_thresh, low_thresh, new_track_thresh
        self.match_iou, self.low_match_iou, self.min_hits = match_iou, low_match_iou, min_hits
        self.max_lost, self.max_lost_frames = max_lost, max_lost_frames
        self.class_aware, self.history, self.motion_gate = class_aware, history, motion_gate
        self._tracks: list[Track] = []
        self._next_id = 1  # survives reset(): a sink never sees an id it already saw for another object
        self._last_time: float | None = None

    @property
    def tracks(self) -> list[Track]:
        """All live tracks: tentative, confirmed and lost."""
        return list(self._tracks)

    def confirmed(self) -> list[Track]:
        """Confirmed tracks matched in the latest update."""
        return [t for t in self._tracks if t.confirmed]

    def reset(self) -> None:
        """Forget all tracks and the clock (call when the source restarts); ids keep increasing."""
        self._tracks = []
        self._last_time = None

    def update(self, detections: Detections, timestamp: float) -> Detections:
        """Advance to `timestamp` (seconds) with this frame's detections.

        Returns the input boxes that matched or started a track, in input order, with track_ids set to the id of a
        confirmed track and -1 for tentative ones. Boxes that were dropped (too low, unmatched) are left out.
        """
        timestamp = float(timestamp)
        if not math.isfinite(timestamp) or (self._last_time is not None and timestamp < self._last_time):
            raise EdgecamError(
                f"tracker timestamp {timestamp} is not finite or goes back before {self._last_time}",
                fix="pass increasing frame timestamps in seconds, or call reset() when the source restarts",
            )
        if self._last_time is not None and timestamp > self._last_time and self._tracks:
            self._predict(timestamp - self._last_time)
        self._last_time = timestamp

        scores = detections.scores
        high = np.flatnonzero(scores >= self.high_thresh)
        low = np.flatnonzero((scores >= self.low_thresh) & (scores < self.high_thresh))
        matched = self._associate(self._tracks, detections, high, self.match_iou)
        done = {t.track_id for t, _ in matched}
        rest = [t for t in self._tracks if t.track_id not in done and t.state != "tentative"]
        matched += self._associate(rest, detections, low, self.low_match_iou)
        if self.motion_gate > 0:
            done, taken = {t.track_id for t, _ in matched}, {i for _, i in matched}
            rest = [t for t in self._tracks if t.track_id not in done]
            matched += self._associate_motion(rest, detections, np.array([i for i in high if int(i) not in taken]))
        self._correct(matched, detections, timestamp)

        done = {t.track_id for t, _ in matched}
        live = []
        for t in self._tracks:
            if t.track_id not in done:
                t.misses += 1
                if t.state == "tentative" or self._expired(t, timestamp):
                    continue
                t.mean[6:8] = 0.0  # unseen, a box keeps its size: a walker's stride makes its width swing, and
                # extrapolating that swing through an occlusion shrinks the prediction to nothing
                t.state, t.xyxy = "lost", _to_xyxy(t.mean[None, :4])[0].astype(np.float32)
            live.append(t)
        taken = {i for _, i in matched}
        for i in high:
            if int(i) not in taken and scores[i] >= self.new_track_thresh:
                track = self._start(detections, int(i), timestamp)
                live.append(track)
                matched.append((track, int(i)))
        self._tracks = live

        ids = {i: (t.track_id if t.confirmed else -1) for t, i in matched}
        keep = np.array(sorted(ids), dtype=np.int64)
        kept = detections[keep]
        return Detections(kept.xyxy, kept.scores, kept.class_ids, np.array([ids[i] for i in keep.tolist()], np.int64))

    def _predict(self, dt: float) -> None:
        mean, cov = _kf_predict(np.stack([t.mean for t in self._tracks]), np.stack([t.cov for t in self._tracks]), dt)
        for t, m, c in zip(self._tracks, mean, cov, strict=True):
            t.mean, t.cov = m, c

    def _associate(
        self, tracks: list[Track], detections: Detections, candidates: np.ndarray, min_iou: float
    ) -> list[tuple[Track, int]]:
        """Optimal one-to-one matching of tracks (at their predicted boxes) to detections[candidates] by IoU."""
        if not tracks or candidates.size == 0:
            return []
        iou = box_iou(_to_xyxy(np.stack([t.mean[:4] for t in tracks])), detections.xyxy[candidates])
        allowed = iou >= min_iou
        if self.class_aware:
            classes = np.array([t.class_id for t in tracks])
            allowed &= classes[:, None] == detections.class_ids[candidates][None, :]
        rows, cols = linear_sum_assignment(np.where(allowed, 1.0 - iou, _FORBIDDEN))
        return [(tracks[r], int(candidates[c])) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]

    def _associate_motion(
        self, tracks: list[Track], detections: Detections, candidates: np.ndarray
    ) -> list[tuple[Track, int]]:
        """Optimal one-to-one matching by squared Mahalanobis distance of each box to each track's predicted box
        (the filter's covariance plus the measurement noise), gated at `motion_gate`."""
        if not tracks or candidates.size == 0:
            return []
        mean, cov = np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks])
        s = cov[:, :4, :4] + ((_MEAS_STD * _size(mean)) ** 2)[:, :, None] * np.eye(4)  # (k, 4, 4)
        resid = _to_cxcywh(detections.xyxy[candidates])[None, :, :] - mean[:, None, :4]  # (k, m, 4)
        d2 = np.einsum("kmi,kmi->km", resid, np.linalg.solve(s[:, None], resid[..., None])[..., 0])
        # an object that stopped or turned short is still where it was last seen: IoU with that box, ranked after
        last = np.stack([t.observed if t.observed is not None else t.xyxy for t in tracks])
        iou_last = box_iou(last, detections.xyxy[candidates])
        cost = np.where(d2 <= self.motion_gate, d2, self.motion_gate + 1.0 - iou_last)
        allowed = (d2 <= self.motion_gate) | (iou_last >= self.match_iou)
        if self.class_aware:
            classes = np.array([t.class_id for t in tracks])
            allowed &= classes[:, None] == detections.class_ids[candidates][None, :]
        rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
        return [(tracks[r], int(candidates[c])) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]

    def _correct(self, matched: list[tuple[Track, int]], detections: Detections, timestamp: float) -> None:
        if not matched:
            return
        index = np.array([i for _, i in matched])
        means = np.stack([t.mean for t, _ in matched])
        mean, cov = _kf_update(means, np.stack([t.cov for t, _ in matched]), _to_cxcywh(detections.xyxy[index]))
        for k, (t, i) in enumerate(matched):
            t.mean, t.cov = mean[k], cov[k]
            self._observe(t, detections, i, timestamp)
            t.hits += 1
            if t.state != "tentative" or t.hits >= self.min_hits:
                t.state = "confirmed"

    def _observe(self, track: Track, detections: Detections, i: int, timestamp: float) -> None:
        x1, _, x2, y2 = (float(v) for v in detections.xyxy[i])
        track.xyxy = detections.xyxy[i].copy()
        track.observed = track.xyxy
        track.score, track.class_id = float(detections.scores[i]), int(detections.class_ids[i])
        track.misses, track.last_seen = 0, timestamp
        track.history.append((timestamp, (x1 + x2) / 2, y2))

    def _start(self, detections: Detections, i: int, timestamp: float) -> Track:
        mean = np.concatenate([_to_cxcywh(detections.xyxy[i])[0], np.zeros(4)])
        size = _size(mean[None])[0]
        cov = np.diag(np.concatenate([(2 * _MEAS_STD * size) ** 2, (_INIT_VEL_STD * size) ** 2]))
        state = "confirmed" if self.min_hits <= 1 else "tentative"
        history: deque = deque(maxlen=self.history)
        track = Track(self._next_id, 0, detections.xyxy[i], 0.0, state, 1, 0, timestamp, timestamp, history, mean, cov)
        self._next_id += 1
        self._observe(track, detections, i, timestamp)
        return track

    def _expired(self, track: Track, timestamp: float) -> bool:
        if self.max_lost_frames is not None:
            return track.misses > self.max_lost_frames
        return timestamp - track.last_seen > self.max_lost
