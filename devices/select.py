"""`--device X` on `run`, `verify` and `benchmark`: a device profile, or an engine's own device name.

A profile name (`edgecam devices`) or a profile YAML path gives the profile's backend, device and threads, and the
bundle variant of the first of its precisions (fastest first) that the bundle has. Anything else is an engine device
string for the chosen backend: CPU, GPU, NPU, AUTO... for OpenVINO; cpu, cuda, tensorrt, openvino or a full
`...ExecutionProvider` name for ONNX Runtime. Either way the device must be on this host: a missing one is an
EdgecamError naming what the host has, never a quiet run on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.devices.profiles import DeviceProfile, load_profile, profile_names
from edgecam.runtime.backends import create_backend
from edgecam.runtime.bundle import Bundle, Variant, load_bundle
from edgecam.runtime.device import backend_for_device, check_device
from edgecam.runtime.errors import EdgecamError

DEFAULT_BACKEND = "openvino"


@dataclass(frozen=True)
class DeviceChoice:
    """What `--device` (with `--backend`, `--variant`, `--threads`) resolved to."""

    backend: str
    device: str  # the engine's own name (CPU, NPU, CUDAExecutionProvider, ...)
    threads: int | None
    variant: str | None  # None: the bundle's default for the backend
    profile: DeviceProfile | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "variant": self.variant,
            "profile": self.profile.name if self.profile else None,
        }


def is_profile(text: str) -> bool:
    """A shipped profile's name or a YAML file's path (an engine device name is neither)."""
    return text in profile_names() or text.lower().endswith((".yaml", ".yml"))


def runnable_variants(bundle: Bundle, profile: DeviceProfile) -> list[Variant]:
    """The variants the profile runs, in its precision order (fastest first); within a precision the backend's own
    format first (OpenVINO: the IR before the ONNX file it can also read)."""
    formats = create_backend(profile.backend).formats
    found = []
    for precision in profile.precisions:
        same = [v for v in bundle.variants.values() if v.precision == precision and v.format in formats]
        found += sorted(same, key=lambda v: formats.index(v.format))
    return found


def profile_variant(bundle: Bundle, profile: DeviceProfile) -> Variant:
    """The variant the profile would run: the first of its precisions the bundle has in a format its backend reads."""
    found = runnable_variants(bundle, profile)
    if not found:
        have = ", ".join(f"{n} ({v.format} {v.precision})" for n, v in bundle.variants.items())
        raise EdgecamError(
            f"no variant of this bundle runs on profile {profile.name}: it needs "
            f"{' or '.join(create_backend(profile.backend).formats)} in {', '.join(profile.precisions)}; "
            f"the bundle has {have}",
            path=bundle.root,
            fix="export the precision the profile runs (edgecam export --int8, edgecam quantize) or choose --variant",
        )
    return found[0]


def choose_device(
    device: str | None,
    backend: str | None = None,
    bundle: Bundle | str | Path | None = None,
    variant: str | None = None,
    threads: int | None = None,
) -> DeviceChoice:
    """Resolve `--device` against the other flags. An explicit `--variant` / `--threads` wins over the profile's;
    an explicit `--backend` that differs from the profile's is refused (the profile names its engine)."""
    if not device:
        name = backend or DEFAULT_BACKEND
        return DeviceChoice(name, check_device(name, None), threads, variant)
    if not is_profile(device):
        name = backend or backend_for_device(device)
        return DeviceChoice(name, check_device(name, device), threads, variant)
    profile = load_profile(device)
    if backend is not None and backend != profile.backend:
        raise EdgecamError(
            f"profile {profile.name} runs {profile.backend}, not {backend}",
            fix=f"drop --backend, or give a device name for {backend} (e.g. --device CPU)",
        )
    try:
        engine_device = check_device(profile.backend, profile.device)
    except EdgecamError as exc:
        raise EdgecamError(f"profile {profile.name}: {exc.message}", path=exc.path, fix=exc.fix) from None
    if variant is None and bundle is not None:
        loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        variant = profile_variant(loaded, profile).name
    return DeviceChoice(profile.backend, engine_device, threads or profile.threads, variant, profile)
