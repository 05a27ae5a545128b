"""docs/configuration.md and the JSON Schemas, generated from the models so the reference cannot drift from the code.

`python -m edgecam.runtime.config.docs --out docs/configuration.md` (or `make docs`) rewrites the page; a test fails
when the committed page differs from what the models generate.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from edgecam.runtime.config.cameras import (
    BackoffSettings,
    CameraConfig,
    DeviceConfig,
    EngineConfig,
    HttpConfig,
    MotionSettings,
    MqttConfig,
    MqttTlsSettings,
    ReconnectSettings,
    RuntimeConfig,
    SinkConfig,
    TrackerSettings,
)
from edgecam.runtime.config.scenarios import (
    LineSettings,
    OcclusionSettings,
    RetailSettings,
    RowSettings,
    SecuritySettings,
    SlotSettings,
    TamperSettings,
    ZoneSettings,
)
from edgecam.runtime.manifest import FileEntry, Manifest, VariantManifest

SCHEMAS: dict[str, type[BaseModel]] = {"cameras": RuntimeConfig, "manifest": Manifest}

# (where the keys sit, model): the page's sections, in reading order.
CAMERA_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("cameras.yaml", RuntimeConfig),
    ("engine", EngineConfig),
    ("device", DeviceConfig),
    ("mqtt", MqttConfig),
    ("mqtt.tls", MqttTlsSettings),
    ("http", HttpConfig),
    ("cameras[]", CameraConfig),
    ("cameras[].sinks", SinkConfig),
    ("cameras[].motion", MotionSettings),
    ("cameras[].reconnect", ReconnectSettings),
    ("cameras[].reconnect.backoff", BackoffSettings),
    ("cameras[].tracker", TrackerSettings),
    ("scenario_config (scenario: security)", SecuritySettings),
    ("scenario_config.zones[]", ZoneSettings),
    ("scenario_config.lines[]", LineSettings),
    ("scenario_config.tamper", TamperSettings),
    ("scenario_config (scenario: retail)", RetailSettings),
    ("scenario_config.slots[]", SlotSettings),
    ("scenario_config.rows[]", RowSettings),
    ("scenario_config.occlusion", OcclusionSettings),
]
MANIFEST_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("edgecam.json", Manifest),
    ("variants.<name>", VariantManifest),
    ("variants.<name>.files.<path>", FileEntry),
]

INTRO = """# Configuration reference

Generated from the pydantic models in `runtime/config/` and `runtime/manifest.py` by `make docs`; do not edit by
hand. `edgecam schema cameras` and `edgecam schema manifest` print the same information as JSON Schema (for editors
and CI checks). In `cameras.yaml`, relative paths start at the YAML file's folder, and a key not listed here is an
error. `scenario: none` takes no `scenario_config`. Pixel coordinates are those of the frame as processed (after
`resolution`), x to the right and y down.
"""

MANIFEST_INTRO = """## Bundle manifest (`edgecam.json`)

Written by `edgecam export`; the runtime reads the keys below and keeps any others as written (exporters add keys
over time, and `schema_version` is what marks a manifest this edgecam cannot read).
"""


def schema_json(name: str) -> str:
    """The JSON Schema of `cameras` or `manifest`, as printed by `edgecam schema`."""
    return json.dumps(SCHEMAS[name].model_json_schema(), indent=2) + "\n"


def _anchor(model: str) -> str:
    return model.lower()


CAMERAS = {"SecurityCamera", "RetailCamera", "NoScenarioCamera"}  # one camera, its scenario_config typed per scenario
SCENARIOS = "[security](#securitysettings) or [retail](#retailsettings) settings, or none for `scenario: none`"


def _ref(p: dict[str, Any]) -> str:
    return p.get("$ref", "").rsplit("/", 1)[-1]


def _type(p: dict[str, Any]) -> str:
    if _ref(p) == "ScenarioSettings":
        return SCENARIOS
    if "$ref" in p:
        return f"[{_ref(p)}](#{_anchor(_ref(p))})"
    if p.get("oneOf") and all(_ref(x) in CAMERAS for x in p["oneOf"]):
        return "[camera](#cameraconfig)"
    for union in ("anyOf", "oneOf"):
        if union in p:
            return " or ".join(_type(x) for x in p[union])
    if "const" in p:
        return f"`{json.dumps(p['const'])}`"
    if "enum" in p:
        return " or ".join(f"`{json.dumps(e)}`" for e in p["enum"])
    kind = p.get("type")
    if kind == "array":
        if "prefixItems" in p:
            return "[" + ", ".join(_type(x) for x in p["prefixItems"]) + "]"
        item = _type(p["items"]) if "items" in p else ""
        return f"list of ({item})" if " or " in item else (f"list of {item}" if item else "list")
    if kind == "object":
        extra = p.get("additionalProperties")
        return f"mapping of {_type(extra)}" if isinstance(extra, dict) and extra else "mapping"
    if kind == "string" and p.get("format") == "path":
        return "path"
    return str(kind) if kind else "any"


def _limits(p: dict[str, Any]) -> list[str]:
    found = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in p:
            found.append(f"{sign} {p[key]:g}")
    for part in p.get("anyOf", []):
        found += _limits(part)
    return found


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its defaults"
    return f"`{json.dumps(to_jsonable_python(value))}`"


def _section(where: str, model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    lines = [f'<a id="{_anchor(model.__name__)}"></a>', f"### `{where}` ({model.__name__})", ""]
    if model.__doc__:
        lines += [" ".join(model.__doc__.split()), ""]
    props = schema.get("properties", {})
    if not props:
        return "\n".join([*lines, "No keys.", ""])
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, p in props.items():
        kind = ", ".join([_type(p), *_limits(p)]).replace("|", "\\|")
        text = p.get("description", "").replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | {_default(model, name)} | {text} |")
    return "\n".join([*lines, ""])


def render() -> str:
    """The whole reference page."""
    parts = [INTRO, "## `cameras.yaml`\n"]
    parts += [_section(where, model) for where, model in CAMERA_SECTIONS]
    parts += [MANIFEST_INTRO]
    parts += [_section(where, model) for where, model in MANIFEST_SECTIONS]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write docs/configuration.md from the configuration models")
    parser.add_argument("--out", type=Path, default=Path("docs/configuration.md"))
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
