"""Model registry: `@register_model` + `create_model(name, **kwargs)`; duplicate names are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecam.runtime.errors import EdgecamError

_MODELS: dict[str, Callable[..., Any]] = {}
_TASKS: dict[str, str] = {}


def register_model(task: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model builder under its function name for a task (`classify` or `detect`)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        _TASKS[name] = task
        return fn

    return wrap


def _load_families() -> None:
    # Importing the families registers them; kept here so callers need only this module.
    from edgecam.train.models import classifier, detector  # noqa: F401


def list_models(task: str | None = None) -> list[str]:
    _load_families()
    return sorted(n for n in _MODELS if task is None or _TASKS[n] == task)


def model_task(name: str) -> str:
    _load_families()
    if name not in _TASKS:
        raise EdgecamError(f"unknown model {name!r}", fix=f"choose one of {list_models()}")
    return _TASKS[name]


def create_model(name: str, **kwargs: Any) -> Any:
    """Build a registered model; `kwargs` are stored in checkpoints as the model args."""
    model_task(name)
    return _MODELS[name](**kwargs)
