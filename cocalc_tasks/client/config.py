"""Settings from arguments, then ``COCALC_*`` environment variables, then defaults.

The variable names are those of CoCalc's own Python client: ``COCALC_API_KEY``,
``COCALC_HOST`` and ``COCALC_PROJECT_ID``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_TIMEOUT",
    "Settings",
    "Timeout",
    "resolve_settings",
]

DEFAULT_HOST = "https://cocalc.com"
#: A request timeout: seconds, or (connect, read) seconds, as requests takes it.
Timeout = float | tuple[float, float | None]
#: (connect, read) seconds. Own-project calls may need 60-90 s (project start + kernel spawn).
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 90.0)


_VARIABLES = {"api_key": "COCALC_API_KEY", "host": "COCALC_HOST", "project_id": "COCALC_PROJECT_ID"}


@dataclass(frozen=True)
class Settings:
    host: str
    project_id: str | None
    api_key: str | None = field(default=None, repr=False)
    #: Where each setting came from, for messages: the argument's own name (the CLI's option,
    #: the Airflow connection, the Prefect block), its ``COCALC_*`` variable, or the default.
    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        return self.sources.get(name, f"the {name} argument")


def resolve_settings(
    api_key: str | None = None,
    host: str | None = None,
    project_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    given_as: Mapping[str, str] | None = None,
) -> Settings:
    """Merge arguments with the environment: arguments win; empty strings count as unset.

    ``given_as`` names where the arguments came from (``{"host": "the --host option"}``), so
    that an error about a setting names the place to fix it."""
    env = os.environ if environ is None else environ
    given = {"api_key": api_key, "host": host, "project_id": project_id}
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for name, value in given.items():
        variable = _VARIABLES[name]
        if value:
            values[name] = value
            sources[name] = (given_as or {}).get(name, f"the {name} argument")
        elif env.get(variable):
            values[name], sources[name] = env[variable], variable
        else:
            values[name], sources[name] = None, "the default"
    return Settings(
        api_key=values["api_key"],
        host=(values["host"] or DEFAULT_HOST).rstrip("/"),
        project_id=values["project_id"],
        sources=sources,
    )
