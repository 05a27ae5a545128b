"""Retail shelf rules: stock state per slot, shopper occlusion, facings and planogram, on a clock the test drives."""

from __future__ import annotations

import json

import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios import RetailScenario, create_scenario
from edgecam.runtime.types import Event
from tests.runtime.scenarios import classification, detections, frame, track

NAMES = ("person", "gap", "sku_1", "sku_2", "sku_3")
PERSON, GAP = 0, 1
SKU = {"sku_1": 2, "sku_2": 3, "sku_3": 4}
SLOT_NAMES = ("stocked", "low", "empty", "occluded")
A = {"name": "A", "roi": [0, 0, 100, 50], "expected_sku": "sku_1"}
B = {"name": "B", "roi": [100, 0, 100, 50], "expected_sku": "sku_2"}
C = {"name": "C", "roi": [200, 0, 100, 50], "expected_sku": "sku_3"}
PLAIN = {"name": "A", "roi": A["roi"]}  # no planogram: per-slot tests see only stock events
SHOPPER = [0, 0, 300, 400]  # stands in front of the whole shelf


def make(**config) -> RetailScenario:
    config.setdefault("cooldown_seconds", 0)
    config.setdefault("slots", [PLAIN])
    sc = create_scenario("retail", config, NAMES, "shelf")
    assert isinstance(sc, RetailScenario)
    return sc


def products(slot: int, sku: str, n: int) -> list[tuple[int, list[float]]]:
    """n facings of `sku` side by side in slot number `slot` (slots are 100 px wide)."""
    return [(SKU[sku], [100 * slot + 5 + 25 * k, 5, 100 * slot + 25 + 25 * k, 45]) for k in range(n)]


def feed(sc: RetailScenario, t0: int, t1: int, dets=None, tracks=(), results=None) -> list[Event]:
    """The same observation every second for t in [t0, t1)."""
    events = []
    for t in range(t0, t1):
        events += sc.update(frame(t), detections(dets) if dets is not None else None, list(tracks), results)
    return events


def slot_results(*labels: str) -> list:
    return [classification(label, SLOT_NAMES) for label in labels]


def stocked(mode: str) -> dict:
    return {"dets": products(0, "sku_1", 3)} if mode == "detections" else {"results": slot_results("stocked")}


def empty(mode: str) -> dict:
    return {"dets": []} if mode == "detections" else {"results": slot_results("empty")}


@pytest.mark.parametrize("mode", ["detections", "classifier"])
def test_out_of_stock_only_after_oos_seconds(mode):
    sc = make()
    assert feed(sc, 0, 3, **stocked(mode)) == []
    events = feed(sc, 3, 40, **empty(mode))
    (oos,) = events  # once, not every frame
    first_empty = 3
    assert oos.kind == "out_of_stock"
    assert oos.timestamp == first_empty + (sc.min_frames - 1) + sc.oos_seconds  # frames are 1 s apart
    assert oos.data["slot"] == "A" and oos.data["snapshot"] and oos.data["state"] == "empty"
    assert sc.state()["slots"]["A"]["empty_for_seconds"] == 39 - (first_empty + sc.min_frames - 1)


def test_a_short_gap_raises_nothing():
    sc = make()
    feed(sc, 0, 3, **stocked("detections"))
    end = 3 + sc.min_frames - 1 + int(sc.oos_seconds) - sc.min_frames  # refill frames still count as empty time
    assert feed(sc, 3, end, **empty("detections")) == []
    assert feed(sc, end, end + 10, **stocked("detections")) == []  # refilled before the alert: nothing to clear


@pytest.mark.parametrize(
    "hidden",
    [
        {"results": slot_results("empty"), "tracks": [track(9, SHOPPER, PERSON)]},  # classifier reads the shopper
        {"results": slot_results("empty"), "tracks": [track(9, SHOPPER, PERSON, state="lost")]},
        {"dets": [(PERSON, SHOPPER)]},  # products behind the person are not detected
        {"dets": [(PERSON, [0, 0, 30, 400])]},  # covers 30 % of the slot: still ignored
        {"results": slot_results("occluded")},  # the slot classifier itself says it cannot see
    ],
)
def test_a_shopper_in_front_of_the_shelf_never_alerts(hidden):
    sc = make()
    mode = "classifier" if "results" in hidden else "detections"
    feed(sc, 0, 3, **stocked(mode))
    assert feed(sc, 3, 3 + 6 * int(sc.oos_seconds), **hidden) == []  # far longer than oos_seconds
    assert sc.state()["slots"]["A"]["occluded"] is True
    assert sc.state()["slots"]["A"]["state"] == "stocked" and sc.state()["slots"]["A"]["empty_for_seconds"] == 0
    assert feed(sc, 100, 110, **stocked(mode)) == []
    assert sc.state()["slots"]["A"]["occluded"] is False


def test_small_overlap_is_not_occlusion():
    sc = make(occlusion={"min_overlap": 0.5})
    feed(sc, 0, 3, **stocked("detections"))
    events = feed(sc, 3, 30, dets=[(PERSON, [0, 0, 30, 400])])  # 30 % < 50 %: the slot is visible and empty
    assert [e.kind for e in events] == ["out_of_stock"]


def test_occlusion_pauses_the_empty_timer():
    sc = make()
    feed(sc, 0, 6, **empty("detections"))  # empty from t=0, state empty at t=min_frames-1, last clear frame t=5
    counted = 5 - (sc.min_frames - 1)
    assert sc.state()["slots"]["A"]["empty_for_seconds"] == counted
    assert feed(sc, 6, 106, dets=[(PERSON, SHOPPER)]) == []
    assert sc.state()["slots"]["A"]["empty_for_seconds"] == counted  # neither advanced nor reset
    (oos,) = feed(sc, 106, 130, **empty("detections"))
    assert oos.timestamp == 106 + sc.oos_seconds - counted  # the first frame after the shopper adds no time


def test_restock_clears():
    sc = make()
    feed(sc, 0, 20, **empty("detections"))
    assert sc.state()["slots"]["A"]["state"] == "empty"
    (restocked,) = feed(sc, 20, 30, **stocked("detections"))
    assert restocked.kind == "restocked" and restocked.timestamp == 20 + sc.min_frames - 1
    assert restocked.data["snapshot"] and restocked.data["facings"] == 3
    slot = sc.state()["slots"]["A"]
    assert (slot["state"], slot["empty_for_seconds"], slot["sku"]) == ("stocked", 0, "sku_1")
    assert [e.kind for e in feed(sc, 30, 60, **empty("detections"))] == ["out_of_stock"]  # alerts again


@pytest.mark.parametrize(
    ("config", "dets", "snapshot"),
    [
        ({}, products(0, "sku_1", 1), False),  # 1 facing < low_below 2
        ({"low_is_alert": True}, products(0, "sku_1", 1), True),
        ({"low_below": 4}, products(0, "sku_1", 3), False),
        ({}, products(0, "sku_1", 3) + [(GAP, [80, 5, 95, 45])], False),  # a gap among facings
    ],
)
def test_low_stock(config, dets, snapshot):
    sc = make(**config)
    (low,) = feed(sc, 0, 10, dets=dets)
    assert low.kind == "low_stock" and low.timestamp == sc.min_frames - 1
    assert low.data.get("snapshot", False) is snapshot
    assert sc.state()["slots"]["A"]["state"] == "low"


def test_smoothing_ignores_flicker():
    sc = make()
    feed(sc, 0, 3, **stocked("detections"))
    for t in range(3, 60):  # every third frame reads empty
        assert sc.update(frame(t), detections([] if t % 3 == 0 else products(0, "sku_1", 3)), [], None) == []
    assert sc.state()["slots"]["A"]["state"] == "stocked"


def test_planogram_compliance_lists_and_events():
    sc = make(slots=[A, B, C])
    shelf = products(0, "sku_1", 3) + products(1, "sku_3", 2) + products(1, "sku_2", 1)  # C empty, B mostly sku_3
    shelf += [(SKU["sku_2"], [400, 5, 420, 45])]  # off every slot: not counted
    events = feed(sc, 0, 10, dets=shelf)
    plans = [e for e in events if e.kind == "planogram"]
    assert len(plans) == 1 and plans[0].timestamp == sc.min_frames - 1  # once all states are known
    report = plans[0].data
    assert report["compliance"] == pytest.approx(100 / 3, abs=0.01)
    assert report["missing"] == [{"slot": "C", "expected": "sku_3"}]
    assert report["misplaced"] == [{"slot": "B", "expected": "sku_2", "found": "sku_3"}]
    state = sc.state()
    assert state["facings"] == {"sku_1": 3, "sku_2": 1, "sku_3": 2}
    assert state["slots"]["B"]["skus"] == {"sku_2": 1, "sku_3": 2} and state["slots"]["B"]["facings"] == 3
    assert state["compliance"] == report["compliance"]

    sc.request_planogram()
    assert [e.kind for e in feed(sc, 10, 12, dets=shelf)] == ["planogram"]  # on request, once

    fixed = products(0, "sku_1", 3) + products(1, "sku_2", 3) + products(2, "sku_3", 3)
    events = [e for e in feed(sc, 12, 20, dets=fixed) if e.kind == "planogram"]
    assert [e.data["compliance"] for e in events][-1] == 100.0
    assert all(e.data["snapshot"] for e in events)


def test_planogram_needs_detections():
    sc = make(slots=[A, B])
    feed(sc, 0, 5, results=slot_results("stocked", "empty"))
    assert sc.state()["compliance"] is None and sc.state()["planogram"] is None


def test_rows_derive_slots():
    rows = [{"name": "top", "y": [0, 50], "slots": 3, "expected_skus": ["sku_1", "sku_2", "sku_3"]}]
    sc = make(slots=None, rows=rows, x=[0, 300])
    assert sc.rois() == [tuple(s["roi"]) for s in (A, B, C)]
    assert [s.name for s in sc.slots] == ["top-1", "top-2", "top-3"]
    assert [s.expected_sku for s in sc.slots] == ["sku_1", "sku_2", "sku_3"]


def test_cooldown_per_slot():
    sc = make(cooldown_seconds=100, oos_seconds=0, min_frames=1)
    kinds = []
    for t in range(0, 8):
        dets = [] if t % 2 == 0 else products(0, "sku_1", 3)
        kinds += [e.kind for e in sc.update(frame(t), detections(dets), [], None)]
    assert kinds == ["out_of_stock", "restocked"]
    assert sc.state()["suppressed_events"] == {"out_of_stock": 3, "restocked": 3}


def test_classifier_result_count_and_unknown_labels():
    sc = make(slots=[A, B])
    with pytest.raises(EdgecamError, match="rois"):
        sc.update(frame(0), None, [], slot_results("stocked"))
    names = ("stocked", "low", "empty", "blurry")
    sc.update(frame(0), None, [], [classification("blurry", names), classification("stocked", names)])
    assert sc.state()["ignored_labels"] == {"blurry": 1}


def test_state_is_json():
    sc = make(slots=[A, B, C])
    feed(sc, 0, 5, dets=products(0, "sku_1", 2), tracks=[track(1, [250, 0, 300, 400], PERSON)])
    state = json.loads(json.dumps(sc.state()))
    assert state["slots"]["C"]["occluded"] is True and state["slots"]["A"]["state"] == "stocked"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"slots": [{"name": "A", "roi": [0, 0, 0, 10]}]}, "slots\\[0\\].roi"),
        ({"slots": [{"name": "A", "roi": [0, 0, 10, -5]}]}, "slots\\[0\\].roi"),
        ({"slots": [{"name": "A", "roi": [0, 0, 10]}]}, "slots\\[0\\].roi"),
        ({"slots": [A, A]}, "slots\\[1\\].name"),
        ({"slots": [{**A, "expected_sku": "sku_9"}]}, "slots\\[0\\]"),
        ({"slots": [{**A, "expected_sku": "person"}]}, "slots\\[0\\]"),
        ({"slots": [{**A, "size": 3}]}, "unknown key 'size'"),
        ({"slots": None}, "exactly one of"),
        ({"rows": [{"name": "r", "y": [0, 50], "slots": 2}]}, "x"),  # no x span
        ({"slots": None, "rows": [{"name": "r", "y": [50, 0], "slots": 2}], "x": [0, 10]}, "rows\\[0\\].y"),
        ({"slots": None, "rows": [{"name": "r", "y": [0, 50], "slots": 0}], "x": [0, 10]}, "rows\\[0\\].slots"),
        ({"slots": None, "rows": [{"name": "r", "y": [0, 5], "slots": 20}], "x": [0, 10]}, "rows\\[0\\] slot"),
        ({"occlusion": {"classes": ["shopper"]}}, "occlusion.classes"),
        ({"occlusion": {"min_overlap": -1}}, "occlusion.min_overlap"),
        ({"low_is_alert": "yes"}, "low_is_alert"),
        ({"min_frames": 0}, "min_frames"),
        ({"oos_seconds": -1}, "oos_seconds"),
        ({"calibration_seconds": 30}, "calibration_seconds"),
    ],
)
def test_config_errors_name_the_key(config, key):
    with pytest.raises(EdgecamError, match=key) as err:
        make(**config)
    assert err.value.fix


def test_slot_classifier_model_skips_sku_checks():
    """With only a slot classifier the SKU names cannot be checked against the model, so they are accepted."""
    sc = create_scenario("retail", {"slots": [{**A, "expected_sku": "anything"}]}, SLOT_NAMES[:3], "shelf")
    assert sc.state()["slots"]["A"]["expected_sku"] == "anything"


@pytest.mark.parametrize("fps", [3, 5, 10, 15])
def test_out_of_stock_on_the_frame_oos_seconds_is_reached_at_any_frame_rate(fps):
    """Empty time summed frame by frame (6.4 - 6.2 + 6.6 - 6.4 + ... at 5 FPS is 1.9999...) still reaches
    oos_seconds on time, not a frame later (or, when a shopper steps in at that frame, seconds later)."""
    for start in range(1, 4 * fps):
        sc = make(oos_seconds=2, min_frames=1)
        events = []
        for f in range(start + 3 * fps):
            events += sc.update(frame(f / fps), None, [], slot_results("stocked" if f < start else "empty"))
        (oos,) = [e for e in events if e.kind == "out_of_stock"]
        assert oos.timestamp == pytest.approx(start / fps + 2), (fps, start)
