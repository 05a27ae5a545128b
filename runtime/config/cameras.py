"""`cameras.yaml` as typed models: what `edgecam run --config` (or a one-camera command line) runs.

These check every key's type and range without touching the disk; `loader.py` reads the file, adds the checks that
need the disk and turns validation errors into one-line `EdgecamError`s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from edgecam.runtime.backends import backend_names
from edgecam.runtime.backends.base import PERFORMANCE_MODES as MODES
from edgecam.runtime.config.base import (
    NAME,
    ROI,
    Bool,
    Float,
    Int,
    Polygon,
    StrictModel,
    fail,
    resolve,
)
from edgecam.runtime.config.scenarios import (
    NoScenarioSettings,
    RetailSettings,
    ScenarioSettings,
    SecuritySettings,
)
from edgecam.runtime.device import device_problem, device_string
from edgecam.runtime.device_id import DEVICE_ID, default_device_id
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.motion import MotionConfig
from edgecam.runtime.reconnect import Backoff, ReconnectPolicy
from edgecam.runtime.redact import mask_url
from edgecam.runtime.sinks.auth import MIN_TOKEN, TOKEN_ENV, is_loopback
from edgecam.runtime.sources import is_live

MAX_RESOLUTION = 8192  # pixels per side a camera can be resized to


class SinkConfig(StrictModel):
    """Per-camera outputs; relative paths start at the config file's folder."""

    video: Path | None = Field(None, description="annotated video file, .mp4 (mp4v) or .avi (MJPG)")
    images: Path | None = Field(
        None,
        description="image-folder sources: folder for one annotated image per input image, under the input's name "
        "(.jpg when its extension cannot be written)",
    )
    jsonl: Path | None = Field(None, description="per-frame results and events as JSON lines")
    snapshots: Path | None = Field(None, description="folder for JPEG snapshots of alert events")
    snapshot_max_count: Int = Field(200, ge=1, description="snapshots kept at most (oldest pruned first)")
    snapshot_max_mb: Float = Field(50.0, ge=0.01, description="snapshot folder size kept at most, in MB")

    @field_validator("video", "images", "jsonl", "snapshots", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("video", "images", "jsonl", "snapshots")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve(value, info.context)

    @field_validator("video")
    @classmethod
    def _video_suffix(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in (".mp4", ".avi"):
            raise fail(f"{value.name} is not .mp4 or .avi", "use .mp4 (mp4v) or .avi (MJPG)")
        return value


class MotionSettings(StrictModel):
    """Skip inference while nothing moves; `motion: true` takes every default."""

    method: Literal["mog2", "diff"] = Field("mog2", description="background subtraction (mog2) or frame difference")
    min_area: Float = Field(0.005, ge=0, le=1, description="share (0..1) of the unmasked pixels that must change")
    max_skip_seconds: Float = Field(5.0, ge=0, description="a frame is processed at least this often, seconds")
    mask: tuple[Polygon, ...] = Field(
        (), description="polygons [[x, y], ...] in frame pixels whose changes mean nothing (a clock, trees)"
    )
    width: Int = Field(160, ge=16, description="analysis width in pixels (frames are downscaled to it)")
    threshold: Float | None = Field(
        None,
        ge=0,
        description="grey-level change (diff) or squared Mahalanobis distance (mog2) that counts; default 25 / 16",
    )

    def to_motion_config(self) -> MotionConfig:
        """What `MotionGate` runs on."""
        return MotionConfig(**self.model_dump())


class BackoffSettings(StrictModel):
    """Delay before reconnect attempt n: initial * factor**n, spread by +-jitter, capped at early_max for the first
    early_seconds of an outage (a rebooting camera is back in frames within ~early_max of its return), at max after
    (a camera gone for long is probed rarely). See runtime/reconnect.py."""

    initial: Float = Field(0.5, gt=0, description="first delay, seconds")
    factor: Float = Field(2.0, ge=1, description="growth per failed attempt")
    max: Float = Field(30.0, gt=0, description="longest delay once the outage is older than early_seconds, seconds")
    jitter: Float = Field(0.2, ge=0, lt=1, description="random spread as a fraction of the delay (0..1)")
    early_max: Float = Field(
        2.0, gt=0, description="longest delay during the first early_seconds of an outage (max if lower), seconds"
    )
    early_seconds: Float = Field(
        300.0, ge=0, description="how long an outage counts as short (the camera expected back), seconds; 0: off"
    )

    @model_validator(mode="after")
    def _order(self) -> BackoffSettings:
        if self.max < self.initial:
            raise fail(f"max {self.max:g} is below initial {self.initial:g}", "use max >= initial", key="max")
        return self


class ReconnectSettings(StrictModel):
    """When a live source counts as lost, and how it is reopened."""

    stall_seconds: Float = Field(5.0, ge=0.1, description="no frame for this long and the stream is lost, seconds")
    max_failures: Int = Field(25, ge=1, description="failed reads in a row that also mean lost")
    max_attempts: Int | None = Field(None, ge=1, description="reopenings in a row before giving up; null: forever")
    backoff: BackoffSettings = Field(default_factory=BackoffSettings, description="waits between reopenings")

    @field_validator("backoff", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    def to_policy(self) -> ReconnectPolicy:
        """What the live source's reconnector runs on."""
        backoff = Backoff(**self.backoff.model_dump())
        return ReconnectPolicy(self.stall_seconds, self.max_failures, backoff, self.max_attempts)


class TrackerSettings(StrictModel):
    """ByteTracker settings (detection bundles). A mapping too: `ByteTracker(**settings)`."""

    high_thresh: Float = Field(0.5, ge=0, le=1, description="detections at least this sure match in stage 1")
    low_thresh: Float = Field(0.1, ge=0, le=1, description="weaker detections down to this keep existing tracks")
    new_track_thresh: Float = Field(0.6, ge=0, le=1, description="score an unmatched detection needs to start a track")
    match_iou: Float = Field(0.3, gt=0, le=1, description="IoU gate of the first (high-score) matching stage")
    low_match_iou: Float = Field(0.5, gt=0, le=1, description="IoU gate of the second (low-score) matching stage")
    min_hits: Int = Field(3, ge=1, description="matches in a row before a track is confirmed")
    max_lost: Float = Field(1.0, ge=0, description="a lost track is dropped after this long unmatched, seconds")
    class_aware: Bool = Field(True, description="a box only matches a track of its own class")
    history: Int = Field(64, ge=1, description="ground points kept per track")
    max_lost_frames: Int | None = Field(
        None, ge=0, description="drop after this many unmatched frames instead of `max_lost` seconds"
    )
    motion_gate: Float = Field(
        9.4877,
        ge=0,
        description="third stage: boxes IoU left unmatched match by Mahalanobis distance to the track's prediction, "
        "up to this chi-square value (9.49: 95 %); 0 = off",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> TrackerSettings:
        if self.low_thresh > self.high_thresh:
            raise fail(
                f"{self.low_thresh:g} is above high_thresh {self.high_thresh:g}",
                "use low_thresh <= high_thresh",
                key="low_thresh",
            )
        return self

    def keys(self) -> tuple[str, ...]:
        return tuple(type(self).model_fields)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class CameraConfig(StrictModel):
    """One camera: where frames come from, which model runs, the rules and the outputs."""

    name: str = Field(description="letters, digits, _ - . (used in MQTT topics, URLs and file names)")
    source: str = Field(description="video file, image folder, camera index, rtsp:// or http(s):// URL")
    bundle: Path = Field(description="bundle folder from `edgecam export`; cameras naming the same one share a model")
    backend: str = Field("openvino", description=f"inference engine: {' | '.join(backend_names())}")
    device: str | None = Field(
        None,
        description="where the backend runs the model: OpenVINO device (CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU) or "
        "ONNX Runtime execution provider (cpu, cuda, tensorrt, openvino, or a full ...ExecutionProvider name); "
        "null: the CPU. A device this host lacks stops the run at start (never a quiet CPU fallback)",
    )
    variant: str | None = Field(None, description="bundle variant; default: the manifest's first the backend runs")
    classifier: Path | None = Field(None, description="second (classify) bundle: tamper or slot states")
    scenario: Literal["security", "retail", "none"] = Field("none", description="the rules turning results into events")
    scenario_config: ScenarioSettings = Field(
        default_factory=NoScenarioSettings, description="the scenario's settings (see its section below)"
    )
    tracker: TrackerSettings = Field(default_factory=TrackerSettings, description="tracker settings")
    rois: tuple[ROI, ...] = Field(
        (), description="classifier regions [x, y, w, h]; default: the scenario's slots or the whole frame"
    )
    max_fps: Float | None = Field(None, ge=0.01, description="process at most this many frames per second")
    stride: Int = Field(1, ge=1, description="process every n-th frame")
    loop: Bool = Field(
        False,
        description="video files: start again at the end, forever (frame index and time run on); "
        "stop with Ctrl-C, SIGTERM or --duration",
    )
    resolution: tuple[int, int] | None = Field(
        None, description=f"resize frames to [width, height] pixels (8 to {MAX_RESOLUTION} per side)"
    )
    motion: MotionSettings | None = Field(
        None,
        description="motion gate: skip inference while nothing moves; `true` for the defaults, null or false: off",
        json_schema_extra=lambda schema: schema["anyOf"].append({"type": "boolean"}),
    )
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings, description="live source reconnection")
    sinks: SinkConfig = Field(default_factory=SinkConfig, description="outputs")
    track: bool = Field(True, description="detection bundles: follow boxes with the tracker (track ids, scenarios)")
    conf: Float | None = Field(
        None, ge=0, le=1, description="detection bundles: score threshold; null: the bundle manifest's"
    )
    iou: Float | None = Field(
        None, ge=0, le=1, description="detection bundles: NMS IoU threshold; null: the manifest's"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        """`motion: true`, empty sections, a numeric camera index; the scenario's `min_track_hits` for the tracker."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("scenario_config", "tracker", "reconnect", "sinks"):
            if key in data and data[key] is None:
                data[key] = {}
        if data.get("motion") is True:
            data["motion"] = {}
        elif data.get("motion") is False:
            data["motion"] = None
        source = data.get("source")
        if isinstance(source, int) and not isinstance(source, bool):
            data["source"] = str(source)
        hits = (
            data.get("scenario_config", {}).get("min_track_hits")
            if isinstance(data.get("scenario_config"), dict)
            else None
        )
        tracker = data.get("tracker", {})
        if hits is not None and isinstance(tracker, dict) and "min_hits" not in tracker:
            data["tracker"] = {**tracker, "min_hits": hits}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise fail(f"got {value!r}", "use letters, digits, '_', '-' or '.'")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            raise fail("missing", "give a video file, image folder, camera index or rtsp:// / http:// URL")
        if "://" in value and not is_live(value):  # a misspelt scheme is no file name: say so, password masked
            raise fail(f"unsupported URL {mask_url(value)}", "use an rtsp://, rtsps://, http:// or https:// URL")
        return value if is_live(value) else str(resolve(Path(value), info.context))

    @field_validator("loop")
    @classmethod
    def _loop(cls, value: bool, info: ValidationInfo) -> bool:
        source = info.data.get("source")
        if value and isinstance(source, str) and is_live(source):
            raise fail(f"a live source ({mask_url(source)}) cannot be replayed", "drop `loop:`; it is for video files")
        return value

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in backend_names():
            raise fail(f"unknown backend {value!r}", f"use one of {backend_names()}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None, info: ValidationInfo) -> str | None:
        backend = info.data.get("backend")
        if value is None or backend is None:
            return value
        problem = device_problem(backend, value)
        if problem:
            raise fail(problem, "see `edgecam devices`; e.g. CPU, GPU, NPU for openvino, cpu, cuda for onnxruntime")
        return device_string(backend, value)

    @field_validator("bundle", "classifier")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve(value, info.context)

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, value: Any) -> Any:
        ok = isinstance(value, (list, tuple)) and len(value) == 2
        if value is not None and not (ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise fail(f"got {value!r}", "use [width, height] in pixels, e.g. [640, 360]")
        if value is not None and min(value) < 8:
            raise fail(f"got {value!r}", "use at least 8 pixels per side")
        if value is not None and max(value) > MAX_RESOLUTION:  # one 100000 x 100000 frame alone is 28 GiB
            raise fail(f"got {value!r}", f"use at most {MAX_RESOLUTION} pixels per side (8K is 7680 x 4320)")
        return value


class SecurityCamera(CameraConfig):
    scenario: Literal["security"] = Field(description="zones, counting lines and camera tamper")
    scenario_config: SecuritySettings = Field(default_factory=SecuritySettings, description="security settings")


class RetailCamera(CameraConfig):
    scenario: Literal["retail"] = Field(description="shelf slots: stock state, out-of-stock, planogram")
    scenario_config: RetailSettings = Field(description="retail settings (slots or rows are required)")


class NoScenarioCamera(CameraConfig):
    scenario: Literal["none"] = Field("none", description="no rules: record and stream results only")
    scenario_config: NoScenarioSettings = Field(default_factory=NoScenarioSettings, description="takes no settings")


AnyCamera = Annotated[SecurityCamera | RetailCamera | NoScenarioCamera, Field(discriminator="scenario")]


class MqttTlsSettings(StrictModel):
    """TLS to the broker: `ca` alone verifies the broker; `cert` with `key` also presents a client certificate."""

    ca: Path | None = Field(None, description="CA certificate (PEM) to verify the broker with; null: the system's CAs")
    cert: Path | None = Field(None, description="client certificate (PEM), for brokers that require one; needs `key`")
    key: Path | None = Field(None, description="the client certificate's private key (PEM, unencrypted)")

    @field_validator("ca", "cert", "key")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve(value, info.context)  # their existence is checked by the loader (it reads the disk)

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsSettings:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise fail("missing", "a client certificate needs both `cert` and `key`", key=missing)
        return self


class DeviceConfig(StrictModel):
    """This device among many on one broker and one Prometheus: its id is a topic level and a metric label."""

    id: str | None = Field(
        None,
        description="letters, digits, _ - . (at most 64): MQTT topics `<prefix>/<id>/<camera>/...` and the `device` "
        "label of every metric; null: the host name (other characters become _)",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not DEVICE_ID.match(value):
            raise fail(
                f"got {value!r}",
                "use letters, digits, '_', '-' or '.' (no '/', '+', '#' or spaces: it is one MQTT topic level)",
            )
        return value


class MqttConfig(StrictModel):
    """Events and state to an MQTT broker under `<prefix>/<device>/<camera>/...`."""

    host: str = Field(min_length=1, description="the broker's host name or address")
    port: Int = Field(1883, ge=1, le=65535, description="the broker's TCP port (usually 8883 with `tls`)")
    prefix: str = Field("edgecam", min_length=1, description="topic prefix (no wildcards)")
    qos: Int = Field(1, ge=0, le=2, description="MQTT quality of service: 0, 1 or 2")
    username: str | None = Field(None, min_length=1, description="user name for brokers that require a login")
    password_env: str | None = Field(
        None,
        min_length=1,
        description="name of the environment variable holding the password (never the password itself); "
        "needs `username`",
    )
    tls: MqttTlsSettings | None = Field(None, description="connect with TLS; null: plain TCP")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "#" in value or "+" in value:
            raise fail(f"got {value!r}", "use a topic prefix without wildcards, e.g. edgecam")
        return value

    @model_validator(mode="after")
    def _login(self) -> MqttConfig:
        if self.password_env is not None and self.username is None:
            raise fail("a password needs a user name", "add `username:` or remove `password_env:`", key="username")
        return self

    def password(self) -> str | None:
        """The password from the environment variable `password_env`, read when needed and never stored here, so
        no dump of the configuration can carry it. The loader checks at load time that the variable is set."""
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise EdgecamError(
                f"mqtt.password_env: environment variable {self.password_env} is not set",
                fix=f"export {self.password_env}=... before starting edgecam (or unset password_env)",
            )
        return value


class HttpConfig(StrictModel):
    """The live view, `/api` and Prometheus `/metrics`.

    The token is read from the environment, never from this file (which is often shared or kept in git), as Frigate
    takes its secrets from `FRIGATE_*` variables. Loopback binds need none; once set, it is required on every bind.
    """

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address to bind; 0.0.0.0 for every interface (any address but loopback needs the token)",
    )
    port: Int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one")
    token_env: str = Field(
        TOKEN_ENV,
        description=(
            "environment variable holding the access token (at least 16 characters). When set, every path but "
            "/health needs `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`), "
            "`?token=<token>` on the URL, or the browser session that opening /?token=<token> starts"
        ),
    )
    timeout: Float = Field(
        10.0,
        gt=0,
        le=3600,
        description="seconds a client may take to send its request (then it is closed), and to take an answer",
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise fail(f"got {value!r}", f"use the name of an environment variable, e.g. {TOKEN_ENV}")
        return value

    @model_validator(mode="after")
    def _token_checks(self) -> HttpConfig:
        token = self.token()
        if token is not None and len(token) < MIN_TOKEN:
            raise fail(
                f"${self.token_env} is {len(token)} characters long",
                f"use at least {MIN_TOKEN}, e.g. `export {self.token_env}=$(openssl rand -hex 24)`",
                key="token_env",
            )
        if token is None and not is_loopback(self.host):
            raise fail(
                f"{self.host} is reachable from the network and ${self.token_env} is not set",
                f"export {self.token_env}=$(openssl rand -hex 24) before starting, or bind 127.0.0.1",
                key="host",
            )
        return self

    def token(self) -> str | None:
        """The token from the environment; None when unset or empty. Never stored in the model or printed."""
        return os.environ.get(self.token_env) or None


class EngineConfig(StrictModel):
    """How each shared model (one per bundle, backend, device and variant) runs."""

    workers: Int = Field(2, ge=1, description="infer requests (OpenVINO) or pool threads (ONNX Runtime) per model")
    threads: Int | None = Field(None, ge=1, description="inference threads per model; null: the runtime's default")
    mode: Literal[MODES] = Field(  # type: ignore[valid-type]  # the backends' own list of hints
        "latency", description="OpenVINO performance hint: throughput runs CPU streams side by side"
    )


class RuntimeConfig(StrictModel):
    """A whole `cameras.yaml`: the cameras, and optionally MQTT, HTTP and the shared engines' settings."""

    cameras: tuple[AnyCamera, ...] = Field(description="the cameras, each with its own name")
    mqtt: MqttConfig | None = Field(None, description="publish events and state to a broker; null: off")
    http: HttpConfig | None = Field(None, description="serve the live view, API and metrics; null: off")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="shared inference engines")
    device: DeviceConfig = Field(
        default_factory=DeviceConfig, description="which device this is, in MQTT topics and metric labels"
    )
    _path: Path = PrivateAttr(default=Path("cameras.yaml"))

    @field_validator("cameras", mode="before")
    @classmethod
    def _cameras(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value or not all(isinstance(c, dict) for c in value):
            raise fail("expected a non-empty list of cameras", "write each as `- name: ...` under cameras")
        return [{"scenario": "none", **c} for c in value]  # the discriminator needs the key

    @field_validator("engine", "device", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def path(self) -> Path:
        """The file (or origin) this configuration came from."""
        return self._path

    @property
    def device_id(self) -> str:
        """`device.id`, or this machine's host name made topic-safe (read now, so a renamed host takes its name)."""
        return self.device.id or default_device_id()

    @property
    def workers(self) -> int:
        return self.engine.workers

    @property
    def threads(self) -> int | None:
        return self.engine.threads

    @property
    def mode(self) -> str:
        return self.engine.mode
