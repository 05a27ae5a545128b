"""A slot covered by a shopper holds its last confident state; one uncertain reading changes nothing.

Two ways to see the shopper: a person box (a detector), or foreground from a running background (real frames
here: a still shelf image, and a coloured coat over the slot). The classifier reads garbage while the slot is
covered, as the demo classifier does ("stocked 0.47", "low 0.99").
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios import RetailScenario, create_scenario
from edgecam.runtime.scenarios.foreground import Foreground
from edgecam.runtime.types import Event, Frame
from tests.runtime.scenarios import classification, detections
from tests.runtime.scenarios.test_foreground import noisy, shelf, with_blob

FPS = 15
STATES = ("stocked", "low", "empty")
SLOT = {"name": "A", "roi": [400, 200, 200, 160]}
COAT = (360, 150, 300, 300)  # x, y, w, h: covers the whole slot
PERSON_BOX = [360.0, 150.0, 660.0, 450.0]


def make(names: tuple[str, ...] = STATES, **config) -> RetailScenario:
    config = {"slots": [SLOT], "cooldown_seconds": 0, "oos_seconds": 2, **config}
    sc = create_scenario("retail", config, names, "shelf")
    assert isinstance(sc, RetailScenario)
    return sc


class Clip:
    """Frames at FPS over a still shelf (the motion path needs real images); `t` counts on."""

    def __init__(self, sc: RetailScenario, scene: np.ndarray | None = None) -> None:
        self.sc, self.n, self.rng = sc, 0, np.random.default_rng(0)
        self.scene = shelf() if scene is None else scene
        self.slot_states: list[dict] = []

    def run(self, seconds: float, label: str, score: float = 0.95, coat: bool = False, box: bool = False) -> list:
        events: list[Event] = []
        for k in range(round(seconds * FPS)):
            image = self.scene
            if coat:  # sways a little and its folds move, like a shopper reaching for something
                x, y, w, h = COAT
                image = with_blob(image, x + (k % 4) * 8, y, w, h, phase=12 * k)
            dets = detections([(0, PERSON_BOX)]) if box else None
            frame = Frame(noisy(image, self.rng), timestamp=self.t, source_id="shelf", index=self.n)
            events += self.sc.update(frame, dets, [], [classification(label, STATES, score)])
            self.slot_states.append(self.sc.state()["slots"]["A"])
            self.n += 1
        return events

    @property
    def t(self) -> float:
        """The next frame's timestamp."""
        return self.n / FPS


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def empty_slot(sc: RetailScenario) -> Clip:
    """A slot that has been empty long enough to be out of stock."""
    clip = Clip(sc)
    assert kinds(clip.run(4, "empty")) == ["out_of_stock"]
    return clip


# ---- the motion path: no person detector --------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [1, 5])
@pytest.mark.parametrize(("label", "score"), [("stocked", 0.47), ("stocked", 0.99), ("low", 0.99)])
def test_a_shopper_in_front_of_an_empty_slot_raises_nothing(seconds, label, score):
    sc = make()
    assert sc.state()["motion_occlusion"] is True  # a slot classifier has no person class: the background is used
    clip = empty_slot(sc)
    assert clip.run(seconds, label, score, coat=True) == []
    held = clip.slot_states[-round(seconds * FPS) + 1 :]  # the first frame with the coat only starts the model off
    assert all(s["occluded"] and s["occluded_by"] == "foreground" and s["state"] == "empty" for s in held)
    assert clip.run(3, "empty") == []
    after = sc.state()["slots"]["A"]
    assert (after["state"], after["occluded"], after["occluded_by"]) == ("empty", False, None)
    # the time behind the shopper did not count as empty; the 3 s after did (but for the first frame's gap)
    assert after["empty_for_seconds"] == pytest.approx(held[-1]["empty_for_seconds"] + 3, abs=2.5 / FPS)


def test_a_slot_restocked_behind_a_shopper_reports_it_as_soon_as_the_shopper_leaves():
    """The new products are foreground confined to the slot: its own change, which hides nothing (it used to be held
    for settle_seconds, delaying the event)."""
    sc = make(occlusion={"settle_seconds": 1.0})
    clip = empty_slot(sc)
    assert clip.run(3, "stocked", 0.47, coat=True) == []
    x, y, w, h = SLOT["roi"]
    clip.scene = clip.scene.copy()
    clip.scene[y : y + h, x : x + w] = shelf(seed=1)[y : y + h, x : x + w]  # the shelf behind has new products
    left = clip.t
    (restocked,) = clip.run(3, "stocked")
    assert restocked.kind == "restocked" and not restocked.data["occluded"]
    debounce = (sc.min_frames - 1) / FPS
    assert left <= restocked.timestamp <= left + debounce + 2.5 / FPS
    assert sc.state()["slots"]["A"]["state"] == "stocked"


def test_motion_occlusion_is_off_with_a_person_detector_unless_asked_for():
    assert make(names=("person", "sku_1")).state()["motion_occlusion"] is False
    assert make(names=("person", "sku_1"), occlusion={"motion": True}).state()["motion_occlusion"] is True
    assert make(occlusion={"motion": False}).state()["motion_occlusion"] is False


def test_without_motion_occlusion_the_coat_does_restock():
    """The other side of the tests above: the readings used there do make a restock when nothing hides the slot."""
    clip = empty_slot(make(occlusion={"motion": False}))
    assert "restocked" in kinds(clip.run(3, "stocked", 0.99, coat=True))


# ---- the detector path --------------------------------------------------------------------------------------
def box_scenario(**config) -> tuple[RetailScenario, Clip]:
    """A detector with a person class (motion off) plus a slot classifier, on a still image."""
    sc = make(names=("person", "sku_1"), **config)
    assert sc.state()["motion_occlusion"] is False
    clip = Clip(sc)
    assert kinds(clip.run(4, "empty", box=False)) == ["out_of_stock"]
    return sc, clip


@pytest.mark.parametrize("seconds", [1, 5])
@pytest.mark.parametrize(("label", "score"), [("stocked", 0.47), ("low", 0.99)])
def test_a_person_box_over_an_empty_slot_raises_nothing(seconds, label, score):
    sc, clip = box_scenario()
    assert clip.run(seconds, label, score, box=True) == []
    held = clip.slot_states[-round(seconds * FPS) :]
    assert all(s["occluded_by"] == "detection" and s["state"] == "empty" for s in held)
    assert clip.run(3, "empty") == []


def test_readings_from_before_the_shopper_do_not_add_up_with_readings_after():
    """Two frames of `stocked` as the shopper steps in (not yet covering enough), the box, then one more frame:
    three agreeing frames in all, but not in a row."""
    sc, clip = box_scenario()
    assert clip.run(2 / FPS, "stocked") == []
    assert clip.run(1, "stocked", box=True) == []
    assert clip.run(1 / FPS, "stocked") == []
    assert sc.state()["slots"]["A"]["state"] == "empty"
    assert kinds(clip.run(2 / FPS, "stocked")) == ["restocked"]  # now three in a row


def test_a_slot_emptied_and_restocked_behind_a_person_box():
    sc, clip = box_scenario()
    assert kinds(clip.run(1, "stocked")) == ["restocked"]
    assert clip.run(2, "empty", box=True) + clip.run(2, "low", 0.99, box=True) == []  # both behind the shopper
    assert sc.state()["slots"]["A"]["state"] == "stocked"
    left = clip.t
    events = clip.run(1, "low")
    assert kinds(events) == ["low_stock"] and events[0].timestamp == pytest.approx(left + (sc.min_frames - 1) / FPS)
    assert not events[0].data["occluded"]


# ---- confidence -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("min_frames", [1, 3])
def test_one_uncertain_frame_changes_nothing(min_frames):
    clip = Clip(make(min_frames=min_frames, occlusion={"motion": False}))
    clip.run(1, "stocked")
    for label in STATES[1:]:
        assert clip.run(1 / FPS, label, 0.47) == []
    assert clip.sc.state()["slots"]["A"]["state"] == "stocked"


def test_an_uncertain_frame_breaks_the_run():
    clip = Clip(make(occlusion={"motion": False}))  # min_frames 3
    clip.run(1, "stocked")
    assert clip.run(2 / FPS, "low") + clip.run(1 / FPS, "low", 0.5) + clip.run(2 / FPS, "low") == []
    assert kinds(clip.run(1 / FPS, "low")) == ["low_stock"]


def test_min_score_is_configurable():
    clip = Clip(make(min_score=0.4, occlusion={"motion": False}))
    clip.run(1, "stocked")
    assert kinds(clip.run(1, "low", 0.47)) == ["low_stock"]


def test_min_seconds_holds_a_change_back():
    clip = Clip(make(min_frames=1, min_seconds=1.0, occlusion={"motion": False}))
    clip.run(1, "stocked")
    start = clip.t
    (low,) = clip.run(2, "low")
    assert low.timestamp == pytest.approx(start + 1.0)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"occlusion": {"motion": "yes"}}, "occlusion.motion"),
        ({"occlusion": {"motion": 1}}, "occlusion.motion"),
        ({"occlusion": {"motion_fraction": 0}}, "occlusion.motion_fraction"),
        ({"occlusion": {"settle_seconds": -1}}, "occlusion.settle_seconds"),
        ({"min_score": 1.5}, "min_score"),
        ({"min_seconds": -1}, "min_seconds"),
    ],
)
def test_config_errors_name_the_key(config, key):
    with pytest.raises(EdgecamError, match=key) as err:
        make(**config)
    assert err.value.fix


anything = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=6), st.lists(st.none())
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    occlusion=st.dictionaries(st.sampled_from(["motion", "motion_fraction", "settle_seconds"]), anything, max_size=3),
    top=st.dictionaries(st.sampled_from(["min_score", "min_seconds"]), anything, max_size=2),
)
def test_any_occlusion_settings_are_a_scenario_or_an_edgecam_error(occlusion, top):
    try:
        make(occlusion=occlusion, **top)
    except EdgecamError as exc:
        assert str(exc) and exc.fix


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    frames=st.lists(
        st.tuples(st.sampled_from([(8, 8), (64, 48), (1280, 720)]), st.floats(-10, 1e9), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    rois=st.lists(st.tuples(*[st.integers(-2000, 2000)] * 2, *[st.integers(1, 2000)] * 2), max_size=4),
)
def test_the_background_answers_any_frame_sequence(frames, rois):
    """Sizes change, clocks jump back, ROIs lie outside: every answer is a share between 0 and 1."""
    fg = Foreground(1.0)
    for (w, h), ts, grey in frames:
        shares = fg.fractions(np.full((h, w, 3), grey, np.uint8), ts, rois)
        assert len(shares) == len(rois) and all(0.0 <= s <= 1.0 for s in shares)
