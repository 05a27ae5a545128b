"""`edgecam package`: the profile's variant re-sealed, the config rewritten, the wheel, requirements, unit, recipe."""

from __future__ import annotations

import configparser
import hashlib
import json
import shlex
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from edgecam.cli import build_parser, main
from edgecam.devices import package as pkg
from edgecam.devices.profiles import load_profile
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.shutdown import DRAIN_SECONDS
from edgecam.runtime.verify import verify_bundle
from tests.devices.deploy_fixtures import (
    break_golden,
    camera_config,
    colour_video,
    golden_bundle,
    profile_file,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A developer's folder: the bundle, a clip and a config naming both by relative paths."""
    root = tmp_path_factory.mktemp("site")
    golden_bundle(root / "bundles" / "colours")
    colour_video(root / "clip.mp4")
    camera_config(root, Path("bundles/colours"), "clip.mp4", 18080)
    return root


def _build(site: Path, wheel: Path, out: Path, device: str | Path, **kw) -> pkg.PackageResult:
    profile = load_profile(device)
    return pkg.build_package(site / "bundles" / "colours", profile, site / "cameras.yaml", out, wheel, **kw)


def _unpack(path: Path, dest: Path) -> dict:
    with tarfile.open(path) as tar:
        tar.extractall(dest, filter="data")
    return json.loads((dest / "package.json").read_text())


def test_package_holds_the_profile_variant_resealed_and_every_checksum(site, edgecam_wheel, tmp_path):
    profile = profile_file(tmp_path, backend="onnxruntime", precisions=("int8", "fp32"), memory=768)
    result = _build(site, edgecam_wheel, tmp_path / "p.tar.gz", profile)
    index = _unpack(result.path, tmp_path / "x")
    x = tmp_path / "x"
    assert result.variant == index["bundle"]["variant"] == "onnx-fp32"  # no int8 in the bundle: fp32, ONNX for ORT
    on_disk = {p.relative_to(x).as_posix() for p in x.rglob("*") if p.is_file()} - {"package.json"}
    assert set(index["files"]) == on_disk
    for rel, info in index["files"].items():
        assert hashlib.sha256((x / rel).read_bytes()).hexdigest() == info["sha256"], rel
    bundle = load_bundle(x / "bundle")  # its own digest checks out: re-sealed, not edited
    assert list(bundle.variants) == ["onnx-fp32"] and bundle.sealed
    assert not (x / "bundle" / "openvino").exists()
    assert set(bundle.manifest["golden"]["outputs"]) == {"onnx-fp32"}
    report = verify_bundle(x / "bundle")
    assert report.passed and report.golden_frames == 3
    source = load_bundle(site / "bundles" / "colours").manifest["manifest_sha256"]
    assert bundle.manifest["packaged_from"]["manifest_sha256"] == source
    assert index["version"].startswith(f"{index['edgecam_version']}+")


def test_the_config_points_at_the_packaged_bundle_media_and_data(site, edgecam_wheel, tmp_path):
    result = _build(site, edgecam_wheel, tmp_path / "p.tar.gz", "intel-cpu")
    _unpack(result.path, tmp_path / "x")
    config = yaml.safe_load((tmp_path / "x" / "cameras.yaml").read_text())
    camera = config["cameras"][0]
    assert camera["bundle"] == "bundle" and camera["backend"] == "openvino" and camera["variant"] == "openvino-fp32"
    assert camera["source"] == "media/shelf/clip.mp4" and (tmp_path / "x" / camera["source"]).is_file()
    assert camera["sinks"]["jsonl"] == "data/shelf/x.jsonl"


def test_requirements_are_the_wheels_base_dependencies_without_torch(site, edgecam_wheel, tmp_path):
    result = _build(site, edgecam_wheel, tmp_path / "p.tar.gz", "intel-cpu")
    _unpack(result.path, tmp_path / "x")
    lines = [ln for ln in (tmp_path / "x" / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
    version, base = pkg.wheel_requirements(edgecam_wheel)
    assert lines == base and not any(ln.startswith(("torch", "nncf", "matplotlib")) for ln in lines)
    names = {ln.split("<")[0].split(">")[0].split("=")[0] for ln in lines}
    assert {"numpy", "onnxruntime", "openvino", "opencv-python-headless", "pycocotools", "pydantic"} <= names


def test_the_unit_restarts_on_failure_outlasts_the_drain_and_caps_memory(site, edgecam_wheel, tmp_path):
    profile = profile_file(tmp_path, memory=768)
    _unpack(_build(site, edgecam_wheel, tmp_path / "p.tar.gz", profile).path, tmp_path / "x")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(tmp_path / "x" / "edgecam.service")
    service = unit["Service"]
    assert service["MemoryMax"] == "768M" and service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and float(service["TimeoutStopSec"]) > DRAIN_SECONDS
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["-m", "edgecam"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "run" and str(args.config) == "/opt/edgecam/current/cameras.yaml"


def test_render_unit_for_a_root_and_an_interpreter_of_the_box():
    unit = pkg.render_unit("/srv/cam", "/usr/bin/python3", 512, drain=20)
    assert "ExecStart=/usr/bin/python3 -m edgecam run --config /srv/cam/current/cameras.yaml --drain-timeout 20" in unit
    assert "TimeoutStopSec=27" in unit and "MemoryMax=512M" in unit and "WorkingDirectory=/srv/cam/current" in unit
    assert unit.count("MemoryMax=") == 1


def test_the_container_recipe_copies_only_what_the_package_holds(site, edgecam_wheel, tmp_path):
    index = _unpack(_build(site, edgecam_wheel, tmp_path / "p.tar.gz", "intel-cpu").path, tmp_path / "x")
    recipe = (tmp_path / "x" / "Containerfile").read_text().splitlines()
    copies = [ln.split()[1:-1] for ln in recipe if ln.startswith("COPY ")]
    for sources in copies:
        for src in sources:
            assert (tmp_path / "x" / src).exists(), src
    assert any(index["wheel"] in ln for ln in recipe if ln.startswith("RUN pip install"))
    assert "STOPSIGNAL SIGTERM" in recipe and any(
        ln.startswith("HEALTHCHECK") and ":18080/health" in ln for ln in recipe
    )
    assert "RUN edgecam verify bundle --backend openvino --variant openvino-fp32" in recipe


def test_a_changed_model_file_is_not_resealed(site, edgecam_wheel, tmp_path):
    """Re-sealing copies files under a new manifest: a file changed since export must stop it, or it would be
    laundered into a package that verifies."""
    bundle = tmp_path / "b"
    shutil.copytree(site / "bundles" / "colours", bundle)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-1] ^= 1
    (bundle / "model.onnx").write_bytes(bytes(data))
    config = camera_config(tmp_path, bundle, str(site / "clip.mp4"), None)
    with pytest.raises(EdgecamError, match="model.onnx: sha256 differs"):
        pkg.build_package(bundle, load_profile(profile_file(tmp_path)), config, tmp_path / "p.tar.gz", edgecam_wheel)
    assert not (tmp_path / "p.tar.gz").exists()


def test_a_bundle_whose_golden_frames_fail_is_not_packaged(site, edgecam_wheel, tmp_path):
    bundle = break_golden(golden_bundle(tmp_path / "b"))
    config = camera_config(tmp_path, bundle, str(site / "clip.mp4"), None)
    with pytest.raises(EdgecamError, match="the packaged bundle fails verify: .*top-1 class changed"):
        pkg.build_package(bundle, load_profile("intel-cpu"), config, tmp_path / "p.tar.gz", edgecam_wheel)


def test_a_camera_on_another_bundle_is_refused(site, edgecam_wheel, tmp_path):
    other = golden_bundle(tmp_path / "other")
    config = camera_config(tmp_path, other, str(site / "clip.mp4"), None)
    with pytest.raises(EdgecamError, match="not the bundle being packaged"):
        pkg.build_package(
            site / "bundles" / "colours", load_profile("intel-cpu"), config, tmp_path / "p.tar.gz", edgecam_wheel
        )


def test_no_variant_for_the_profile_says_what_the_bundle_has(site, tmp_path):
    profile = load_profile(profile_file(tmp_path, precisions=("int8",)))
    with pytest.raises(EdgecamError, match=r"no variant of this bundle fits .*onnx-fp32 \(onnx fp32\)"):
        pkg.choose_variant(load_bundle(site / "bundles" / "colours"), profile)


def test_without_a_source_tree_or_wheel_the_error_says_to_pass_one(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pkg, "find_source_tree", lambda: None)
    code = main(
        ["package", str(site / "bundles" / "colours"), "--device", "intel-cpu", "--config", str(site / "cameras.yaml"),
         "--out", str(tmp_path / "p.tar.gz")]
    )  # fmt: skip
    assert code == 2 and "pass --wheel PATH" in capsys.readouterr().err
    code = main(
        ["package", str(site / "bundles" / "colours"), "--device", "intel-cpu", "--config", str(site / "cameras.yaml"),
         "--out", str(tmp_path / "p.tar.gz"), "--wheel", str(tmp_path / "nope.whl")]
    )  # fmt: skip
    assert code == 2 and "wheel not found" in capsys.readouterr().err
