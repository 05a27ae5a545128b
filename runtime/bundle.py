"""Read and check a bundle: a directory with model files and `edgecam.json`, everything the runtime needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.manifest import SCHEMA_VERSION as SCHEMA_VERSION  # exporters import it from here
from edgecam.runtime.manifest import Manifest, parse_manifest
from edgecam.runtime.preprocess import PreprocessSpec

MANIFEST = "edgecam.json"
TASKS = ("classify", "detect")
# The keys that also travel inside ONNX metadata_props and OpenVINO rt_info, so a lone model file is usable.
METADATA_KEYS = ("edgecam_schema", "task", "class_names", "preprocess", "model", "detect")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Variant:
    """One runnable form of the model: a file, its format and precision, its checksums and measured metrics."""

    name: str
    format: str  # "onnx" | "openvino"
    precision: str  # "fp32" | "fp16" | "int8"
    file: str
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "size_bytes"}
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "file": self.file,
            "files": self.files,
            "metrics": self.metrics,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Variant:
        known = {"format", "precision", "file", "files", "metrics"}
        missing = {"format", "precision", "file", "files"} - set(data)
        if missing:
            raise EdgecamError(f"variant {name!r} lacks {sorted(missing)}")
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(name, data["format"], data["precision"], data["file"], data["files"], data.get("metrics", {}), extra)


@dataclass
class Bundle:
    """A parsed bundle directory."""

    root: Path
    manifest: dict[str, Any]  # as written, every key (exporters add keys the runtime does not read)
    variants: dict[str, Variant]
    checked: Manifest | None = None  # the typed view of the keys the runtime relies on (set by load_bundle)

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["class_names"])

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.manifest["preprocess"])

    def variant(self, name: str | None = None, fmt: tuple[str, ...] | None = None) -> Variant:
        """The named variant, or the default one among those whose format is in `fmt`."""
        if name is not None:
            if name not in self.variants:
                raise EdgecamError(
                    f"bundle has no variant {name!r}", path=self.root, fix=f"choose one of {sorted(self.variants)}"
                )
            chosen = self.variants[name]
            if fmt is not None and chosen.format not in fmt:
                raise EdgecamError(
                    f"variant {name!r} is {chosen.format}, which this backend cannot run",
                    path=self.root,
                    fix=f"choose a variant in format {' or '.join(fmt)}",
                )
            return chosen
        order = list(self.manifest.get("default_variants", [])) + list(self.variants)
        for vname in order:
            var = self.variants.get(vname)
            if var is not None and (fmt is None or var.format in fmt):
                return var
        raise EdgecamError(f"bundle has no variant this backend can run (formats {fmt})", path=self.root)

    def path_of(self, variant: Variant) -> Path:
        return self.root / variant.file

    def verify_checksums(self) -> list[str]:
        """Every listed file's sha256; returns the problems found (an empty list means intact)."""
        problems = []
        for var in self.variants.values():
            for rel, info in var.files.items():
                path = self.root / rel
                if not path.is_file():
                    problems.append(f"{rel}: missing")
                elif sha256_file(path) != info.get("sha256"):
                    problems.append(f"{rel}: sha256 differs from the manifest (file changed or corrupt)")
        return problems


def load_bundle(path: str | Path, check: bool = True) -> Bundle:
    """Read `edgecam.json` from a bundle directory, validating what the runtime relies on."""
    root = Path(path)
    if root.is_file() and root.name == MANIFEST:
        root = root.parent
    mpath = root / MANIFEST
    if not root.exists():
        raise EdgecamError("bundle not found", path=root, fix="give the directory written by `edgecam export`")
    if not mpath.is_file():
        raise EdgecamError(
            f"not a bundle: no {MANIFEST}", path=root, fix="give the directory written by `edgecam export`"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgecamError(f"corrupt manifest: {exc}", path=mpath, fix="re-export the bundle") from None
    try:
        checked = parse_manifest(manifest)
        variants = {n: Variant.from_dict(n, d) for n, d in manifest["variants"].items()}
        bundle = Bundle(root, manifest, variants, checked)
        bundle.preprocess  # noqa: B018 - validates the spec now rather than on the first frame
    except EdgecamError as exc:
        raise EdgecamError(exc.message, path=mpath, fix=exc.fix or "re-export the bundle") from None
    except (AttributeError, TypeError) as exc:
        raise EdgecamError(f"malformed manifest: {exc}", path=mpath, fix="re-export the bundle") from None
    if check:
        for var in variants.values():
            for rel in var.files:
                if not (root / rel).is_file():
                    raise EdgecamError(
                        f"bundle file {rel} is missing", path=root, fix="copy the whole bundle directory"
                    )
    return bundle


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically so an interrupted export never leaves a half-written file."""
    path = root / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
