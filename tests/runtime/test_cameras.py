"""Several cameras in one process: two synthetic videos, the tiny detector and classifier, scenarios, sinks."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgecam.cli import main
from edgecam.runtime.camera_config import load_cameras_config
from edgecam.runtime.cameras import MultiCameraRunner
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.reconnect import SOURCE_LOST, SOURCE_RESTORED
from edgecam.runtime.sinks.snapshots import SnapshotSink
from edgecam.runtime.types import Event
from tests.runtime.conftest import COLORS_BGR
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

N_FRAMES, FPS, W, H = 12, 10.0, 160, 120
WHOLE_FRAME = [[0, 0], [W, 0], [W, H], [0, H]]


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def write_video(path: Path, colour: str, n: int = N_FRAMES, square: str | None = None) -> Path:
    """`n` frames of one colour (what the tiny classifier reads), optionally with a 48 px square of another."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    for _ in range(n):
        image = np.full((H, W, 3), COLORS_BGR[colour], np.uint8)
        if square:
            image[8:56, 8:56] = COLORS_BGR[square]
        writer.write(image)
    writer.release()
    return path


class MemorySink:
    """An in-memory stand-in for MqttSink, safe to call from several threads."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.states: dict[str, dict] = {}
        self.online: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def publish_event(self, camera, event):
        with self._lock:
            self.events.append((camera, event))

    def publish_state(self, camera, state):
        with self._lock:
            self.states[camera] = state

    def set_camera_online(self, camera, online):
        with self._lock:
            self.online.append((camera, online))

    def kinds(self, camera: str) -> list[str]:
        return [e.kind for c, e in self.events if c == camera]


def write_config(tmp_path: Path, cameras: list[dict], **top) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"cameras": cameras, **top}, sort_keys=False))
    return path


@pytest.fixture
def two_cameras(tmp_path, detect_bundle, tiny_bundle) -> Path:
    """door: detector + tamper classifier + security zone; shelf: the classifier on two slots, no scenario."""
    write_video(tmp_path / "door.mp4", "red")
    write_video(tmp_path / "shelf.mp4", "green", square="blue")
    door = {
        "name": "door",
        "source": "door.mp4",
        "bundle": str(detect_bundle),
        "classifier": str(tiny_bundle),
        "scenario": "security",
        "scenario_config": {
            "zones": [{"name": "all", "polygon": WHOLE_FRAME}],
            "tamper": {"label": "red", "on_seconds": 0.2},
            "min_track_hits": 2,
            "cooldown_seconds": 0,
        },
        "resolution": [W // 2, H // 2],
        "sinks": {"jsonl": "out/door.jsonl", "video": "out/door.mp4", "snapshots": "out/snaps/door"},
    }
    shelf = {
        "name": "shelf",
        "source": "shelf.mp4",
        "bundle": str(tiny_bundle),
        "backend": "onnxruntime",
        "rois": [[8, 8, 48, 48], [100, 60, 48, 48]],
        "sinks": {"jsonl": "out/shelf.jsonl"},
    }
    return write_config(tmp_path, [door, shelf], engine={"workers": 2, "threads": 1})


def test_two_cameras_are_processed_with_their_own_sinks_and_stats(two_cameras, tmp_path):
    sink = MemorySink()
    runner = MultiCameraRunner(load_cameras_config(two_cameras), sinks=[sink])
    summary = runner.run(duration=60)
    by_name = {c["camera"]: c for c in summary.cameras}
    assert set(by_name) == {"door", "shelf"} and not summary.interrupted
    for cam in by_name.values():  # files run in order without dropping, and the run ends with them
        assert cam["frames"] == N_FRAMES and cam["dropped"] == 0 and cam["error"] is None
        assert cam["frame_age_ms"]["p50"] > 0 and cam["frame_age_ms"]["p95"] >= cam["frame_age_ms"]["p50"]
    assert len(summary.engines) == 3  # detector, classifier on openvino, classifier on onnxruntime

    door = [json.loads(line) for line in (tmp_path / "out/door.jsonl").read_text().splitlines()]
    shelf = [json.loads(line) for line in (tmp_path / "out/shelf.jsonl").read_text().splitlines()]
    assert len(door) == len(shelf) == N_FRAMES
    assert {r["label"] for r in door[0]["results"]} == {"person", "car"}
    assert max(r["xyxy"][2] for r in door[0]["results"]) <= W // 2  # boxes in the resized frame's pixels
    assert door[-1]["classifications"][0]["label"] == "red"
    assert [[r["label"] for r in line["results"]] for line in shelf] == [["blue", "green"]] * N_FRAMES
    assert any(r.get("track_id") for line in door for r in line["results"])  # the tracker ran

    kinds = sink.kinds("door")
    assert kinds.count("zone_enter") == 2 and kinds.count("tamper") == 1
    assert sink.kinds("shelf") == [] and by_name["door"]["events"] == {k: kinds.count(k) for k in set(kinds)}
    snaps = sorted((tmp_path / "out/snaps/door").glob("*.jpg"))
    assert len(snaps) == len(kinds)  # every event here is an alert with a snapshot
    tamper = next(e for c, e in sink.events if e.kind == "tamper")
    assert Path(tamper.data["snapshot_path"]).exists()
    assert ("door", True) in sink.online and sink.online[-1][1] is False
    assert sink.states["door"]["scenario"]["zones"]["all"]["total"] == 2

    video = cv2.VideoCapture(str(tmp_path / "out/door.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == W // 2
    video.release()
    state = runner.registry.camera("shelf").snapshot()["stats"]
    assert state["frames_out"] == N_FRAMES and state["online"] is False and state["queue_depth"] == 0
    assert {"preprocess", "infer", "postprocess", "read"} <= set(state["stages"])
    assert "classifier_infer" in runner.registry.camera("door").snapshot()["stats"]["stages"]
    assert "door" in summary.format_table() and "zone_enter" in summary.format_table()


def test_motion_gate_skips_a_static_camera(tmp_path, tiny_bundle):
    write_video(tmp_path / "still.mp4", "green")
    motion = {"min_area": 0.01, "max_skip_seconds": 60}
    cam = {"name": "still", "source": "still.mp4", "bundle": str(tiny_bundle), "motion": motion}
    summary = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam]))).run(duration=60)
    (result,) = summary.cameras
    assert (result["frames"], result["motion_skipped"]) == (1, N_FRAMES - 1)


class FlakyCamera:
    """A live camera: frames, then dead until `revive` is set, then frames again (a reboot)."""

    def __init__(self, revive: threading.Event) -> None:
        self.revive, self.served = revive, 0

    def isOpened(self) -> bool:  # noqa: N802
        return self.served < 5 or self.revive.is_set()

    def read(self):
        time.sleep(0.01)
        self.served += 1
        if self.served >= 5 and not self.revive.is_set():
            return False, None
        return True, np.full((H, W, 3), COLORS_BGR["green"], np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_a_live_camera_that_drops_out_reconnects_while_the_run_goes_on(tmp_path, tiny_bundle):
    revive = threading.Event()
    camera = FlakyCamera(revive)
    cam = {
        "name": "gate",
        "source": "rtsp://127.0.0.1:1/none",
        "bundle": str(tiny_bundle),
        "reconnect": {"max_failures": 3, "backoff": {"initial": 0.05, "max": 0.1}},
    }
    sink = MemorySink()
    runner = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam])), [sink], lambda _t: camera)
    threading.Timer(0.5, revive.set).start()
    summary = runner.run(duration=1.5)
    (result,) = summary.cameras
    assert sink.kinds("gate")[:2] == [SOURCE_LOST, SOURCE_RESTORED]
    assert result["reconnects"] == 1 and result["events"][SOURCE_LOST] == 1 and result["frames"] > 5
    assert [o for _, o in sink.online][:3] == [True, False, True]


def test_cli_runs_a_config_and_prints_json(two_cameras, capsys):
    assert main(["run", "--config", str(two_cameras), "--duration", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["frames"] for c in out["cameras"]] == [N_FRAMES, N_FRAMES]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "bundle", "--config", "x.yaml"],
        ["run", "--source", "0"],
        ["run", "b", "--source", "0", "--duration", "1"],
    ],
)
def test_cli_refuses_mixed_or_missing_arguments(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- config errors: one line naming the file, the camera and the key ---------------------------------------


def _camera(**changes) -> dict:
    cam = {"name": "door", "source": "door.mp4", "bundle": "DETECT", "scenario": "security"}
    cam.update(changes)
    return {k: v for k, v in cam.items() if v is not None}


@pytest.mark.parametrize(
    ("cameras", "top", "message"),
    [
        ([_camera(source=None)], {}, "camera 'door': source: missing"),
        ([_camera(source="nowhere.mp4")], {}, "camera 'door': source: .*nowhere.mp4 not found"),
        ([_camera(scenario="parking")], {}, "camera 'door': scenario: unknown scenario 'parking'"),
        (
            [_camera(scenario_config={"zones": [{"name": "z", "polygon": [[0, 0], [5, 5]]}]})],
            {},
            r"camera 'door': scenario_config: .*zones\[0\].polygon: a polygon needs at least 3 points",
        ),
        ([_camera(bundle="missing-bundle")], {}, "camera 'door': bundle: .*bundle not found"),
        ([_camera(resolutoin=[10, 10])], {}, "camera 'door': resolutoin: unknown key"),
        ([_camera(resolution=[640])], {}, r"camera 'door': resolution: got \[640\]"),
        ([_camera(resolution=[100000, 100000])], {}, r"resolution: got \[100000, 100000\] \(use at most 8192"),
        ([_camera()], {"http": {"port": 99999}}, "http.port: got 99999"),
        ([_camera(stride=0)], {}, "camera 'door': stride: got 0"),
        ([_camera(motion={"mask": [[[0, 0], [1, 1]]]})], {}, r"camera 'door': motion.mask\[0\]"),
        ([_camera(tracker={"max_lots": 2})], {}, r"camera 'door': tracker.max_lots: unknown key \(use: high_thresh, "),
        (
            [_camera(reconnect={"backoff": {"jitter": 2}})],
            {},
            r"camera 'door': reconnect.backoff.jitter: got 2 \(use a value < 1\)",
        ),
        ([_camera(sinks={"video": "out.mkv"})], {}, "camera 'door': sinks.video"),
        ([_camera(classifier="DETECT")], {}, "camera 'door': classifier: .* is a detect bundle"),
        ([_camera(), _camera()], {}, "duplicate camera name 'door'"),
        ([_camera(name="a/b")], {}, r"cameras\[0\].name"),
        ([_camera()], {"mqtt": {"port": 1883}}, "mqtt.host"),
        ([_camera()], {"mqtt": {"host": "h", "qos": 3}}, "mqtt.qos"),
        ([_camera()], {"htp": {}}, "htp: unknown key"),
        ([], {}, "cameras: expected a non-empty list"),
    ],
)
def test_config_errors_name_the_file_the_camera_and_the_key(tmp_path, detect_bundle, cameras, top, message):
    write_video(tmp_path / "door.mp4", "red", n=1)
    for cam in cameras:
        for key in ("bundle", "classifier"):
            if cam.get(key) == "DETECT":
                cam[key] = str(detect_bundle)
    path = write_config(tmp_path, cameras, **top)
    with pytest.raises(EdgecamError, match=message) as info:
        load_cameras_config(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path)) and info.value.fix


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ({"zones": [{"name": "far", "polygon": [[200, 0], [300, 0], [300, 50]]}]}, r"zones\[0\].polygon: zone 'far'"),
        ({"zones": [{"name": "corner", "polygon": [[161, 121], [300, 121], [300, 200]]}]}, r"zones\[0\].polygon"),
        ({"lines": [{"name": "gate", "points": [[-50, -1], [400, -1]]}]}, r"lines\[0\].points: line 'gate'"),
    ],
)
def test_a_zone_or_line_wholly_outside_the_frame_is_refused_before_any_output(
    tmp_path, detect_bundle, geometry, message
):
    write_video(tmp_path / "door.mp4", "red", n=2)
    cam = _camera(bundle=str(detect_bundle), scenario_config=geometry, sinks={"jsonl": "out.jsonl"})
    runner = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam])))
    with pytest.raises(EdgecamError, match=message + f".* outside the {W}x{H} frame"):
        runner.run(duration=30)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_zone_partly_inside_the_frame_is_kept(tmp_path, detect_bundle):
    write_video(tmp_path / "door.mp4", "red", n=2)
    zone = {"zones": [{"name": "edge", "polygon": [[100, 100], [400, 100], [400, 400], [100, 400]]}]}
    cam = _camera(bundle=str(detect_bundle), scenario_config=zone)
    summary = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam]))).run(duration=30)
    assert summary.cameras[0]["frames"] == 2 and summary.cameras[0]["error"] is None


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - name: a\n   source: [\n")
    with pytest.raises(EdgecamError, match="invalid YAML at line"):
        load_cameras_config(path)


def test_config_resolves_paths_relative_to_the_yaml_file(tmp_path, detect_bundle):
    write_video(tmp_path / "door.mp4", "red", n=1)
    cam = _camera(bundle=str(detect_bundle), sinks={"jsonl": "out/a.jsonl"}, max_fps=5, motion=True)
    config = load_cameras_config(write_config(tmp_path, [cam], http={"port": 0}))
    (door,) = config.cameras
    assert door.source == str(tmp_path / "door.mp4") and door.sinks.jsonl == tmp_path / "out/a.jsonl"
    assert door.max_fps == 5.0 and door.motion is not None and door.reconnect.backoff.max == 30.0
    assert config.http is not None and config.http.port == 0 and config.mqtt is None


# --- snapshots: bounded per camera, oldest pruned ------------------------------------------------------------


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8)  # incompressible: ~10 kB


def test_snapshots_keep_at_most_max_count_files_oldest_pruned(tmp_path):
    sink = SnapshotSink(tmp_path / "snaps", max_count=3)
    paths = [sink.save(_noise(i), Event("tamper", "cam", 1_700_000_000.0 + i)) for i in range(5)]
    assert [p.exists() for p in paths] == [False, False, True, True, True]
    assert (sink.count, sink.saved, sink.pruned) == (3, 5, 2)


def test_snapshots_stay_under_max_bytes_and_count_files_from_earlier_runs(tmp_path):
    folder = tmp_path / "snaps"
    first = SnapshotSink(folder, max_bytes=10**9)
    old = [first.save(_noise(i), Event("tamper", "cam", 1.0)) for i in range(3)]
    size = old[0].stat().st_size
    second = SnapshotSink(folder, max_bytes=int(size * 2.5))  # a restart with a tighter budget prunes at once
    assert second.count == 2 and not old[0].exists()
    second.save(_noise(9), Event("zone_enter", "cam", 2.0))
    assert second.count == 2 and second.bytes <= size * 2.5 and not old[1].exists()
    too_big = np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    assert second.save(too_big, Event("x", "c", 3.0)) is None and second.count == 2  # the others are kept


def test_http_gets_live_view_frames_and_metrics(tmp_path, tiny_bundle):
    write_video(tmp_path / "cam.mp4", "blue")
    cam = {"name": "cam", "source": "cam.mp4", "bundle": str(tiny_bundle)}
    runner = MultiCameraRunner(load_cameras_config(write_config(tmp_path, [cam], http={"port": 0})))
    runner.run(duration=60)
    jpeg, seq = runner.registry.camera("cam").wait_jpeg(0, timeout=0)
    assert seq >= 1 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)
    metrics = runner.telemetry.exposition().decode()
    device = runner.config.device_id  # none configured: the host name
    assert f'edgecam_frames_out_total{{camera="cam",device="{device}"}} {float(N_FRAMES)}' in metrics
    assert runner.http._server is None  # stopped with the run


def test_events_state_and_availability_reach_a_real_mqtt_broker(tmp_path, detect_bundle):
    from tests.runtime.test_mqtt import MOSQUITTO, Broker, Listener

    if MOSQUITTO is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; CI must run the MQTT tests")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Broker(tmp_path)
    broker.start()
    listener = Listener(broker.port, ["edgecam/#"])
    try:
        write_video(tmp_path / "door.mp4", "red")
        zone = {"zones": [{"name": "all", "polygon": WHOLE_FRAME}], "cooldown_seconds": 0, "min_track_hits": 2}
        cam = {"name": "door", "source": "door.mp4", "bundle": str(detect_bundle), "scenario": "security"}
        cam["scenario_config"] = zone
        config = write_config(
            tmp_path, [cam], mqtt={"host": "127.0.0.1", "port": broker.port, "qos": 1}, device={"id": "box1"}
        )
        MultiCameraRunner(load_cameras_config(config)).run(duration=60)
        event = json.loads(listener.wait("edgecam/box1/door/events").payload)
        assert event["kind"] == "zone_enter" and event["zone"] == "all"
        state = json.loads(listener.wait("edgecam/box1/door/state").payload)
        assert state["stats"]["frames_out"] >= 1 and "zones" in state["scenario"]
        listener.wait("edgecam/box1/door/availability", "online")
        listener.wait("edgecam/box1/door/availability", "offline")
        listener.wait("edgecam/box1/availability", "offline")
    finally:
        listener.close()
        broker.stop()
