"""Which device an engine runs on: OpenVINO's device (CPU, GPU, NPU, GPU.1, AUTO:GPU,CPU) or ONNX Runtime's
execution provider (cpu, cuda, tensorrt, ... or a full `...ExecutionProvider` name).

Why here and not with the device profiles: the runtime checks the device before an engine loads, and the device
runtime must not depend on the profile files. Why a check at all: ONNX Runtime quietly falls back to the CPU when a
provider is missing, and a box that should run on its GPU or NPU then runs slowly on the CPU with no word said.
"""

from __future__ import annotations

import re

from edgecam.runtime.errors import EdgecamError

DEFAULT_DEVICE = "CPU"
# ONNX Runtime's execution providers by a short name, so a profile (and `--device`) may say `cuda` or the full name.
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "acl": "ACLExecutionProvider",
}
# OpenVINO devices that stand for others: AUTO, AUTO:GPU,CPU, HETERO:GPU,CPU, MULTI:..., BATCH:GPU(4).
OV_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")
_OV_DEVICE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[0-9]+)?$")
_ORT_PROVIDER = re.compile(r"^[A-Za-z][A-Za-z0-9]*ExecutionProvider$")
# What to install when a device is missing, by the engine's name for it.
_INSTALL = {
    "GPU": "the Intel compute runtime (OpenCL) for OpenVINO's GPU plugin",
    "NPU": "the Intel NPU driver for OpenVINO's NPU plugin",
    "CUDAExecutionProvider": "onnxruntime-gpu (with CUDA) in place of onnxruntime",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT (on a Jetson: JetPack's onnxruntime-gpu wheel)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino in place of onnxruntime",
}


def device_string(backend: str, device: str) -> str:
    """The engine's own name for `device`: an OpenVINO device (CPU, GPU, NPU, GPU.1, AUTO:GPU,CPU) in upper case,
    an ONNX Runtime execution provider's full name."""
    if backend == "onnxruntime":
        return ORT_PROVIDERS.get(device.lower(), device)
    return device.upper()


def device_problem(backend: str, device: str) -> str | None:
    """Why `device` cannot name a device of `backend` at all (a typo, not a missing device), or None."""
    name = device_string(backend, device)
    if backend == "onnxruntime":
        if _ORT_PROVIDER.match(name):
            return None
        return f"{device!r} is not an ONNX Runtime execution provider (short names: {', '.join(ORT_PROVIDERS)})"
    if backend == "openvino":
        parts = ov_parts(name)
        if (parts or name == "AUTO") and all(_OV_DEVICE.match(part) for part in parts):
            return None
        return f"{device!r} is not an OpenVINO device name (e.g. CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU)"
    if device.upper() != DEFAULT_DEVICE:
        return f"the {backend} backend runs on the CPU only, not {device!r}"
    return None


def ov_parts(name: str) -> list[str]:
    """The physical devices an OpenVINO device string names: itself, or the list after a virtual device."""
    head, _, rest = name.partition(":")
    if head in OV_VIRTUAL:
        return [re.sub(r"\(\d+\)$", "", p) for p in rest.split(",")] if rest else []  # "" fails the name check
    return [name]


def available_devices(backend: str) -> list[str] | None:
    """The devices (OpenVINO) or execution providers (ONNX Runtime) this host has; None when the engine is absent."""
    try:
        if backend == "openvino":
            from edgecam.runtime.backends.openvino import core

            return list(core().available_devices)
        if backend == "onnxruntime":
            import onnxruntime as ort

            return list(ort.get_available_providers())
        return [DEFAULT_DEVICE]
    except (ImportError, EdgecamError):
        return None


def has_device(available: list[str], name: str) -> bool:
    """Whether a physical device `name` is among `available`: GPU matches GPU.0 when the host numbers its GPUs."""
    return name in available or ("." not in name and any(a.split(".")[0] == name for a in available))


def check_device(backend: str, device: str | None) -> str:
    """The engine's name for `device` (None: the CPU), after checking that this host has it; EdgecamError naming
    what the host has and how to get the device otherwise. Never a quiet fall back to the CPU."""
    device = device or DEFAULT_DEVICE
    problem = device_problem(backend, device)
    if problem:
        raise EdgecamError(problem, fix=f"this host runs {backend} on {' or '.join(_usable(backend))}")
    name = device_string(backend, device)
    if backend not in ("openvino", "onnxruntime"):
        return DEFAULT_DEVICE
    available = available_devices(backend)
    if available is None:
        raise EdgecamError(f"{backend} is not installed", fix=f"pip install {backend}")
    missing = [p for p in (ov_parts(name) if backend == "openvino" else [name]) if not has_device(available, p)]
    if missing:
        installs = [_INSTALL[m.split(".")[0]] for m in missing if m.split(".")[0] in _INSTALL]
        raise EdgecamError(
            f"device {name} is not available to {backend} on this host, which has {', '.join(available) or 'none'}",
            fix=f"use {' or '.join(_usable(backend))}" + "".join(f"; or install {i}" for i in installs),
        )
    return name


def _usable(backend: str) -> list[str]:
    """The device names this host's `backend` runs models on, as a user writes them (cpu for the CPU provider)."""
    available = available_devices(backend) or []
    if backend == "onnxruntime":
        short = {v: k for k, v in ORT_PROVIDERS.items()}
        return [short.get(p, p) for p in available if p != "AzureExecutionProvider"] or ["cpu"]
    if backend == "openvino":
        return [*available, "AUTO"] if available else ["CPU"]
    return [DEFAULT_DEVICE]


def backend_for_device(device: str) -> str:
    """The backend a bare device string belongs to when no backend is named: an ONNX Runtime execution provider
    (a short name other than cpu, or a full `...ExecutionProvider` name) means onnxruntime, anything else OpenVINO."""
    if _ORT_PROVIDER.match(device) or (device.lower() in ORT_PROVIDERS and device.lower() != "cpu"):
        return "onnxruntime"
    return "openvino"
