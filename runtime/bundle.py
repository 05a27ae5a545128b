"""Read and check a bundle: a directory with model files and `edgecam.json`, everything the runtime needs."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.manifest import SCHEMA_VERSION as SCHEMA_VERSION  # exporters import it from here
from edgecam.runtime.manifest import Manifest, parse_manifest
from edgecam.runtime.preprocess import PreprocessSpec

MANIFEST = "edgecam.json"
# The manifest's own checksum: sha256 of its canonical JSON without this key (see `manifest_digest`).
DIGEST_KEY = "manifest_sha256"
MAX_MANIFEST_BYTES = 16 << 20  # real manifests are tens of kB; golden data lives in files of its own
SEAL_FIX = "re-export the bundle, or copy the bundle directory whole (edgecam.json with its model files)"
TASKS = ("classify", "detect")
# The keys that also travel inside ONNX metadata_props and OpenVINO rt_info, so a lone model file is usable.
METADATA_KEYS = ("edgecam_schema", "task", "class_names", "preprocess", "model", "detect")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, compact separators, ASCII) without `DIGEST_KEY`:
    independent of indentation and key order, so only a change of content changes it."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


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
    sealed: bool = True  # the manifest carries its own digest (False: written by an edgecam before the digest)

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
            var = self.variants.get(vname) if isinstance(vname, str) else None
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

    def check_variant_files(self, variant: Variant) -> None:
        """The sha256 of every file of `variant` against the manifest, before an engine reads them: a changed or
        corrupt model never runs. Cheap at bundle sizes: 5 ms for the 3.9 MB FP32 detector of bench-real (~750 MB/s,
        warm cache) against 20-110 ms for the engine's own load. Raises EdgecamError naming the file."""
        if variant.file not in variant.files:
            raise EdgecamError(
                f"variant {variant.name!r}: its model file {variant.file} has no checksum in 'files'",
                path=self.root / MANIFEST,
                fix="re-export the bundle",
            )
        for rel, info in variant.files.items():
            path = self.root / rel
            if not path.is_file():
                raise EdgecamError(
                    f"bundle file {rel} is missing", path=self.root, fix="copy the whole bundle directory"
                )
            if sha256_file(path) != info.get("sha256"):
                raise EdgecamError(
                    f"{rel}: sha256 differs from the manifest (the file changed or is corrupt)",
                    path=path,
                    fix="copy the bundle again from its source, or re-export it",
                )


_warned_unsealed: set[str] = set()


def warn_unsealed(bundle: Bundle) -> None:
    """One stderr line per bundle and process when its manifest has no digest (an earlier edgecam wrote it)."""
    key = str(bundle.root.resolve())
    if bundle.sealed or key in _warned_unsealed:
        return
    _warned_unsealed.add(key)
    print(
        f"warning: {bundle.root / MANIFEST} has no {DIGEST_KEY}: the manifest itself is not covered by a checksum "
        "(written by an earlier edgecam; re-export the bundle to add it)",
        file=sys.stderr,
        flush=True,
    )


def _check_digest(manifest: dict[str, Any], mpath: Path) -> bool:
    """True when the manifest carries a digest that matches, False when it carries none; a mismatch raises."""
    if DIGEST_KEY not in manifest:
        return False
    if manifest[DIGEST_KEY] != manifest_digest(manifest):
        raise EdgecamError(
            f"{MANIFEST} was changed after export: its {DIGEST_KEY} does not match its content",
            path=mpath,
            fix=SEAL_FIX,
        )
    return True


def bundle_paths(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, relative path) of every file the manifest names: each variant's `file` and `files`, and the golden
    entry's `frames`, `outputs` and `files` (the strings among them; `edgecam verify` checks the entry's shape)."""
    found: list[tuple[str, str]] = []
    for name, var in manifest["variants"].items():
        found.append((f"variants.{name}.file", var["file"]))
        found += [(f"variants.{name}.files", rel) for rel in var["files"]]
    golden = manifest.get("golden")
    if isinstance(golden, dict):
        if isinstance(golden.get("frames"), str):
            found.append(("golden.frames", golden["frames"]))
        outputs = golden.get("outputs")
        if isinstance(outputs, dict):
            found += [(f"golden.outputs.{k}", v) for k, v in outputs.items() if isinstance(v, str)]
        files = golden.get("files")
        if isinstance(files, dict):
            found += [("golden.files", rel) for rel in files]
    return found


def check_inside(root: Path, manifest: dict[str, Any], mpath: Path) -> None:
    """Every path the manifest names must lie inside the bundle: relative, no `..` out of it, no symlink out of it.
    A manifest that names /etc/passwd or ../../x never makes edgecam open it."""
    base = root.resolve()
    for where, rel in bundle_paths(manifest):
        problem = None
        if not rel or "\x00" in rel:
            problem = "is empty or holds a NUL character"
        elif Path(rel).is_absolute() or rel.startswith(("/", "\\")):
            problem = "is absolute"
        else:
            try:
                (base / rel).resolve().relative_to(base)
            except ValueError:
                problem = "leads outside the bundle directory"
            except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
                problem = f"cannot be resolved ({exc})"
        if problem:
            raise EdgecamError(
                f"{where}: path {rel!r} {problem}",
                path=mpath,
                fix="a bundle names its files relative to its own directory; re-export it",
            )


def _read_manifest(mpath: Path) -> Any:
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise EdgecamError(
                f"manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES} a bundle's manifest can be",
                path=mpath,
                fix="re-export the bundle",
            )
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, too many digits
        raise EdgecamError(f"corrupt manifest: {exc}", path=mpath, fix="re-export the bundle") from None


def load_bundle(path: str | Path, check: bool = True) -> Bundle:
    """Read `edgecam.json` from a bundle directory, validating what the runtime relies on: its own digest, its
    keys and types, and that every file it names lies inside the bundle (and, with `check`, exists)."""
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
    manifest = _read_manifest(mpath)
    try:
        sealed = _check_digest(manifest, mpath) if isinstance(manifest, dict) else False
        checked = parse_manifest(manifest)
        variants = {n: Variant.from_dict(n, d) for n, d in manifest["variants"].items()}
        bundle = Bundle(root, manifest, variants, checked, sealed)
        bundle.preprocess  # noqa: B018 - validates the spec now rather than on the first frame
        check_inside(root, manifest, mpath)
    except EdgecamError as exc:
        raise EdgecamError(exc.message, path=exc.path or mpath, fix=exc.fix or "re-export the bundle") from None
    except (AttributeError, TypeError, ValueError, RecursionError) as exc:
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
    """Write the manifest atomically (an interrupted export never leaves a half-written file), sealed with its own
    digest (`DIGEST_KEY`, recomputed: a manifest read, edited and written again is sealed anew)."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    body[DIGEST_KEY] = manifest_digest(body)
    path = root / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
