"""Tracker scenarios built by hand: every expected id comes from the motion drawn here, not from running the code.

Defaults unless a case says otherwise: high 0.5, low 0.1, new 0.6, match IoU 0.3, low match IoU 0.5, min_hits 3,
max_lost 1 s, class-aware. Ids start at 1 on a fresh tracker.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.tracker import ByteTracker
from edgecam.runtime.types import Detections


def box(x1: float, y1: float, w: float = 40, h: float = 80, score: float = 0.9, cls: int = 0) -> tuple:
    return (x1, y1, x1 + w, y1 + h, score, cls)


def dets(*boxes: tuple) -> Detections:
    if not boxes:
        return Detections.empty()
    a = np.array(boxes, dtype=np.float64)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def ids_of(out: Detections) -> list[int]:
    return out.track_ids.tolist()


# --- one object ------------------------------------------------------------------------------------------------


def test_steady_box_keeps_one_id_for_100_frames():
    tracker = ByteTracker()
    outs = [tracker.update(dets(box(10 + 6 * k, 100)), k / 30) for k in range(100)]
    assert [ids_of(o) for o in outs[:2]] == [[-1], [-1]]  # tentative until the third consecutive match
    assert {tuple(ids_of(o)) for o in outs[2:]} == {(1,)}


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # t = tentative (-1), c = confirmed id, n = nothing returned; 0.0 means no detection that frame
        ([0.9, 0.9, 0.9], "ttc"),
        ([0.9, 0.9, 0.0, 0.9, 0.9, 0.0, 0.9, 0.9], "ttnttntt"),  # flicker: never three in a row
        ([0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0], "ttnttcn"),  # a restart confirms after 3 more
        ([0.9, 0.3, 0.9, 0.9], "tntt"),  # a low box neither keeps nor confirms a tentative track
        ([0.9, 0.9, 0.9, 0.3, 0.0, 0.3], "ttccnc"),  # low boxes keep a confirmed (and a lost) track
        ([0.3, 0.3, 0.55, 0.55, 0.05], "nnnnn"),  # below new_track_thresh nothing starts
    ],
)
def test_confirmation_and_flicker(scores, expected):
    tracker = ByteTracker()
    got = ""
    confirmed_ids = set()
    for k, s in enumerate(scores):
        out = tracker.update(dets(box(100, 100, score=s)) if s else Detections.empty(), k * 0.1)
        got += "n" if len(out) == 0 else ("t" if ids_of(out) == [-1] else "c")
        confirmed_ids.update(i for i in ids_of(out) if i >= 0)
    assert got == expected
    assert len(confirmed_ids) <= 1


@pytest.mark.parametrize(("score", "starts"), [(0.05, False), (0.3, False), (0.55, False), (0.6, True), (0.9, True)])
def test_only_confident_boxes_start_tracks(score, starts):
    tracker = ByteTracker()
    out = tracker.update(dets(box(0, 0, score=score)), 0.0)
    assert len(tracker.tracks) == len(out) == int(starts)


def test_survives_a_two_frame_gap_with_motion():
    # 10 FPS, 150 px/s: after two missed frames the box is 45 px from where it was last seen, more than its 40 px
    # width, so only the motion model can bridge the gap.
    tracker = ByteTracker()
    seen = [k for k in range(21) if k not in (10, 11)]
    ids = []
    for k in range(21):
        out = tracker.update(dets(box(15 * k, 100)) if k in seen else Detections.empty(), k / 10)
        if k in (10, 11):
            assert len(out) == 0 and [t.state for t in tracker.tracks] == ["lost"] and tracker.confirmed() == []
        elif k >= 2:
            ids.append(ids_of(out))
    assert ids == [[1]] * len(ids)


@pytest.mark.parametrize(
    ("settings", "missed_at", "alive"),
    [
        ({}, [0.5, 1.0, 1.35, 1.45], [True, True, True, False]),  # last seen at 0.4: dies once > 1 s unseen
        ({"max_lost": 0.25}, [0.5, 0.6, 0.7], [True, True, False]),
        ({"max_lost_frames": 2}, [0.5, 0.6, 0.7], [True, True, False]),  # frame count replaces seconds
        ({"max_lost_frames": 2}, [5.0, 10.0, 15.0], [True, True, False]),
    ],
)
def test_lost_track_dies_after_max_lost(settings, missed_at, alive):
    tracker = ByteTracker(**settings)
    for k in range(5):
        tracker.update(dets(box(100, 100)), k / 10)
    for t, expect in zip(missed_at, alive, strict=True):
        tracker.update(Detections.empty(), t)
        assert [tr.track_id for tr in tracker.tracks] == ([1] if expect else [])
    # the same object coming back after its track died is a new identity, confirmed after min_hits frames again
    back = [tracker.update(dets(box(100, 100)), missed_at[-1] + 0.1 * (k + 1)) for k in range(3)]
    assert [ids_of(o) for o in back] == [[-1], [-1], [2]]


def test_irregular_timestamps_keep_one_id():
    # 200 px/s with gaps of 0.02..0.2 s, dropped frames (never three in a row), after 5 regular frames to learn speed.
    # A 0.2 s step moves the 50 px box 40 px: IoU with the unmoved box is 10/90, below the gate, so this needs the
    # time-based motion model.
    rng = np.random.default_rng(0)
    t, times, drops = 0.0, [], []
    for k in range(120):
        t += 0.05 if k < 5 else float(rng.uniform(0.02, 0.2))
        times.append(t)
        drops.append(k >= 5 and rng.random() < 0.25 and not (drops[-1] and drops[-2]))
    tracker = ByteTracker()
    ids = set()
    for k, (t, drop) in enumerate(zip(times, drops, strict=True)):
        out = tracker.update(Detections.empty() if drop else dets(box(200 * t, 50, w=50, h=100)), t)
        if k >= 2 and not drop:
            ids.update(ids_of(out))
    assert ids == {1}


def test_timestamps_must_not_go_back():
    tracker = ByteTracker()
    tracker.update(dets(box(0, 0)), 1.0)
    tracker.update(dets(box(0, 0)), 1.0)  # equal is fine (two detectors on one frame)
    with pytest.raises(EdgecamError, match="reset"):
        tracker.update(dets(box(0, 0)), 0.5)
    tracker.reset()
    assert len(tracker.update(dets(box(0, 0)), 0.5)) == 1


# --- several objects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b_start", "b_y", "b_speed"),
    [
        (400, 110, -8),  # A and B (same class) cross head-on, overlapping for ~8 frames around frame 20
        (400, 10, -8),  # they pass 90 px apart vertically: they never overlap
        (0, 200, 5),  # parallel, same direction, different speeds, never overlapping
    ],
)
def test_two_objects_keep_their_ids(b_start, b_y, b_speed):
    tracker = ByteTracker()
    seq = []
    for k in range(60):
        out = tracker.update(dets(box(12 * k, 100), box(b_start + b_speed * k, b_y)), k / 30)
        assert len(out) == 2  # both boxes always matched or started; A is first in the input so first in the output
        seq.append(tuple(ids_of(out)))
    assert seq[:2] == [(-1, -1)] * 2
    assert set(seq[2:]) == {(1, 2)}


@pytest.mark.parametrize(("class_aware", "expected_ids", "n_tracks"), [(True, [-1], 2), (False, [1], 1)])
def test_class_aware_matching(class_aware, expected_ids, n_tracks):
    tracker = ByteTracker(class_aware=class_aware)
    for k in range(3):
        tracker.update(dets(box(100, 100, cls=0)), k / 10)
    out = tracker.update(dets(box(100, 100, cls=1)), 0.3)  # same place, other class
    assert ids_of(out) == expected_ids
    assert len(tracker.tracks) == n_tracks
    assert tracker.tracks[-1].class_id == 1


def test_overlapping_objects_of_different_classes_keep_their_own_ids():
    tracker = ByteTracker()
    outs = [tracker.update(dets(box(5 * k, 100, cls=0), box(5 * k, 100, cls=1)), k / 10) for k in range(20)]
    assert {tuple(ids_of(o)) for o in outs[2:]} == {(1, 2)}
    assert sorted(t.class_id for t in tracker.tracks) == [0, 1]


def test_output_keeps_input_order_and_drops_unused_boxes():
    tracker = ByteTracker()
    for k in range(3):
        tracker.update(dets(box(0, 0)), k / 10)  # confirmed track 1 at (0, 0)
    frame = dets(
        box(300, 0, score=0.05),  # below low_thresh: dropped
        box(0, 0, score=0.3),  # low, matches track 1: kept with its id
        box(500, 0, score=0.3),  # low, no track: dropped
        box(700, 0, score=0.55),  # high but below new_track_thresh: dropped
        box(900, 0, score=0.7),  # starts a tentative track
    )
    out = tracker.update(frame, 0.3)
    assert out.xyxy[:, 0].tolist() == [0, 900]
    assert out.scores.tolist() == pytest.approx([0.3, 0.7])
    assert ids_of(out) == [1, -1]


def test_ids_are_unique_increasing_and_survive_reset():
    tracker = ByteTracker(max_lost=0.2)
    confirmed = []
    t = 0.0
    for obj in range(8):  # each object at its own place for 3 frames, then 0.5 s of nothing (its track dies)
        for _ in range(3):
            out = tracker.update(dets(box(100 * obj, 0)), t)
            t += 0.1
        confirmed += ids_of(out)
        tracker.update(Detections.empty(), t + 0.4)
        t += 0.5
        assert tracker.tracks == []
    assert confirmed == list(range(1, 9))
    tracker.reset()
    outs = [tracker.update(dets(box(0, 0)), k / 10) for k in range(3)]
    assert ids_of(outs[-1]) == [9]


def test_empty_detections():
    tracker = ByteTracker()
    out = tracker.update(Detections.empty(), 0.0)
    assert len(out) == 0 and out.track_ids.shape == (0,) and tracker.tracks == []
    for k in range(3):
        tracker.update(dets(box(0, 0)), 0.1 * (k + 1))
    out = tracker.update(Detections.empty(), 0.4)
    assert len(out) == 0 and [t.state for t in tracker.tracks] == ["lost"]


# --- bounded memory --------------------------------------------------------------------------------------------


def test_memory_stays_bounded_under_random_detections():
    # Every live track was matched to a distinct detection within the last max_lost seconds (tentative tracks die at
    # their first miss), so at 30 FPS with <= 20 boxes a frame there are at most 20 * 31 of them (+1 frame of slack).
    rng = np.random.default_rng(1)
    tracker = ByteTracker(history=16)
    bound = 20 * 32
    for k in range(1000):
        n = int(rng.integers(0, 21))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(20, 60, (n, 2))
        frame = Detections(np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, n), rng.integers(0, 3, n))
        tracker.update(frame, k / 30)
        assert len(tracker.tracks) <= bound
        assert all(len(t.history) <= 16 for t in tracker.tracks)
    ids = [t.track_id for t in tracker.tracks]
    assert len(ids) == len(set(ids))


def test_history_is_bounded_bottom_centre():
    tracker = ByteTracker(history=64)
    for k in range(200):
        tracker.update(dets(box(k, 10)), k / 30)
    (track,) = tracker.tracks
    assert len(track.history) == 64 and track.hits == 200
    assert track.history[-1] == pytest.approx((199 / 30, 199 + 20, 90))  # (t, centre x, bottom y)
    assert track.first_seen == 0.0 and track.last_seen == pytest.approx(199 / 30)


@pytest.mark.parametrize(
    "settings",
    [
        {"low_thresh": 0.6},  # above high_thresh
        {"high_thresh": 1.5},
        {"match_iou": 0.0},
        {"low_match_iou": 1.2},
        {"min_hits": 0},
        {"max_lost": -1.0},
        {"max_lost_frames": -1},
        {"history": 0},
    ],
)
def test_invalid_settings_raise(settings):
    with pytest.raises(EdgecamError, match="tracker"):
        ByteTracker(**settings)


@pytest.mark.parametrize(("gate", "confirmed"), [(None, True), (0.0, False)])
def test_a_fast_small_walker_is_confirmed_by_the_motion_stage(gate, confirmed):
    """40 px wide, 50 px a frame: a new track (no velocity yet) never overlaps its next box; the motion-gated stage
    (the filter's wide uncertainty about a young track) matches it anyway. Without it, no id is ever given."""
    tracker = ByteTracker() if gate is None else ByteTracker(motion_gate=gate)
    ids = [ids_of(tracker.update(dets(box(50 * k, 100)), k / 10)) for k in range(12)]
    assert (ids[2:] == [[1]] * 10) == confirmed, ids
    assert any(i != [-1] for i in ids) == confirmed


@pytest.mark.parametrize(("gate", "same_id"), [(None, True), (0.0, False)])
def test_a_person_who_stops_dead_keeps_their_id(gate, same_id):
    """Walking 12 px a frame, then standing still with the legs together (a narrower box): the velocity says the box
    is gone on, but it is where it was last seen."""
    tracker = ByteTracker() if gate is None else ByteTracker(motion_gate=gate)
    out = []
    for k in range(30):
        b = box(12 * k, 100, w=40) if k < 15 else box(12 * 14 + 10, 100, w=20)
        out.append(ids_of(tracker.update(dets(b), k / 10)))
    assert (out[2:] == [[1]] * 28) == same_id, out


@pytest.mark.parametrize("hidden", [5, 8])
def test_a_walker_survives_an_occlusion_of_n_frames(hidden):
    """Walking 15 px a frame at 10 FPS, unseen for `hidden` frames (behind a truck: scored low just before and after)
    and found again 75-120 px from where it was last seen: the same id."""
    tracker = ByteTracker()
    ids = []
    for k in range(40):
        gone = 15 <= k < 15 + hidden
        edge = k in (14, 15 + hidden)
        out = tracker.update(Detections.empty() if gone else dets(box(15 * k, 100, score=0.3 if edge else 0.9)), k / 10)
        if k >= 2 and not gone:
            ids.append(ids_of(out))
    assert ids == [[1]] * len(ids)


def test_group_walking_side_by_side_keeps_two_ids_past_a_person_walking_the_other_way():
    """Two people 20 px apart (boxes overlapping by half) walking right, a third walking left through them."""
    tracker = ByteTracker()
    seen: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for k in range(60):
        boxes = [box(8 * k, 100), box(8 * k + 20, 104), box(480 - 8 * k, 102)]
        out = tracker.update(dets(*boxes), k / 10)
        if k >= 2:
            for i, tid in enumerate(ids_of(out)):
                seen[i].add(tid)
    assert [len(s) for s in seen.values()] == [1, 1, 1] and len(set().union(*seen.values())) == 3, seen


def test_motion_gate_must_not_be_negative():
    with pytest.raises(EdgecamError, match="motion_gate"):
        ByteTracker(motion_gate=-1.0)


def test_a_lost_box_keeps_its_size_through_a_long_occlusion():
    """A walker's box narrows 4 px a frame (the stride closing) just before a truck hides it for 1.2 s: the
    prediction must not carry that shrinking on (to nothing) but keep the last size, so the walker found again
    135 px on keeps the id."""
    tracker = ByteTracker(max_lost=2.0)
    ids = []
    for k in range(40):
        hidden = 15 <= k < 27
        w = 60 - 4 * max(0, k - 5) if k < 15 else 44
        out = tracker.update(Detections.empty() if hidden else dets(box(10 + 7.5 * k, 100, w=w)), k / 10)
        if k >= 2 and not hidden:
            ids.append(ids_of(out))
        if k == 26:  # the prediction at the end of the occlusion: as wide and tall as the box last seen
            (lost,) = tracker.tracks
            width, height = lost.xyxy[2] - lost.xyxy[0], lost.xyxy[3] - lost.xyxy[1]
            assert lost.state == "lost" and width > 0.7 * 24 and height > 0.9 * 80, lost.xyxy
    assert ids == [[1]] * len(ids), ids
