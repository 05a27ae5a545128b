"""Reading `cameras.yaml` (or a mapping built in code) into a checked `RuntimeConfig`.

Two passes, both before a model loads or a thread starts: the pydantic models check every key's type and range, then
`parse_runtime_config` checks what needs the disk: sources exist, bundles load, the scenario and the tracker build
with the bundle's classes. Either way a mistake is one line naming the file, the camera and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.config.base import NAME, describe, first_error, key_path
from edgecam.runtime.config.cameras import CameraConfig, MqttConfig, RuntimeConfig
from edgecam.runtime.config.scenarios import SCENARIO_SETTINGS
from edgecam.runtime.device import check_device
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.redact import mask_text, mask_url
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.sources import is_image_source, is_live


# ---- errors ----------------------------------------------------------------------------------------------------
def _error(origin: str | Path, camera: str | None, key: str, what: str, fix: str | None) -> EdgecamError:
    where = f"camera {camera!r}: " if camera else ""
    text = f"{where}{key}: {what}" if key else f"{where}{what}"
    return EdgecamError(mask_text(" ".join(text.split())), path=origin, fix=fix)  # no camera password shown


def _wrap(origin: str | Path, camera: str, key: str, exc: EdgecamError) -> EdgecamError:
    """An error from a loader (bundle, scenario) re-issued under this file and camera."""
    inner = f"{exc.path}: {exc.message}" if exc.path else exc.message
    return _error(origin, camera, key, inner, exc.fix)


def validation_error(exc: ValidationError, origin: str | Path, data: Any) -> EdgecamError:
    """pydantic's report -> one line: `origin: camera 'door': scenario_config: zones[0].polygon: what (fix)`."""
    err = first_error(exc)
    what, fix, extra = describe(err)
    loc = list(err["loc"]) + ([extra] if extra else [])
    if err["type"] == "union_tag_invalid":
        loc, what = [*loc, "scenario"], f"unknown scenario {err['ctx']['tag']!r}"
        fix = f"use one of: {', '.join(sorted(SCENARIO_SETTINGS))}"
    camera = None
    if len(loc) >= 2 and loc[0] == "cameras" and isinstance(loc[1], int):
        index, loc = loc[1], loc[2:]
        if loc and loc[0] in SCENARIO_SETTINGS:
            loc = loc[1:]  # the discriminator's tag, not a key the user wrote
        raw = data["cameras"][index] if isinstance(data, dict) and isinstance(data.get("cameras"), list) else {}
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and NAME.match(name) and loc[:1] != ["name"]:
            camera = name
        else:
            loc = ["cameras", index, *loc]
    scenario = len(loc) > 1 and loc[0] == "scenario_config"
    key = f"scenario_config: {key_path(loc[1:])}" if scenario else key_path(loc)
    return _error(origin, camera, key, what, fix)


# ---- entry points ----------------------------------------------------------------------------------------------
def parse_runtime_config(data: Any, origin: str | Path, base_dir: Path) -> RuntimeConfig:
    """Validate a configuration mapping (from YAML or built from command-line flags) and check it against the disk.

    `origin` names the "file" in error messages; relative paths start at `base_dir`.
    """
    try:
        config = RuntimeConfig.model_validate(data, context={"base_dir": Path(base_dir)})
    except ValidationError as exc:
        raise validation_error(exc, origin, data) from None
    config._path = Path(origin)
    seen: set[str] = set()
    for i, cam in enumerate(config.cameras):
        if cam.name in seen:
            raise _error(
                origin,
                None,
                f"cameras[{i}].name",
                f"duplicate camera name {cam.name!r}",
                "give every camera its own name",
            )
        seen.add(cam.name)
        _check_camera(cam, origin)
    if config.mqtt is not None:
        _check_mqtt(config.mqtt, origin)
    outputs = [
        p
        for c in config.cameras
        for p in (c.sinks.video, c.sinks.images, c.sinks.jsonl, c.sinks.snapshots)
        if p is not None
    ]
    clash = next((p for p in outputs if outputs.count(p) > 1), None)
    if clash is not None:
        raise _error(origin, None, "sinks", f"two outputs write to {clash}", "give every camera its own output files")
    return config


def _check_camera(cam: CameraConfig, origin: str | Path) -> None:
    """What needs the disk: the source exists, bundles load, scenario and tracker build with the model's classes."""
    if not is_live(cam.source) and not Path(cam.source).exists():
        raise _error(
            origin, cam.name, "source", f"{cam.source} not found", "check the path (relative to the YAML file)"
        )
    _check_source_kind(cam, origin)
    try:  # the device is on this host: said now, with the file and camera, rather than when the model loads
        check_device(cam.backend, cam.device)
    except EdgecamError as exc:
        raise _wrap(origin, cam.name, "device", exc) from None
    try:
        manifest = load_bundle(cam.bundle)
    except EdgecamError as exc:
        raise _wrap(origin, cam.name, "bundle", exc) from None
    if cam.classifier is not None:
        try:
            task = load_bundle(cam.classifier).task
        except EdgecamError as exc:
            raise _wrap(origin, cam.name, "classifier", exc) from None
        if task != "classify":
            raise _error(
                origin, cam.name, "classifier", f"{cam.classifier} is a {task} bundle", "give a classify bundle"
            )
    try:  # built once here so an unknown class name fails now, with the file and camera named
        create_scenario(cam.scenario, cam.scenario_config, manifest.class_names, cam.name)
    except EdgecamError as exc:
        raise _wrap(origin, cam.name, "scenario_config", exc) from None
    if manifest.task == "detect":
        from edgecam.runtime.tracker import ByteTracker

        try:
            ByteTracker(**cam.tracker)
        except EdgecamError as exc:
            raise _wrap(origin, cam.name, "tracker", exc) from None


def _check_source_kind(cam: CameraConfig, origin: str | Path) -> None:
    """`sinks.images` needs images to name its files after (and must not overwrite them); `loop` replays videos."""
    folder = not is_live(cam.source) and is_image_source(cam.source)
    if cam.sinks.images is not None:
        if not folder:
            raise _error(
                origin, cam.name, "sinks.images", f"{mask_url(cam.source)} is not an image folder",
                "use sinks.video for a video file or camera",
            )  # fmt: skip
        src = Path(cam.source)
        inputs = src if src.is_dir() else src.parent
        if cam.sinks.images.resolve() == inputs.resolve():
            raise _error(
                origin, cam.name, "sinks.images", "is the source folder: the input images would be overwritten",
                "write the annotated images to another folder",
            )  # fmt: skip
    if cam.loop and folder:
        raise _error(origin, cam.name, "loop", "an image folder cannot be looped", "drop `loop:`; it is for videos")


def _check_mqtt(mqtt: MqttConfig, origin: str | Path) -> None:
    """The password's environment variable is set and the TLS files exist: a device must not start and only then
    find out it cannot log in. The message names the variable, never its value."""
    if mqtt.password_env is not None and os.environ.get(mqtt.password_env) is None:
        raise _error(
            origin,
            None,
            "mqtt.password_env",
            f"environment variable {mqtt.password_env} is not set",
            f"export {mqtt.password_env}=... in the service's environment (the password stays out of the YAML)",
        )
    if mqtt.tls is not None:
        for key in ("ca", "cert", "key"):
            path = getattr(mqtt.tls, key)
            if path is not None and not path.is_file():
                raise _error(
                    origin, None, f"mqtt.tls.{key}", f"{path} not found", "check the path (relative to the YAML file)"
                )


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's contents; an unreadable file or bad YAML is one EdgecamError naming the file (and the line)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EdgecamError(f"cannot read the {what}: {exc.strerror}", path=path, fix="check the path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise EdgecamError(f"invalid YAML{line}", path=path, fix="check the indentation and quoting") from None


def load_cameras_config(path: str | Path) -> RuntimeConfig:
    """Read and validate a cameras YAML file (bundles' manifests are read, scenarios are built once to check)."""
    path = Path(path)
    raw = read_yaml(path, "config")
    if raw is None:
        raw = {}
    return parse_runtime_config(raw, path, path.parent)
