"""Scenarios turn tracked results into events: a registry of named rule sets ("security", "retail", "none").

`create_scenario(name, config, class_names, source_id)` builds one from the camera's YAML config; adding a
scenario is one file here plus one `register_scenario` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios.base import Scenario
from edgecam.runtime.scenarios.retail import RetailScenario
from edgecam.runtime.scenarios.security import SecurityScenario
from edgecam.runtime.types import Classification, Detections, Event, Frame

if TYPE_CHECKING:
    from edgecam.runtime.tracker import Track

S = TypeVar("S", bound=type[Scenario])

_SCENARIOS: dict[str, type[Scenario]] = {}


def register_scenario(name: str) -> Callable[[S], S]:
    """Class decorator adding a scenario under `name`; a second class under the same name is refused."""

    def add(cls: S) -> S:
        if name in _SCENARIOS:
            raise EdgecamError(
                f"scenario {name!r} is already registered ({_SCENARIOS[name].__qualname__})",
                fix="register the new scenario under a different name",
            )
        _SCENARIOS[name] = cls
        return cls

    return add


def scenario_names() -> list[str]:
    return sorted(_SCENARIOS)


def create_scenario(name: str, config: Any, class_names: tuple[str, ...], source_id: str) -> Scenario:
    """The scenario `name` built from its config (a mapping, or typed settings from `runtime.config`); unknown names
    and bad config raise `EdgecamError`."""
    if hasattr(config, "to_dict"):  # ScenarioSettings: already checked for shape; class names are checked here
        config = config.to_dict()
    cls = _SCENARIOS.get(name)
    if cls is None:
        raise EdgecamError(f"unknown scenario {name!r}", fix=f"use one of: {', '.join(scenario_names())}")
    if config is not None and not isinstance(config, dict):
        raise EdgecamError(
            f"scenario {name!r}: config must be a mapping, got {type(config).__name__}",
            fix="write the scenario's settings as `key: value` lines",
        )
    return cls(config or {}, tuple(class_names), source_id)


class NoScenario(Scenario):
    """No rules: the camera only records and streams results."""

    name = "none"

    def __init__(self, config: dict[str, Any], class_names: tuple[str, ...], source_id: str) -> None:
        super().__init__(config, class_names, source_id)
        self.check_keys(self.config, (), "")

    def update(
        self,
        frame: Frame,
        detections: Detections | None,
        tracks: list[Track],
        classifications: list[Classification] | None,
    ) -> list[Event]:
        return []

    def state(self) -> dict[str, Any]:
        return {"scenario": self.name}


register_scenario("security")(SecurityScenario)
register_scenario("retail")(RetailScenario)
register_scenario("none")(NoScenario)

__all__ = [
    "NoScenario",
    "RetailScenario",
    "Scenario",
    "SecurityScenario",
    "create_scenario",
    "register_scenario",
    "scenario_names",
]
