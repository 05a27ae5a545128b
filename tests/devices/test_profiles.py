"""Device profiles: the shipped files validate, a user's file works the same way, and mistakes name the file and key."""

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edgecam.devices.profiles import (
    PROFILE_DIR,
    DeviceProfile,
    all_profiles,
    load_profile,
    profile_names,
)
from edgecam.runtime.device import device_string
from edgecam.runtime.errors import EdgecamError

REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "intel-cpu", "intel-igpu", "intel-npu"}
REQUIRED |= {"x86-generic"}


def _raw(name: str = "x86-generic") -> dict:
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text()) | {"name": name}


def _write(tmp_path: Path, data: dict, name: str = "box.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_required_profile_ships_and_validates():
    assert set(profile_names()) >= REQUIRED
    for profile in all_profiles():
        assert profile.name in profile_names(), "a shipped file's name is its stem"
        assert profile.budget.latency_ms_per_frame() > 0
        assert profile.precisions[0] in {"int8", "fp16", "fp32", "bf16"}


def test_engines_and_devices_cover_cpu_gpu_npu_and_execution_providers():
    by_name = {p.name: p for p in all_profiles()}
    assert by_name["intel-igpu"].engine_device == "GPU"
    assert by_name["intel-npu"].engine_device == "NPU"
    assert by_name["raspberry-pi-4"].engine_device == "CPUExecutionProvider"
    assert by_name["jetson-orin-nano"].engine_device == "TensorrtExecutionProvider"
    assert device_string("onnxruntime", "MyCustomExecutionProvider") == "MyCustomExecutionProvider"
    assert device_string("openvino", "gpu.1") == "GPU.1"


def test_a_users_own_file_is_read_like_a_shipped_one(tmp_path):
    data = _raw() | {"cores": 8, "speed_factor": 0.4}
    data.pop("name", None)
    profile = load_profile(_write(tmp_path, data, "my-box.yaml"))
    assert (profile.name, profile.cores, profile.speed_factor) == ("my-box", 8, 0.4)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"coress": 4}, "coress"),
        ({"arch": "riscv64"}, "arch"),
        ({"backend": "tflite"}, "backend"),
        ({"precisions": ["int4"]}, "precisions"),
        ({"precisions": ["int8", "int8"]}, "precisions"),
        ({"speed_factor": 0}, "speed_factor"),
        ({"budget": {"fps": 10, "latency_ms": 50, "peak_memory_mb": 512}}, "budget"),
        ({"budget": {"peak_memory_mb": 512}}, "budget"),
        ({"budget": {"fps": 10, "cameras": 0, "peak_memory_mb": 512}}, "budget.cameras"),
        ({"device": "CPU GPU"}, "device"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_a_mistake_names_the_file_and_the_key(tmp_path, change, key):
    path = _write(tmp_path, _raw() | change)
    with pytest.raises(EdgecamError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_unknown_names_and_unreadable_files_are_edgecam_errors(tmp_path):
    with pytest.raises(EdgecamError, match="unknown device profile 'pi-9'.*raspberry-pi-4"):
        load_profile("pi-9")
    with pytest.raises(EdgecamError, match="cannot read"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: [4\n")
    with pytest.raises(EdgecamError, match="invalid YAML"):
        load_profile(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(EdgecamError, match="mapping"):
        load_profile(listed)


def test_budget_latency_is_one_frames_share_across_cameras():
    data = _raw() | {"budget": {"fps": 10, "cameras": 4, "peak_memory_mb": 512}}
    assert DeviceProfile.model_validate(data).budget.latency_ms_per_frame() == pytest.approx(25.0)
    data = _raw() | {"budget": {"latency_ms": 40, "peak_memory_mb": 512}}
    assert DeviceProfile.model_validate(data).budget.latency_ms_per_frame() == 40.0


def test_a_profile_for_another_architecture_says_it_does_not_run_here(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    here, why = load_profile("raspberry-pi-4").runs_here()
    assert not here and "aarch64" in why
    here, why = load_profile("x86-generic").runs_here()
    assert here, why


def test_cli_devices_lists_every_profile_and_refuses_an_unknown_one(capsys):
    from edgecam.cli import main

    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(profile_names())
    assert all("runs_here" in r and r["latency_budget_ms"] > 0 for r in rows)
    assert main(["devices"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in REQUIRED) and "est." in table
    assert main(["devices", "nope"]) == 2
    assert "unknown device profile" in capsys.readouterr().err


@given(st.dictionaries(st.sampled_from(sorted(DeviceProfile.model_fields) + ["extra"]), st.none() | st.integers()))
def test_any_mapping_is_a_profile_or_an_edgecam_error(tmp_path_factory, mutation):
    path = tmp_path_factory.mktemp("p") / "p.yaml"
    path.write_text(yaml.safe_dump(_raw() | mutation))
    try:
        assert isinstance(load_profile(path), DeviceProfile)
    except EdgecamError as exc:
        assert str(path) in str(exc)
