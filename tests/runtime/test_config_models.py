"""The typed configuration: the one-line errors users see, the programmatic entry point, defaults that agree with
the runtime classes, the manifest model, `edgecam schema` and the generated reference page."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from edgecam.cli import main
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.config import (
    MotionSettings,
    ReconnectSettings,
    RuntimeConfig,
    SecuritySettings,
    TrackerSettings,
    parse_runtime_config,
)
from edgecam.runtime.config.docs import render
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.motion import MotionConfig
from edgecam.runtime.reconnect import ReconnectPolicy
from edgecam.runtime.scenarios import SecurityScenario, create_scenario
from edgecam.runtime.tracker import ByteTracker
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

ROOT = Path(__file__).resolve().parents[2]
TRIANGLE = [[0, 0], [100, 0], [100, 80]]


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def _door(**changes) -> dict:
    return {"cameras": [{"name": "door", "source": "rtsp://cam/1", "bundle": "b", **changes}]}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (  # a typo in a key
            _door(scenario="security", scenario_config={"zones": [{"name": "z", "polygon": TRIANGLE, "loiter": 3}]}),
            "camera 'door': scenario_config: zones[0].loiter: unknown key "
            "(use: name, polygon, classes, loiter_seconds, cooldown_seconds)",
        ),
        (  # a wrong type
            _door(max_fps="fast"),
            "camera 'door': max_fps: got 'fast' (use a number)",
        ),
        (  # a bad polygon
            _door(scenario="security", scenario_config={"zones": [{"name": "z", "polygon": [[0, 0], [5, 5]]}]}),
            "camera 'door': scenario_config: zones[0].polygon: a polygon needs at least 3 points, got 2 "
            "(list the zone's corners in order, e.g. [[0, 0], [100, 0], [100, 80]])",
        ),
        (  # a number out of range
            _door(motion={"min_area": 2}),
            "camera 'door': motion.min_area: got 2 (use a value <= 1)",
        ),
        (_door(tracker={"low_thresh": 0.9}), "camera 'door': tracker.low_thresh: 0.9 is above high_thresh 0.5"),
        (_door(scenario="parking"), "camera 'door': scenario: unknown scenario 'parking' (use one of: none, retail,"),
        (_door(scenario="retail"), "camera 'door': scenario_config: missing"),
        (
            _door(scenario="none", scenario_config={"zones": []}),
            "camera 'door': scenario_config: zones: unknown key (this ",
        ),
        (_door(stride=True), "camera 'door': stride: got True (use an integer)"),
        ({**_door(), "engine": {"mode": "fast"}}, "engine.mode: got 'fast' (use one of 'latency' or 'throughput')"),
        ({"cameras": [{"source": "x", "bundle": "b"}]}, "cameras[0].name: missing"),
        ({**_door(), "device": {"id": "store/1"}}, "device.id: got 'store/1' (use letters, digits"),
        ({**_door(), "device": {"id": "edge+cam"}}, "device.id: got 'edge+cam'"),
        ({**_door(), "device": {"id": "#"}}, "device.id: got '#'"),
        ({**_door(), "device": {"id": ""}}, "device.id: got ''"),
        ({**_door(), "device": {"id": 7}}, "device.id: got 7 (use a string)"),
        ({**_door(), "device": {"name": "x"}}, "device.name: unknown key (use: id)"),
        ([1], "expected a mapping, got list"),
    ],
)
def test_validation_errors_are_one_line_with_file_camera_key_and_fix(tmp_path, data, expected):
    with pytest.raises(EdgecamError) as info:
        parse_runtime_config(data, "cameras.yaml", tmp_path)
    text = str(info.value)
    assert text.startswith(f"cameras.yaml: {expected}"), text
    assert "\n" not in text and info.value.fix and "pydantic" not in text and "errors.pydantic.dev" not in text


def test_a_bad_device_id_is_a_config_error_naming_the_key_and_exit_2(tmp_path, capsys):
    path = tmp_path / "cameras.yaml"
    path.write_text("device: {id: shop/7}\ncameras: [{name: door, source: rtsp://cam/1, bundle: b}]\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device.id: got 'shop/7'" in err and "Traceback" not in err


def test_the_device_id_defaults_to_the_host_name_made_topic_safe(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "Shop 7/Till#2.local")
    config = RuntimeConfig.model_validate(_door())
    assert config.device.id is None and config.device_id == "Shop_7_Till_2.local"
    assert RuntimeConfig.model_validate({**_door(), "device": None}).device_id == "Shop_7_Till_2.local"
    given = RuntimeConfig.model_validate({**_door(), "device": {"id": "store-12.till_2"}})
    assert given.device_id == "store-12.till_2"
    for host, expected in (("", "edgecam"), ("---", "edgecam"), ("_box", "box"), ("x" * 80, "x" * 64)):
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        assert RuntimeConfig.model_validate(_door()).device_id == expected


def test_a_minimal_programmatic_config_runs_with_defaults(tmp_path, detect_bundle, synthetic_video):
    data = {"cameras": [{"name": "main", "source": str(synthetic_video.path), "bundle": str(detect_bundle)}]}
    data["cameras"][0]["sinks"] = {"jsonl": "out/main.jsonl", "video": "out/main.mp4"}
    config = parse_runtime_config(data, "edgecam run", tmp_path)
    (cam,) = config.cameras
    assert isinstance(config, RuntimeConfig) and config.path == Path("edgecam run")
    assert (config.workers, config.threads, config.mode, config.mqtt, config.http) == (2, None, "latency", None, None)
    assert cam.sinks.jsonl == tmp_path / "out/main.jsonl" and cam.sinks.video == tmp_path / "out/main.mp4"
    assert cam.scenario == "none" and cam.scenario_config.to_dict() == {} and cam.motion is None
    assert dict(cam.tracker) == TrackerSettings().model_dump() and cam.backend == "openvino"


def test_the_disk_checks_name_the_origin(tmp_path, detect_bundle):
    data = {"cameras": [{"name": "main", "source": "missing.mp4", "bundle": str(detect_bundle)}]}
    with pytest.raises(EdgecamError, match=r"^edgecam run: camera 'main': source: .*missing.mp4 not found"):
        parse_runtime_config(data, "edgecam run", tmp_path)
    data = _door(scenario="security", scenario_config={"zones": [{"name": "z", "polygon": TRIANGLE, "classes": ["x"]}]})
    data["cameras"][0]["bundle"] = str(detect_bundle)
    with pytest.raises(EdgecamError, match=r"camera 'door': scenario_config: .*zones\[0\].classes: unknown class 'x'"):
        parse_runtime_config(data, "cameras.yaml", tmp_path)


def test_shorthands_keep_their_meaning(tmp_path):
    data = _door(scenario="security", scenario_config={"min_track_hits": 5, "tamper": False}, motion=True)
    (cam,) = RuntimeConfig.model_validate(data, context={"base_dir": tmp_path}).cameras
    assert cam.tracker.min_hits == 5 and cam.scenario_config.to_dict()["tamper"] is False
    assert cam.motion is not None and cam.motion.to_motion_config() == MotionConfig()
    explicit = _door(scenario="security", scenario_config={"min_track_hits": 5}, tracker={"min_hits": 2})
    assert RuntimeConfig.model_validate(explicit).cameras[0].tracker.min_hits == 2


def test_model_defaults_agree_with_the_runtime_classes():
    signature = inspect.signature(ByteTracker.__init__).parameters
    assert TrackerSettings().model_dump() == {k: p.default for k, p in signature.items() if k != "self"}
    assert MotionSettings().to_motion_config() == MotionConfig()
    assert ReconnectSettings().to_policy() == ReconnectPolicy()
    typed = create_scenario("security", SecuritySettings(), ("person",), "cam")
    plain = SecurityScenario({}, ("person",), "cam")
    for attr in ("debounce", "tamper_enabled", "tamper_label", "tamper_threshold", "tamper_on", "tamper_off"):
        assert getattr(typed, attr) == getattr(plain, attr), attr
    assert typed.cooldown.seconds == plain.cooldown.seconds


def test_the_manifest_model_keeps_unknown_keys(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.checked is not None and bundle.checked.task == bundle.task
    assert bundle.checked.class_names == list(bundle.class_names)
    assert set(bundle.manifest) - set(type(bundle.checked).model_fields) <= set(bundle.checked.model_extra or {})


@pytest.mark.parametrize("what", ["cameras", "manifest"])
def test_schema_command_prints_json_schema(what, tmp_path, capsys):
    assert main(["schema", what]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object" and schema["properties"]
    out = tmp_path / "schema.json"
    assert main(["schema", what, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == schema


def test_configuration_reference_is_up_to_date():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == render(), "docs/configuration.md is stale: run `make docs`"
