"""`cameras.yaml` -> a validated `RuntimeConfig` for `edgecam run --config`.

Everything is checked before a model loads or a thread starts: a typo fails at once with one line naming the YAML
file, the camera and the key (`cameras.yaml: camera 'door': scenario_config: scenario 'security': zones[0].polygon:
...`), not an hour later mid-run. Relative paths are relative to the YAML file. The schema, every key shown:

    engine: {workers: 2, threads: 2, mode: latency}  # per shared model: infer requests / pool threads, inference
                                            #   threads, OpenVINO hint (throughput: CPU streams side by side)
    mqtt: {host: 127.0.0.1, port: 1883, prefix: edgecam, qos: 1}   # optional
    http: {host: 127.0.0.1, port: 8080}     # optional: live view, /api, /metrics
    cameras:
      - name: door                          # letters, digits, _ - . (used in topics, URLs, file names)
        source: rtsp://10.0.0.5/stream1     # video file, image folder, camera index, rtsp:// or http(s):// URL
        bundle: bundles/person-detector     # cameras naming the same bundle share one loaded model
        variant: openvino-int8              # optional; default: the manifest's first the backend runs
        backend: openvino                   # or onnxruntime
        classifier: bundles/tamper          # optional second (classify) bundle: tamper or slot states
        rois: [[0, 0, 64, 64]]              # optional classifier regions; default: the scenario's rois() or
                                            #   the whole frame
        scenario: security                  # security | retail | none
        scenario_config: {zones: [{name: door, polygon: [[0, 0], [200, 0], [200, 150]]}]}
        tracker: {max_lost: 1.0}            # optional ByteTracker settings (detection bundles)
        max_fps: 10                         # optional
        stride: 1
        resolution: [640, 360]              # optional: frames are resized to [width, height]
        motion: {method: mog2, min_area: 0.005, max_skip_seconds: 5, mask: [[[0, 0], [200, 0], [200, 24]]]}
        reconnect: {stall_seconds: 5, max_attempts: null, backoff: {initial: 0.5, factor: 2, max: 30, jitter: 0.2}}
        sinks: {video: out/door.mp4, jsonl: out/door.jsonl, snapshots: out/door, snapshot_max_count: 200,
                snapshot_max_mb: 50}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgecam.runtime.backends import backend_names
from edgecam.runtime.backends.base import PERFORMANCE_MODES as MODES
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.motion import MotionConfig
from edgecam.runtime.reconnect import Backoff, ReconnectPolicy
from edgecam.runtime.scenarios import create_scenario, scenario_names
from edgecam.runtime.scenarios.geometry import validate_polygon, validate_roi
from edgecam.runtime.sources import is_live

ROI = tuple[int, int, int, int]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # safe in file names, MQTT topics and URLs
CAMERA_KEYS = (
    "name", "source", "bundle", "variant", "classifier", "backend", "scenario", "scenario_config", "tracker",
    "rois", "max_fps", "stride", "resolution", "motion", "reconnect", "sinks",
)  # fmt: skip
TOP_KEYS = ("cameras", "mqtt", "http", "engine")


@dataclass(frozen=True)
class SinkConfig:
    video: Path | None = None
    jsonl: Path | None = None
    snapshots: Path | None = None
    snapshot_max_count: int = 200
    snapshot_max_mb: float = 50.0


@dataclass(frozen=True)
class CameraConfig:
    name: str
    source: str
    bundle: Path
    backend: str = "openvino"
    variant: str | None = None
    classifier: Path | None = None
    scenario: str = "none"
    scenario_config: dict[str, Any] = field(default_factory=dict)
    tracker: dict[str, Any] = field(default_factory=dict)
    rois: tuple[ROI, ...] = ()
    max_fps: float | None = None
    stride: int = 1
    resolution: tuple[int, int] | None = None
    motion: MotionConfig | None = None
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    sinks: SinkConfig = field(default_factory=SinkConfig)
    track: bool = True  # detection bundles: follow boxes with the tracker (ids in the JSON lines, scenarios)
    conf: float | None = None  # detector thresholds; None = the manifest's
    iou: float | None = None


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int = 1883
    prefix: str = "edgecam"
    qos: int = 1


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class RuntimeConfig:
    path: Path
    cameras: tuple[CameraConfig, ...]
    mqtt: MqttConfig | None = None
    http: HttpConfig | None = None
    workers: int = 2  # infer requests (OpenVINO) or pool threads (ONNX Runtime) per shared model
    threads: int | None = None  # inference threads per model (None: the runtime's default)
    mode: str = "latency"  # OpenVINO performance hint of the shared engines: latency | throughput


class _Where:
    """Raises config errors naming the file, the camera and the key, all on one line."""

    def __init__(self, path: Path, camera: str | None = None) -> None:
        self.path, self.camera = path, camera

    def error(self, key: str, what: str, fix: str | None = None) -> EdgecamError:
        where = f"camera {self.camera!r}: " if self.camera else ""
        text = f"{where}{key}: {what}" if key else f"{where}{what}"
        return EdgecamError(" ".join(text.split()), path=self.path, fix=fix)

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A mapping (None -> {}); with `allowed`, unknown keys are refused (a typo must not mean "default")."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}", "write it as `key: value` lines")
        unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
        if unknown:
            raise self.error(f"{key}.{unknown[0]}" if key else str(unknown[0]), "unknown key", f"use: {allowed}")
        return value

    def number(
        self, raw: dict[str, Any], key: str, default: Any, low: float, integer: bool = False, where: str = ""
    ) -> Any:
        """`raw[key]` as a number >= low (None stays None); `where` prefixes the key in errors."""
        value = raw.get(key, default)
        if value is None:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or value < low or (integer and float(value) != int(value)):
            kind = "an integer" if integer else "a number"
            raise self.error(f"{where}{key}", f"got {value!r}", f"use {kind} >= {low:g}")
        return int(value) if integer else float(value)

    def path_of(self, value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"got {value!r}", "give a path (relative paths start at the YAML file's folder)")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def wrap(self, key: str, exc: EdgecamError) -> EdgecamError:
        """An error from a loader (bundle, scenario) re-issued under this file and camera."""
        inner = f"{exc.path}: {exc.message}" if exc.path else exc.message
        return self.error(key, inner, exc.fix)


def load_cameras_config(path: str | Path) -> RuntimeConfig:
    """Read and validate a cameras YAML file (bundles' manifests are read, scenarios are built once to check)."""
    path = Path(path)
    top = _Where(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgecamError(f"cannot read the config: {exc.strerror}", path=path, fix="check the path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise EdgecamError(f"invalid YAML{line}", path=path, fix="check the indentation and quoting") from None
    raw = top.mapping(raw, "", TOP_KEYS)
    cams = raw.get("cameras")
    if not isinstance(cams, list) or not cams or not all(isinstance(c, dict) for c in cams):
        raise top.error("cameras", "expected a non-empty list of cameras", "write each as `- name: ...` under cameras")
    cameras: list[CameraConfig] = []
    for i, cam in enumerate(cams):
        name = cam.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise top.error(f"cameras[{i}].name", f"got {name!r}", "use letters, digits, '_', '-' or '.'")
        if any(c.name == name for c in cameras):
            raise top.error(f"cameras[{i}].name", f"duplicate camera name {name!r}", "give every camera its own name")
        cameras.append(_camera(cam, _Where(path, name)))
    outputs = [p for c in cameras for p in (c.sinks.video, c.sinks.jsonl, c.sinks.snapshots) if p is not None]
    clash = next((p for p in outputs if outputs.count(p) > 1), None)
    if clash is not None:
        raise top.error("sinks", f"two outputs write to {clash}", "give every camera its own output files")
    engine = top.mapping(raw.get("engine"), "engine", ("workers", "threads", "mode"))
    mode = engine.get("mode", "latency")
    if mode not in MODES:
        raise top.error("engine.mode", f"got {mode!r}", f"use one of {', '.join(MODES)}")
    return RuntimeConfig(
        path=path,
        cameras=tuple(cameras),
        mqtt=_mqtt(raw["mqtt"], top) if raw.get("mqtt") is not None else None,
        http=_http(raw["http"], top) if raw.get("http") is not None else None,
        workers=top.number(engine, "workers", 2, 1, integer=True, where="engine."),
        threads=top.number(engine, "threads", None, 1, integer=True, where="engine."),
        mode=mode,
    )


def _camera(raw: dict[str, Any], at: _Where) -> CameraConfig:
    raw = at.mapping(raw, "", CAMERA_KEYS)
    source = raw.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)
    if not isinstance(source, str) or not source:
        raise at.error("source", "missing", "give a video file, image folder, camera index or rtsp:// / http:// URL")
    if not is_live(source):
        source_path = at.path_of(source, "source")
        if not source_path.exists():
            raise at.error("source", f"{source_path} not found", "check the path (relative to the YAML file)")
        source = str(source_path)
    backend = raw.get("backend", "openvino")
    if backend not in backend_names():
        raise at.error("backend", f"unknown backend {backend!r}", f"use one of {backend_names()}")
    bundle = at.path_of(raw.get("bundle"), "bundle")
    try:
        manifest = load_bundle(bundle)
    except EdgecamError as exc:
        raise at.wrap("bundle", exc) from None
    classifier = at.path_of(raw["classifier"], "classifier") if raw.get("classifier") is not None else None
    if classifier is not None:
        try:
            task = load_bundle(classifier).task
        except EdgecamError as exc:
            raise at.wrap("classifier", exc) from None
        if task != "classify":
            raise at.error("classifier", f"{classifier} is a {task} bundle", "give a classify bundle")
    scenario = raw.get("scenario", "none")
    if scenario not in scenario_names():
        raise at.error("scenario", f"unknown scenario {scenario!r}", f"use one of: {', '.join(scenario_names())}")
    scenario_config = at.mapping(raw.get("scenario_config"), "scenario_config")  # keys: the scenario checks
    try:  # built once here so a bad zone or slot fails now, with the file and camera named
        create_scenario(scenario, scenario_config, manifest.class_names, at.camera or "")
    except EdgecamError as exc:
        raise at.wrap("scenario_config", exc) from None
    rois = raw.get("rois") or []
    if not isinstance(rois, list):
        raise at.error("rois", f"got {rois!r}", "use a list of [x, y, w, h]")
    try:
        roi_list = tuple(validate_roi(r, f"rois[{i}]") for i, r in enumerate(rois))
    except EdgecamError as exc:
        raise at.wrap("", exc) from None
    resolution = raw.get("resolution")
    if resolution is not None:
        if not isinstance(resolution, list) or len(resolution) != 2 or not all(isinstance(v, int) for v in resolution):
            raise at.error("resolution", f"got {resolution!r}", "use [width, height] in pixels, e.g. [640, 360]")
        if min(resolution) < 8:
            raise at.error("resolution", f"got {resolution!r}", "use at least 8 pixels per side")
    tracker = dict(at.mapping(raw.get("tracker"), "tracker"))  # keys: ByteTracker's own arguments
    if "min_track_hits" in scenario_config:  # the security scenario leaves this key to the tracker
        tracker.setdefault("min_hits", scenario_config["min_track_hits"])
    if manifest.task == "detect":
        from edgecam.runtime.tracker import ByteTracker  # built once to check, like the scenario

        try:
            ByteTracker(**tracker)
        except TypeError as exc:
            raise at.error("tracker", str(exc).replace("__init__() ", ""), "see ByteTracker's arguments") from None
        except EdgecamError as exc:
            raise at.wrap("tracker", exc) from None
    return CameraConfig(
        name=at.camera or "",
        source=source,
        bundle=bundle,
        backend=backend,
        variant=raw.get("variant"),
        classifier=classifier,
        scenario=scenario,
        scenario_config=dict(scenario_config),
        tracker=dict(tracker),
        rois=roi_list,
        max_fps=at.number(raw, "max_fps", None, 0.01),
        stride=at.number(raw, "stride", 1, 1, integer=True),
        resolution=(resolution[0], resolution[1]) if resolution else None,
        motion=_motion(raw.get("motion"), at),
        reconnect=_reconnect(raw.get("reconnect"), at),
        sinks=_sinks(raw.get("sinks"), at),
    )


def _motion(raw: Any, at: _Where) -> MotionConfig | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return MotionConfig()
    raw = at.mapping(raw, "motion", ("method", "min_area", "max_skip_seconds", "mask", "width", "threshold"))
    mask = raw.get("mask") or []
    try:
        polygons = [validate_polygon(p, f"motion.mask[{i}]") for i, p in enumerate(mask)]
    except EdgecamError as exc:
        raise at.wrap("", exc) from None
    try:
        return MotionConfig.from_dict({**raw, "mask": polygons})
    except (TypeError, ValueError) as exc:
        raise at.error("motion", str(exc), "see the motion keys in runtime/motion.py") from None


def _reconnect(raw: Any, at: _Where) -> ReconnectPolicy:
    raw = at.mapping(raw, "reconnect", ("stall_seconds", "max_failures", "max_attempts", "backoff"))
    back = at.mapping(raw.get("backoff"), "reconnect.backoff", ("initial", "factor", "max", "jitter"))
    try:
        backoff = Backoff(
            **{k: at.number(back, k, None, 0, where="reconnect.backoff.") for k in back if back[k] is not None}
        )
        return ReconnectPolicy(
            stall_seconds=at.number(raw, "stall_seconds", 5.0, 0.1, where="reconnect."),
            max_failures=at.number(raw, "max_failures", 25, 1, integer=True, where="reconnect."),
            backoff=backoff,
            max_attempts=at.number(raw, "max_attempts", None, 1, integer=True, where="reconnect."),
        )
    except EdgecamError as exc:
        raise at.wrap("reconnect", exc) from None


def _sinks(raw: Any, at: _Where) -> SinkConfig:
    raw = at.mapping(raw, "sinks", ("video", "jsonl", "snapshots", "snapshot_max_count", "snapshot_max_mb"))
    video = at.path_of(raw["video"], "sinks.video") if raw.get("video") else None
    if video is not None and video.suffix.lower() not in (".mp4", ".avi"):
        raise at.error("sinks.video", f"{video.name} is not .mp4 or .avi", "use .mp4 (mp4v) or .avi (MJPG)")
    return SinkConfig(
        video=video,
        jsonl=at.path_of(raw["jsonl"], "sinks.jsonl") if raw.get("jsonl") else None,
        snapshots=at.path_of(raw["snapshots"], "sinks.snapshots") if raw.get("snapshots") else None,
        snapshot_max_count=at.number(raw, "snapshot_max_count", 200, 1, integer=True, where="sinks."),
        snapshot_max_mb=at.number(raw, "snapshot_max_mb", 50.0, 0.01, where="sinks."),
    )


def _mqtt(raw: Any, at: _Where) -> MqttConfig:
    raw = at.mapping(raw, "mqtt", ("host", "port", "prefix", "qos"))
    host, prefix = raw.get("host"), raw.get("prefix", "edgecam")
    if not isinstance(host, str) or not host:
        raise at.error("mqtt.host", f"got {host!r}", "give the broker's host name or address")
    if not isinstance(prefix, str) or not prefix or "#" in prefix or "+" in prefix:
        raise at.error("mqtt.prefix", f"got {prefix!r}", "use a topic prefix without wildcards, e.g. edgecam")
    qos = at.number(raw, "qos", 1, 0, integer=True, where="mqtt.")
    if qos > 2:
        raise at.error("mqtt.qos", f"got {qos}", "use 0, 1 or 2")
    return MqttConfig(host, at.number(raw, "port", 1883, 1, integer=True, where="mqtt."), prefix, qos)


def _http(raw: Any, at: _Where) -> HttpConfig:
    raw = at.mapping(raw, "http", ("host", "port"))
    host = raw.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise at.error("http.host", f"got {host!r}", "give an address to bind, e.g. 127.0.0.1")
    return HttpConfig(host, at.number(raw, "port", 8080, 0, integer=True, where="http."))
