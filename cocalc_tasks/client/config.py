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


@dataclass(frozen=True)
class Settings:
    host: str
    project_id: str | None
    api_key: str | None = field(default=None, repr=False)


def resolve_settings(
    api_key: str | None = None,
    host: str | None = None,
    project_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge arguments with the environment: arguments win; empty strings count as unset."""
    env = os.environ if environ is None else environ
    return Settings(
        api_key=api_key or env.get("COCALC_API_KEY") or None,
        host=(host or env.get("COCALC_HOST") or DEFAULT_HOST).rstrip("/"),
        project_id=project_id or env.get("COCALC_PROJECT_ID") or None,
    )
