"""Point Prefect at a local server: offline settings and a ``CocalcCredentials`` block.

Call :func:`offline_environment` before anything imports ``prefect``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect_tasks.credentials import CocalcCredentials

__all__ = ["credentials", "offline_environment"]


def offline_environment(home: str, *, log_level: str = "WARNING") -> None:
    """A private ``PREFECT_HOME``, no telemetry, quiet logs, a patient ephemeral server."""
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_MEMO_STORE_PATH": os.path.join(home, "memo_store.toml"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": log_level,
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        }
    )
    os.environ.pop("PREFECT_API_URL", None)


def credentials(host: str, api_key: str | None) -> CocalcCredentials:
    """A (not saved) credentials block for ``host``."""
    from pydantic import SecretStr

    from prefect_tasks.credentials import CocalcCredentials

    return CocalcCredentials(api_key=SecretStr(api_key) if api_key else None, host=host)
