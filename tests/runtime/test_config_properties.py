"""Property tests: whatever a cameras.yaml or a zone holds, the runtime answers with a result or an EdgecamError.

A device reads configuration written by hand; any other exception would surface as an internal error (or kill a
camera thread) instead of a line naming the key to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgecam.runtime.config import RuntimeConfig
from edgecam.runtime.config.loader import parse_runtime_config, validation_error
from edgecam.runtime.device_id import DEVICE_ID, device_id_from
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.processor import validate_rois
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scenarios.geometry import (
    clip_to_box,
    polygon_area,
    segment_touches_box,
    validate_polygon,
    validate_roi,
    validate_segment,
    validate_span,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never fails on a case a developer cannot replay
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)
numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True))
points = st.lists(st.one_of(st.lists(numbers, max_size=3), json_values), max_size=6)

CAMERA_KEYS = ("name", "source", "bundle", "scenario", "scenario_config", "rois", "resolution", "max_fps", "stride")
CAMERA_KEYS += ("motion", "tracker", "reconnect", "sinks", "conf", "iou", "track", "backend", "variant")


def _answers(call) -> None:
    try:
        call()
    except EdgecamError as exc:
        assert str(exc) and "\n" not in str(exc)


@SETTINGS
@given(data=json_values)
def test_any_document_is_a_config_or_an_edgecam_error(tmp_path: Path, data):
    _answers(lambda: parse_runtime_config(data, tmp_path / "cameras.yaml", tmp_path))


@SETTINGS
@given(
    camera=st.dictionaries(st.sampled_from(CAMERA_KEYS), json_values, max_size=6),
    top=st.dictionaries(st.sampled_from(("mqtt", "http", "engine", "device", "defaults")), json_values, max_size=2),
)
def test_any_camera_entry_is_a_config_or_an_edgecam_error(tmp_path: Path, tiny_bundle: Path, camera, top):
    """Mostly-valid cameras (a real bundle and source) with arbitrary values under the real keys."""
    (tmp_path / "cam.mp4").touch()
    entry = {"name": "cam", "source": "cam.mp4", "bundle": str(tiny_bundle), **camera}
    _answers(lambda: parse_runtime_config({"cameras": [entry], **top}, tmp_path / "cameras.yaml", tmp_path))


@SETTINGS
@given(device=st.one_of(st.text(max_size=70), json_values))
def test_any_device_id_is_used_as_given_or_names_device_id(tmp_path: Path, device):
    """A device id is one MQTT topic level and a label value: kept exactly, or refused naming the key."""
    data = {"device": {"id": device}, "cameras": [{"name": "cam", "source": "rtsp://cam/1", "bundle": "b"}]}
    try:
        try:
            config = RuntimeConfig.model_validate(data)  # the models alone: the bundle `b` is not on the disk
        except ValidationError as exc:
            raise validation_error(exc, "cameras.yaml", data) from None
    except EdgecamError as exc:
        assert "device.id" in str(exc) and "\n" not in str(exc)
        return
    assert config.device_id == device if device is not None else config.device_id
    assert not set("/+#\x00 ") & set(config.device_id) and 0 < len(config.device_id) <= 64


@SETTINGS
@given(host=st.text(max_size=100))
def test_any_host_name_gives_a_valid_device_id(host):
    assert DEVICE_ID.match(device_id_from(host))


@SETTINGS
@given(zones=json_values, lines=json_values, width=st.integers(1, 4000), height=st.integers(1, 4000))
def test_any_security_geometry_is_a_scenario_or_an_edgecam_error(zones, lines, width, height):
    def build() -> None:
        scenario = create_scenario("security", {"zones": zones, "lines": lines}, ("person", "car"), "cam")
        scenario.check_frame(width, height)

    _answers(build)


@SETTINGS
@given(value=points)
def test_geometry_validators_answer_any_value(value):
    for check in (validate_polygon, validate_segment, validate_roi, validate_span):
        _answers(lambda check=check: check(value, "key"))


@SETTINGS
@given(rois=st.lists(st.lists(st.integers(-10, 300), max_size=5), max_size=4))
def test_rois_are_kept_only_wholly_inside_the_frame(rois):
    try:
        kept = validate_rois(rois, 160, 120)
    except EdgecamError:
        return
    assert all(x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 160 and y + h <= 120 for x, y, w, h in kept)


coords = st.floats(-500, 500, allow_nan=False)


@SETTINGS
@given(polygon=st.lists(st.tuples(coords, coords), min_size=3, max_size=3))
def test_clipping_never_adds_area_and_keeps_what_lies_inside(polygon):
    """Triangles: always simple polygons (a self-crossing one has no single area to compare)."""
    box = (0.0, 0.0, 160.0, 120.0)
    clipped = clip_to_box(polygon, box)
    assert all(-1e-6 <= x <= 160 + 1e-6 and -1e-6 <= y <= 120 + 1e-6 for x, y in clipped)
    assert polygon_area(clipped) <= min(160 * 120, polygon_area(polygon)) + 1e-3  # float rounding at 500 px
    if all(0 <= x <= 160 and 0 <= y <= 120 for x, y in polygon):
        assert polygon_area(clipped) == pytest.approx(polygon_area(polygon), abs=1e-6)


@SETTINGS
@given(a=st.tuples(coords, coords), b=st.tuples(coords, coords))
def test_a_segment_touches_the_frame_when_a_point_on_it_is_inside(a, b):
    box = (0.0, 0.0, 160.0, 120.0)
    samples = [(a[0] + (b[0] - a[0]) * t / 50, a[1] + (b[1] - a[1]) * t / 50) for t in range(51)]
    if any(0 <= x <= 160 and 0 <= y <= 120 for x, y in samples):
        assert segment_touches_box(a, b, box)
