"""`edgecam.json`, a bundle's manifest, as a pydantic model: the keys the runtime relies on are typed and checked.

Why tolerant: exporters add keys over time (`parity`, `golden`, per-task sections) and a device may run a bundle
written by a newer edgecam of the same schema version, so keys this version does not know are kept, not refused.
`schema_version` is what says a manifest is too new.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecam.runtime.errors import EdgecamError

SCHEMA_VERSION = 1
REQUIRED = ("schema_version", "task", "class_names", "preprocess", "variants")
VARIANT_REQUIRED = ("format", "precision", "file", "files")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FileEntry(_Open):
    """One file of a variant, as `edgecam verify` checks it."""

    sha256: str = Field(description="hex SHA-256 of the file, checked by `edgecam verify`")
    size_bytes: int | None = Field(None, description="file size in bytes")


class VariantManifest(_Open):
    """One runnable form of the model; other keys (how it was quantized, ...) are kept as `Variant.extra`."""

    format: str = Field(description="onnx | openvino: which backends can run it")
    precision: str = Field(description="fp32 | fp16 | int8")
    file: str = Field(description="the model file, relative to the bundle folder")
    files: dict[str, FileEntry] = Field(description="every file of the variant (relative path -> checksum, size)")
    metrics: dict[str, Any] = Field(default_factory=dict, description="accuracy and parity measured at export")


class Manifest(_Open):
    """The manifest's keys the runtime reads; everything else is kept as written."""

    schema_version: int = Field(description=f"manifest format version; this edgecam reads up to {SCHEMA_VERSION}")
    task: Literal["classify", "detect"] = Field(description="what the model does")
    class_names: list[str] = Field(description="the model's classes, in output order")
    preprocess: dict[str, Any] = Field(description="input size, resize mode, colour order, normalisation")
    variants: dict[str, VariantManifest] = Field(description="the model files by variant name (e.g. openvino-int8)")
    default_variants: list[str] = Field(
        default_factory=list, description="variants to prefer, in order, when none is named"
    )
    # Their readers (runtime/model.py, runtime/verify.py) check these two with messages of their own.
    detect: Any = Field(None, description="detection bundles: box decoder and score / NMS thresholds")
    golden: Any = Field(None, description="reference frames and expected outputs for `edgecam verify`")
    edgecam_version: str | None = Field(None, description="the edgecam that wrote the bundle")
    manifest_sha256: str | None = Field(
        None,
        description="sha256 of this manifest's canonical JSON (sorted keys, compact separators) without this key, "
        "written by `write_manifest` and checked on every load; absent in bundles of earlier edgecam versions "
        "(accepted, with a warning from `edgecam run` and a note from `edgecam verify`)",
    )


def parse_manifest(data: Any) -> Manifest:
    """Validate a decoded `edgecam.json`; errors are `EdgecamError`s worded as before (the caller adds the path)."""
    if not isinstance(data, dict):
        raise EdgecamError("corrupt manifest: not a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise EdgecamError(f"manifest lacks {missing}")
    version = data["schema_version"]
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise EdgecamError(
            f"manifest schema {version} is newer than this edgecam ({SCHEMA_VERSION})",
            fix="upgrade edgecam on the device",
        )
    if data["task"] not in ("classify", "detect"):
        raise EdgecamError(f"unknown task {data['task']!r}")
    variants = data["variants"]
    if isinstance(variants, dict):
        for name, var in variants.items():
            lacking = sorted(set(VARIANT_REQUIRED) - set(var)) if isinstance(var, dict) else []
            if lacking:
                raise EdgecamError(f"variant {name!r} lacks {lacking}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise EdgecamError(f"malformed manifest: {where}: {err['msg']}") from None
    if not manifest.variants:
        raise EdgecamError("bundle lists no model variants")
    if not manifest.class_names:
        raise EdgecamError("class_names is empty: the model's classes are unknown")
    return manifest
