"""`edgecam package`: one archive that puts a model on a device and lets the device trust it.

The archive holds the bundle re-sealed with only the variant the device profile runs, the camera config rewritten
for the package's own layout, the edgecam wheel and its base requirements (no torch), a systemd unit and a container
recipe, and `package.json` with every file's sha256. `edgecam install` (devices/install.py) checks every one of
those checksums before it writes anything.

Why re-seal rather than copy the bundle: a device runs one variant, and a bundle carrying the others would make the
package several times larger (an IR at three precisions) for files nothing reads.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgecam.devices.profiles import DeviceProfile
from edgecam.runtime.bundle import DIGEST_KEY, Bundle, Variant, load_bundle, sha256_file, write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.shutdown import DRAIN_SECONDS

INDEX = "package.json"
FORMAT = "edgecam-package/1"
BUNDLE_DIR = "bundle"
CONFIG = "cameras.yaml"
REQUIREMENTS = "requirements.txt"
UNIT = "edgecam.service"
CONTAINERFILE = "Containerfile"
MEDIA_DIR = "media"
DATA_DIR = "data"  # outputs: `edgecam install` links it to ROOT/data, shared by every release
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_ROOT = "/opt/edgecam"
STOP_MARGIN = 7  # seconds systemd / the container runtime waits beyond the drain before SIGKILL
# The engine's own file format each backend prefers, then what else it reads.
BACKEND_FORMATS = {"openvino": ("openvino", "onnx"), "onnxruntime": ("onnx",)}
_WHEEL = re.compile(r"^edgecam-([0-9][A-Za-z0-9.+!_-]*?)-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass
class PackageResult:
    path: Path
    version: str
    variant: str
    size_bytes: int
    files: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "version": self.version, "variant": self.variant, "size_bytes": self.size_bytes}


def choose_variant(bundle: Bundle, profile: DeviceProfile, name: str | None = None) -> Variant:
    """The variant the profile runs: `name` when given, else the first of the profile's precisions (fastest first)
    the bundle has in a format the profile's backend reads, its own format first. INT8 variants that failed their
    accuracy gate (written with --allow-drop) are passed over."""
    formats = BACKEND_FORMATS[profile.backend]
    if name is not None:
        return bundle.variant(name, formats)
    usable = [
        v for v in bundle.variants.values() if v.format in formats and v.extra.get("gate", {}).get("passed", True)
    ]
    for precision in profile.precisions:
        found = sorted((v for v in usable if v.precision == precision), key=lambda v: formats.index(v.format))
        if found:
            return found[0]
    have = ", ".join(f"{v.name} ({v.format} {v.precision})" for v in bundle.variants.values())
    raise EdgecamError(
        f"no variant of this bundle fits {profile.name}: it runs {profile.backend} at {', '.join(profile.precisions)}; "
        f"the bundle has {have}",
        path=bundle.root,
        fix="export the precision it needs (--int8 for int8), or choose one with --variant",
    )


def write_variant_bundle(bundle: Bundle, variant: Variant, dest: Path) -> dict[str, Any]:
    """Copy `variant`'s files and its golden frames into `dest` and seal a manifest naming only them.

    Every source file is checked against the source manifest first: re-sealing a changed file would give it a
    valid checksum."""
    bundle.check_variant_files(variant)
    manifest = copy.deepcopy(bundle.manifest)
    manifest["variants"] = {variant.name: manifest["variants"][variant.name]}
    manifest["default_variants"] = [variant.name]
    wanted = dict(variant.files)
    golden = manifest.get("golden")
    if isinstance(golden, dict) and isinstance(golden.get("outputs"), dict):
        for key in ("outputs", "tolerance", "engines"):
            if isinstance(golden.get(key), dict):
                golden[key] = {k: v for k, v in golden[key].items() if k == variant.name}
        keep = {golden.get("frames"), *golden["outputs"].values()}
        golden["files"] = {rel: info for rel, info in golden.get("files", {}).items() if rel in keep}
        for rel, info in golden["files"].items():
            if sha256_file(bundle.root / rel) != info.get("sha256"):
                raise EdgecamError(f"{rel}: sha256 differs from the manifest", path=bundle.root / rel, fix="re-export")
        wanted.update(golden["files"])
    manifest["packaged_from"] = {
        "manifest_sha256": bundle.manifest.get(DIGEST_KEY),
        "variants": sorted(bundle.variants),
    }
    for rel in wanted:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.root / rel, dest / rel)
    write_manifest(dest, manifest)
    return load_bundle(dest).manifest


def find_source_tree() -> Path | None:
    """The source checkout edgecam runs from (an editable install), where a wheel can be built; None otherwise."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "setup.py").is_file() else None


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of the source tree: the exact code on this machine, offline."""
    src = find_source_tree()
    if src is None:
        raise EdgecamError(
            "no edgecam wheel: this edgecam is installed from a wheel, not a source tree, so it cannot build one",
            fix="pass --wheel PATH (the edgecam-*.whl you installed, or one from `pip wheel --no-deps .`)",
        )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out_dir),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(out_dir.glob("edgecam-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise EdgecamError(
            f"building the edgecam wheel failed: {last}",
            path=src,
            fix="install setuptools and wheel in this environment, or pass --wheel PATH",
        )
    return wheels[-1]


def wheel_requirements(wheel: Path) -> tuple[str, list[str]]:
    """(version, base requirements) from the wheel's own METADATA: the extras (torch, training, bench) left out."""
    match = _WHEEL.match(wheel.name)
    if not match:
        raise EdgecamError("not an edgecam wheel file name", path=wheel, fix="give an edgecam-VERSION-...whl")
    try:
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(meta).decode("utf-8")
    except (OSError, zipfile.BadZipFile, StopIteration, UnicodeDecodeError) as exc:
        raise EdgecamError(f"unreadable wheel ({exc or 'no METADATA'})", path=wheel, fix="rebuild the wheel") from None
    reqs = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            if "extra ==" not in req.replace('"', "").replace("'", ""):
                reqs.append(req)
    if any(
        re.match(r"torch\b", r) for r in reqs
    ):  # the device runtime never imports it: a wheel that pulls it is wrong
        raise EdgecamError("the wheel's base requirements include torch", path=wheel, fix="check pyproject.toml")
    return match.group(1), reqs


def _is_local(source: str) -> bool:
    from edgecam.runtime.sources import is_live

    return not is_live(source)


def package_config(
    config: Path, bundle_root: Path, profile: DeviceProfile, variant: str, stage: Path
) -> dict[str, Any]:
    """Rewrite the camera config for the package: every camera runs the packaged bundle on the profile's backend,
    variant and device; a relative file source is copied into `media/`; relative
    output paths go under `data/<camera>/`. Absolute paths name things on the device and are kept."""
    from edgecam.runtime.camera_config import load_cameras_config

    parsed = load_cameras_config(config)  # every error of the file itself, first
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    target = bundle_root.resolve()
    for cam_raw, cam in zip(raw["cameras"], parsed.cameras, strict=True):
        if Path(cam.bundle).resolve() != target or cam.classifier is not None:
            other = cam.classifier if cam.classifier is not None else cam.bundle
            raise EdgecamError(
                f"camera {cam.name!r} uses {other}, not the bundle being packaged: a package carries one bundle",
                path=config,
                fix=f"point its bundle at {bundle_root}, or package that camera in a config of its own",
            )
        cam_raw["bundle"] = BUNDLE_DIR
        cam_raw["backend"], cam_raw["variant"] = profile.backend, variant
        cam_raw["device"] = profile.device
        source = str(cam_raw["source"])
        if _is_local(source) and not Path(source).expanduser().is_absolute():
            cam_raw["source"] = _copy_media(Path(cam.source), cam.name, stage, config)
        sinks = cam_raw.get("sinks") or {}
        for key in ("video", "images", "jsonl", "snapshots"):
            value = sinks.get(key)
            if value is not None and not Path(str(value)).expanduser().is_absolute():
                sinks[key] = f"{DATA_DIR}/{cam.name}/{Path(str(value)).name}"
    tls = (raw.get("mqtt") or {}).get("tls") or {}
    relative = [k for k in ("ca", "cert", "key") if tls.get(k) and not Path(str(tls[k])).is_absolute()]
    if relative:
        raise EdgecamError(
            f"mqtt.tls.{relative[0]} is a relative path: a package does not carry certificates or keys",
            path=config,
            fix="give the absolute path the file has on the device (e.g. /etc/edgecam/ca.pem)",
        )
    if profile.threads and not (raw.get("engine") or {}).get("threads"):
        raw["engine"] = {**(raw.get("engine") or {}), "threads": profile.threads}
    header = f"# Written by `edgecam package` from {config.name} for the {profile.name} profile.\n"
    (stage / CONFIG).write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    load_cameras_config(stage / CONFIG)  # the packaged config is valid as written
    return raw


def _copy_media(source: Path, camera: str, stage: Path, config: Path) -> str:
    """A relative video file or image folder copied into the package: the device has no copy of the dev tree."""
    if not source.exists():
        raise EdgecamError(f"camera {camera!r}: source {source} does not exist", path=config, fix="check the path")
    rel = f"{MEDIA_DIR}/{camera}/{source.name}"
    dest = stage / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=False, ignore=lambda d, names: [n for n in names if n.startswith(".")])
    else:
        shutil.copyfile(source, dest)
    return rel


def render_unit(root: str, python: str | None, memory_mb: int, drain: float = DRAIN_SECONDS) -> str:
    """The systemd unit from the one template, for an install under `root`: `python -m edgecam` when `python` is
    given (an interpreter of the box's own), else the release's venv. TimeoutStopSec stays above the drain."""
    current = f"{root.rstrip('/')}/current"
    command = f"{python} -m edgecam" if python else f"{current}/venv/bin/python -m edgecam"
    values = {
        "WorkingDirectory": current,
        "ExecStart": f"{command} run --config {current}/{CONFIG} --drain-timeout {drain:g}",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": str(int(drain) + STOP_MARGIN),
        "Restart": "on-failure",
        "MemoryMax": f"{memory_mb}M",
    }
    lines, section, seen = [], "", set()
    for line in (TEMPLATES / UNIT).read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            if section == "[Service]":
                lines[-1:-1] = [f"{k}={v}" for k, v in values.items() if k not in seen]  # before the blank line
            section = line.strip()
        key = line.split("=", 1)[0]
        if section == "[Service]" and key in values and not line.startswith("#"):
            line, _ = f"{key}={values[key]}", seen.add(key)
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_containerfile(wheel: str, backend: str, variant: str, version: str, memory_mb: int, raw: dict) -> str:
    http = raw.get("http") or {}
    port = http.get("port", 8080) if http else None
    health = (
        'HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; '
        f"urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=4)\"\n"
        if port
        else ""
    )
    media = any(str(c.get("source", "")).startswith(f"{MEDIA_DIR}/") for c in raw["cameras"])
    return (
        (TEMPLATES / CONTAINERFILE)
        .read_text(encoding="utf-8")
        .format(
            version_tag=re.sub(r"[^A-Za-z0-9_.-]", "-", version),
            memory_mb=memory_mb,
            stop_seconds=int(DRAIN_SECONDS) + STOP_MARGIN,
            publish=f"-p {port}:{port} " if port else "",
            wheel=wheel,
            copy_media=f"COPY {MEDIA_DIR}/ {MEDIA_DIR}/\n" if media else "",
            backend=backend,
            variant=variant,
            healthcheck=health,
            drain=f"{DRAIN_SECONDS:g}",
        )
    )


def _files(stage: Path) -> dict[str, dict[str, Any]]:
    found = sorted(p for p in stage.rglob("*") if p.is_file())
    return {p.relative_to(stage).as_posix(): {"sha256": sha256_file(p), "size_bytes": p.stat().st_size} for p in found}


def content_version(edgecam_version: str, files: dict[str, dict[str, Any]]) -> str:
    """edgecam's version + 12 hex digits of the contents: the same inputs give the same release name, and any
    change (model, config, wheel) a new one. A timestamp would name one package twice."""
    digest = hashlib.sha256("".join(f"{rel}\0{info['sha256']}\n" for rel, info in sorted(files.items())).encode())
    return f"{edgecam_version}+{digest.hexdigest()[:12]}"


def build_package(
    bundle_path: str | Path,
    profile: DeviceProfile,
    config: str | Path,
    out: str | Path,
    wheel: str | Path | None = None,
    variant: str | None = None,
) -> PackageResult:
    """Write the package archive `out` (tar.gz); see the module docstring for what it holds."""
    from edgecam.runtime.verify import verify_bundle

    out, config = Path(out), Path(config)
    if not str(out).endswith((".tar.gz", ".tgz")):
        raise EdgecamError("the package is a gzipped tar", path=out, fix="give an --out ending in .tar.gz")
    bundle = load_bundle(bundle_path)
    chosen = choose_variant(bundle, profile, variant)
    with tempfile.TemporaryDirectory(prefix="edgecam-package-") as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        sealed = write_variant_bundle(bundle, chosen, stage / BUNDLE_DIR)
        report = verify_bundle(stage / BUNDLE_DIR, backend=profile.backend, variant=chosen.name)
        if not report.passed:
            raise EdgecamError(f"the packaged bundle fails verify: {report.problems[0]}", path=bundle.root)
        raw = package_config(config, bundle.root, profile, chosen.name, stage)
        if wheel is None:
            wheel = build_wheel(Path(tmp) / "wheel")
        wheel = Path(wheel)
        if not wheel.is_file():
            raise EdgecamError("wheel not found", path=wheel, fix="give the path of an edgecam-*.whl")
        version, requirements = wheel_requirements(wheel)
        shutil.copyfile(wheel, stage / wheel.name)
        (stage / REQUIREMENTS).write_text(
            "# edgecam's base (device) requirements, from the wheel's metadata: no torch, no training packages.\n"
            + "\n".join(requirements)
            + "\n"
        )
        memory = profile.budget.peak_memory_mb
        (stage / UNIT).write_text(render_unit(DEFAULT_ROOT, None, memory))
        (stage / CONTAINERFILE).write_text(
            render_containerfile(wheel.name, profile.backend, chosen.name, version, memory, raw)
        )
        files = _files(stage)
        pkg_version = content_version(version, files)
        index = {
            "format": FORMAT,
            "version": pkg_version,
            "edgecam_version": version,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "profile": profile.model_dump(mode="json"),
            "bundle": {
                "dir": BUNDLE_DIR,
                "task": sealed["task"],
                "variant": chosen.name,
                "precision": chosen.precision,
                "backend": profile.backend,
                "device": profile.engine_device,
                "manifest_sha256": sealed[DIGEST_KEY],
                "source_manifest_sha256": bundle.manifest.get(DIGEST_KEY),
            },
            "config": CONFIG,
            "wheel": wheel.name,
            "requirements": REQUIREMENTS,
            "unit": UNIT,
            "container": CONTAINERFILE,
            "drain_seconds": DRAIN_SECONDS,
            "files": files,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        _write_tar(partial, stage, index)
        partial.replace(out)
    return PackageResult(out, pkg_version, chosen.name, out.stat().st_size, files)


def _write_tar(path: Path, stage: Path, index: dict[str, Any]) -> None:
    """package.json first (an installer reads it before the files it describes), then every file; regular files
    only, owner root, no directory entries."""

    def info(name: str, size: int) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.size, entry.mode, entry.mtime = size, 0o644, int(dt.datetime.now().timestamp())
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = "root"
        return entry

    data = (json.dumps(index, indent=2) + "\n").encode("utf-8")
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info(INDEX, len(data)), io.BytesIO(data))
        for rel, meta in index["files"].items():
            with open(stage / rel, "rb") as fh:
                tar.addfile(info(rel, meta["size_bytes"]), fh)
