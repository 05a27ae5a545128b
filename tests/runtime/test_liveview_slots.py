"""The live page in headless Chromium: shelf slots coloured by state, event rows without the fields they lack."""

from __future__ import annotations

import json
import os
import time

import pytest

from edgecam.runtime.sinks.http import HttpServer
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.types import Event
from tests.runtime.test_liveview_browser import CHROMIUM, Chromium

SLOTS = {"A1": "stocked", "A2": "low", "A3": "empty", "A4": None}  # A4: no reading yet


def slot(state: str | None, occluded: bool = False) -> dict:
    """A slot as the retail scenario's state() reports it, from a classifier only (no SKU detections)."""
    facings = {"stocked": 3, "low": 1}.get(state or "", 0)
    return {"state": state, "facings": facings, "skus": {}, "sku": None, "expected_sku": None,
            "occluded": occluded, "empty_for_seconds": 0.0}  # fmt: skip


@pytest.fixture
def server():
    if CHROMIUM is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the live-view browser test")
        pytest.skip(reason)
    registry = StateRegistry()
    shelf = registry.camera("shelf")
    shelf.update({"online": True}, {"scenario": "retail", "slots": {k: slot(v) for k, v in SLOTS.items()}})
    now = time.time()
    shelf.add_event(Event("low_stock", "shelf", now - 2, {"slot": "A2", **slot("low")}))
    shelf.add_event(Event("out_of_stock", "shelf", now - 1, {"slot": "A3", **slot("empty"), "snapshot": True}))
    door = registry.camera("door")
    door.update({"online": True}, {"scenario": "security", "zones": {}})
    door.add_event(Event("person_entered", "door", now, {"track_id": 7, "zone": "porch", "dwell": None}))
    srv = HttpServer(registry).start()
    yield srv
    srv.stop()


PAGE_STATE = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('.cam')].map(t => [t.dataset.camera, {
  slots: [...t.querySelectorAll('.slot')].map(s => ({name: s.dataset.slot, state: s.dataset.state,
    colour: getComputedStyle(s).backgroundColor})),
  events: [...t.querySelectorAll('.events li')].map(li => ({kind: li.querySelector('b')?.textContent,
    keys: [...li.querySelectorAll('.field')].map(f => f.dataset.key), text: li.textContent,
    alert: li.classList.contains('alert')}))}])))"""


def rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return r, g, b


def test_slots_are_coloured_by_state_and_event_rows_show_only_their_fields(server, tmp_path):
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        browser.send("Page.navigate", {"url": server.url + "/"})
        page, deadline = {}, time.monotonic() + 12
        while time.monotonic() < deadline:
            page = json.loads(browser.evaluate(PAGE_STATE))
            if len(page.get("shelf", {}).get("slots", [])) == len(SLOTS) and page.get("door", {}).get("events"):
                break
            time.sleep(0.25)
        shelf = page["shelf"]
        assert [(s["name"], s["state"]) for s in shelf["slots"]] == [(k, v or "unknown") for k, v in SLOTS.items()]
        colour = {s["state"]: rgb(s["colour"]) for s in shelf["slots"]}
        r, g, b = colour["stocked"]
        assert g > 1.5 * r and g > 1.5 * b, f"stocked is not green: {colour}"
        r, g, b = colour["low"]
        assert r > g > 2 * b and g > 0.5 * r, f"low is not amber: {colour}"
        r, g, b = colour["empty"]
        assert r > 2 * g and r > 2 * b, f"empty is not red: {colour}"
        r, g, b = colour["unknown"]
        assert max(r, g, b) - min(r, g, b) < 40, f"a slot with no reading is coloured: {colour}"
        assert page["door"]["slots"] == []  # no shelf, no slot strip

        events = {e["kind"]: e for cam in page.values() for e in cam["events"]}
        used = ["slot", "state", "facings", "occluded", "empty_for_seconds"]  # never sku / expected_sku / skus
        assert events["low_stock"]["keys"] == used and not events["low_stock"]["alert"]
        assert events["out_of_stock"]["keys"] == used and events["out_of_stock"]["alert"]
        assert events["person_entered"]["keys"] == ["track_id", "zone"]
        assert all("null" not in e["text"] and "{}" not in e["text"] for e in events.values()), events
    finally:
        browser.close()
