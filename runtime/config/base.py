"""Shared pieces of the typed configuration: the strict base model, checked value types, and the translation of a
pydantic `ValidationError` into the project's one-line `EdgecamError` (file, camera, key path, fix).

Why a translation: pydantic's own report is several lines per error with URLs; a person editing `cameras.yaml` on a
device needs `cameras.yaml: camera 'door': motion.mask[0]: ... (fix)`, the same shape the hand-written checks had.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.redact import mask_text
from edgecam.runtime.scenarios.geometry import validate_polygon, validate_roi, validate_segment, validate_span

Int = Annotated[int, Strict()]  # YAML `true` or `"5"` is a typo, not a count
Float = Annotated[float, Strict(), AllowInfNan(False)]  # integers are accepted, booleans and strings are not
Bool = Annotated[bool, Strict()]


def fail(what: str, fix: str, key: str | None = None) -> PydanticCustomError:
    """A validation error carrying our message and fix; `key` extends the location (a key inside the value)."""
    ctx: dict[str, Any] = {"what": what, "fix": fix}
    if key:
        ctx["key"] = key
    return PydanticCustomError("edgecam", "{what}", ctx)


class StrictModel(BaseModel):
    """Immutable, and unknown keys are refused (a misspelt `loiter_secnds` must not silently mean "default")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(cls.model_fields))
            if unknown:
                allowed = f"use: {', '.join(cls.model_fields)}" if cls.model_fields else "this section takes no keys"
                raise fail("unknown key", allowed, key=unknown[0])
        return data


def _geometry(check: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    """Reuse a geometry check (which names its key) as a pydantic validator (pydantic names the key)."""

    def run(value: Any) -> Any:
        try:
            return check(value, "@")
        except EdgecamError as exc:
            raise fail(exc.message.removeprefix("@: ").removeprefix("@"), exc.fix or "") from None

    return run


Point = tuple[float, float]
Polygon = Annotated[tuple[Point, ...], BeforeValidator(_geometry(validate_polygon))]
Segment = Annotated[tuple[Point, Point], BeforeValidator(_geometry(validate_segment))]
ROI = Annotated[tuple[int, int, int, int], BeforeValidator(_geometry(validate_roi))]
Span = Annotated[tuple[float, float], BeforeValidator(_geometry(validate_span))]


def resolve(path: Path | None, context: Any) -> Path | None:
    """Relative paths start at the config file's folder (`base_dir` in the validation context)."""
    if path is None:
        return None
    path = path.expanduser()
    base = context.get("base_dir") if isinstance(context, dict) else None
    return path if path.is_absolute() or base is None else Path(base) / path


# ---- ValidationError -> EdgecamError ---------------------------------------------------------------------------
_KINDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "path_type": "a path",
    "list_type": "a list",
    "tuple_type": "a list",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def key_path(parts: list[Any]) -> str:
    """('zones', 0, 'polygon') -> 'zones[0].polygon'."""
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def _short(value: Any) -> str:
    text = mask_text(repr(value))  # a camera URL's password is masked before the cut, which could hide its '@'
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: dict[str, Any]) -> tuple[str, str, str | None]:
    """(what went wrong, how to fix it, extra key) for one pydantic error dict."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    last = next((p for p in reversed(err["loc"]) if isinstance(p, str)), "it")
    if kind == "edgecam":
        return ctx["what"], ctx["fix"], ctx.get("key")
    if kind == "missing":
        return "missing", f"add `{last}:`; see docs/configuration.md", None
    if kind == "extra_forbidden":
        return "unknown key", "remove it or fix its spelling", None
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {type(value).__name__}", "write it as `key: value` lines", None
    if kind in _KINDS:
        return f"got {_short(value)}", f"use {_KINDS[kind]}", None
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        bound = f"{bound:g}" if isinstance(bound, (int, float)) else bound
        return f"got {_short(value)}", f"use a value {_BOUNDS[kind]} {bound}", None
    if kind == "literal_error":
        return f"got {_short(value)}", f"use one of {ctx.get('expected')}", None
    if kind in ("too_short", "too_long"):
        return (
            f"got {_short(value)}",
            err["msg"].replace("Value should", "it should").replace("List should", "it should"),
            None,
        )
    return f"got {_short(value)}: {err['msg']}", "see docs/configuration.md", None


def first_error(exc: ValidationError) -> dict[str, Any]:
    """The error to show: one line, the first in field order (pydantic reports them all)."""
    return exc.errors(include_url=False)[0]


def model_error(exc: ValidationError, origin: str | Path, prefix: str = "") -> EdgecamError:
    """A flat (camera-less) validation error as one `EdgecamError` line: `origin: prefix.key: what (fix)`."""
    err = first_error(exc)
    what, fix, extra = describe(err)
    parts = [p for p in err["loc"]] + ([extra] if extra else [])
    key = ".".join(x for x in (prefix, key_path(parts)) if x)
    return EdgecamError(f"{key}: {what}" if key else what, path=origin, fix=fix)


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # safe in file names, MQTT topics and URLs
