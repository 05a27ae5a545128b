"""Device profiles: what a box is (architecture, cores, memory), how edgecam runs on it (backend, device or execution
provider, precisions, threads) and what it must sustain (a budget). One YAML file per device under
`devices/profiles/`; a user's own file, given by path, is read and validated the same way.

Why typed files and not a table in code: a site adds its own box without a release, and a misspelt key fails with
the file and key named, as `cameras.yaml` does.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edgecam.runtime.config.base import NAME, Float, Int, StrictModel, fail, model_error
from edgecam.runtime.config.loader import read_yaml
from edgecam.runtime.device import available_devices, device_string, has_device
from edgecam.runtime.errors import EdgecamError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
ARCHES = ("x86_64", "aarch64")
BACKENDS = ("openvino", "onnxruntime")
PRECISIONS = ("int8", "fp16", "bf16", "fp32")
# What `platform.machine()` says on each architecture.
_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# The reference host that speed factors are relative to: what `make bench` ran on when the factors were written.
REFERENCE_HOST = "2 x86-64 cores (AMD Zen 4 or Intel Xeon class, about 3 GHz), OpenVINO or ONNX Runtime on the CPU"


class Budget(StrictModel):
    """What the device must sustain: `fps` for each of `cameras`, or one inference within `latency_ms`; and a peak
    memory for the whole runtime."""

    fps: Float | None = Field(None, gt=0, le=240, description="frames per second per camera")
    cameras: Int = Field(1, ge=1, le=64, description="cameras the device serves at `fps` each")
    latency_ms: Float | None = Field(None, gt=0, description="a single inference's latency budget, instead of fps")
    peak_memory_mb: Int = Field(ge=64, description="peak resident memory of the runtime process (systemd MemoryMax)")

    @model_validator(mode="after")
    def _one_target(self) -> Budget:
        if (self.fps is None) == (self.latency_ms is None):
            raise fail("give either fps (with cameras) or latency_ms", "e.g. fps: 10 and cameras: 2")
        return self

    def latency_ms_per_frame(self) -> float:
        """The inference latency that meets the budget: `latency_ms`, or one frame's share of a second across every
        camera (inference runs one frame at a time on the device's cores)."""
        if self.latency_ms is not None:
            return float(self.latency_ms)
        return 1000.0 / (float(self.fps or 1.0) * self.cameras)


class DeviceProfile(StrictModel):
    """One device. `speed_factor` says how many times slower (> 1) or faster (< 1) than the reference host a model
    runs on it; it is an estimate until `edgecam benchmark` runs on the device itself (`speed_factor_source`)."""

    name: str = Field(description="the profile's name, as `--device` takes it")
    description: str = Field("", description="the hardware, in words")
    arch: Literal[ARCHES] = Field(description="CPU architecture: x86_64 | aarch64")  # type: ignore[valid-type]
    cores: Int = Field(ge=1, le=256, description="CPU cores")
    memory_mb: Int = Field(ge=256, description="installed memory")
    backend: Literal[BACKENDS] = Field(description="inference engine: openvino | onnxruntime")  # type: ignore[valid-type]
    device: str = Field(
        "CPU",
        description="OpenVINO device (CPU, GPU, NPU) or ONNX Runtime execution provider (cpu, cuda, tensorrt, …)",
    )
    precisions: list[Literal[PRECISIONS]] = Field(  # type: ignore[valid-type]
        min_length=1, description="variant precisions it runs fast, fastest first"
    )
    threads: Int | None = Field(None, ge=1, le=256, description="inference threads; null: the engine's default")
    budget: Budget
    speed_factor: Float = Field(gt=0, le=100, description="latency here ÷ latency on the reference host")
    speed_factor_source: Literal["estimate", "measured"] = Field(
        "estimate", description="estimate until `edgecam benchmark` has run on the device"
    )
    notes: str = Field("", description="what the estimate rests on, caveats")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise fail(f"profile name {value!r} is not a plain name", "letters, digits, '-', '_' and '.'")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise fail(f"device {value!r} is not a device name", "e.g. CPU, GPU, NPU, cpu, cuda")
        return value

    @field_validator("precisions")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise fail("a precision is listed twice", "list each once, fastest first")
        return value

    @property
    def engine_device(self) -> str:
        """The device as the engine names it (see `device_string`)."""
        return device_string(self.backend, self.device)

    def threads_or_cores(self) -> int:
        return self.threads or self.cores

    def runs_here(self) -> tuple[bool, str]:
        """Whether this host can run the profile's backend and device itself; if not, why (in words)."""
        machine = _MACHINE.get(platform.machine().lower(), platform.machine())
        if machine != self.arch:
            return False, f"this host is {machine}, the profile is {self.arch}"
        available = available_devices(self.backend)
        if available is None:
            return False, f"{self.backend} is not installed here"
        if not has_device(available, self.engine_device):
            return False, f"{self.backend} here has {', '.join(available) or 'no devices'}, not {self.engine_device}"
        return True, "runs here"

    def summary(self) -> dict[str, Any]:
        here, why = self.runs_here()
        return {
            **self.model_dump(),
            "latency_budget_ms": round(self.budget.latency_ms_per_frame(), 2),
            "runs_here": here,
            "here": why,
        }


def profile_names() -> list[str]:
    """The profiles edgecam ships."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by name, or a user's YAML file by path; EdgecamError naming the file and key otherwise."""
    text = str(name_or_path)
    if "\x00" in text:  # the OS refuses such a path with a ValueError, not an answer
        raise EdgecamError("a profile name or path cannot hold a NUL character", fix="check the --device value")
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.exists()):
        if text not in profile_names():
            raise EdgecamError(
                f"unknown device profile {text!r}",
                fix=f"use one of {', '.join(profile_names())}, or the path of your own profile YAML",
            )
        path = PROFILE_DIR / f"{text}.yaml"
    return _load_file(path.resolve())


@cache
def _load_file(path: Path) -> DeviceProfile:
    raw = read_yaml(path, "device profile")
    if not isinstance(raw, dict):
        raise EdgecamError("a device profile is a mapping of keys", path=path, fix="see devices/profiles/*.yaml")
    raw.setdefault("name", path.stem)
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as exc:
        raise model_error(exc, path) from None


def all_profiles() -> list[DeviceProfile]:
    return [load_profile(name) for name in profile_names()]


def format_profiles(profiles: list[DeviceProfile]) -> str:
    """The `edgecam devices` table."""
    rows = [("profile", "arch", "cores", "memory", "engine", "device", "precisions", "budget", "speed", "here")]
    for p in profiles:
        b = p.budget
        budget = f"{b.latency_ms:g} ms" if b.latency_ms else f"{b.fps:g} FPS x {b.cameras}"
        here, why = p.runs_here()
        speed = f"{p.speed_factor:g}x" + ("" if p.speed_factor_source == "measured" else " (est.)")
        rows.append(
            (
                p.name,
                p.arch,
                str(p.cores),
                f"{p.memory_mb / 1024:g} GiB",
                p.backend,
                p.engine_device,
                ",".join(p.precisions),
                f"{budget}, {b.peak_memory_mb} MB",
                speed,
                "yes" if here else f"no: {why}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"speed: latency relative to the reference host ({REFERENCE_HOST}); est. = not yet measured there")
    return "\n".join(lines)
