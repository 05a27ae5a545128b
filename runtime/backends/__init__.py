"""Inference engines as plugins: each file in this folder registers one `Backend` under a name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from edgecam.runtime.backends.base import Backend
from edgecam.runtime.errors import EdgecamError

_REGISTRY: dict[str, type[Backend]] = {}
_DISCOVERED = False


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator; a second backend with the same name is a programming error."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"backend {cls.name!r} is already registered by {_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")
    _DISCOVERED = True


def backend_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def create_backend(name: str) -> Backend:
    """A fresh, unloaded backend by name (`onnxruntime`, `openvino`, ...)."""
    _discover()
    if name not in _REGISTRY:
        raise EdgecamError(f"unknown backend {name!r}", fix=f"choose one of {backend_names()}")
    return _REGISTRY[name]()


def backend_factory(name: str) -> Callable[[], Backend]:
    _discover()
    return _REGISTRY[name]


__all__ = ["Backend", "backend_names", "create_backend", "register_backend"]
