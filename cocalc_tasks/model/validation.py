"""Argument checks made before anything is sent; each failure names the bad argument."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from cocalc_tasks.model.errors import CocalcValidationError

__all__ = ["type_name", "validate_hash", "validate_host", "validate_project_id"]

#: Where a project's id is found, for the messages about a wrong one.
WHERE_PROJECT_IDS_ARE = (
    "a project's id is the UUID in its URL on CoCalc (https://cocalc.com/projects/<id>/...); "
    "on the local server any UUID names a project"
)

_HASH_RE = re.compile(r"^[0-9a-f]{40}$")


def type_name(value: object) -> str:
    return type(value).__name__


def validate_project_id(project_id: object, source: str = "") -> str:
    """``source``: where the value came from (``COCALC_PROJECT_ID``, an option...)."""
    where = f" (from {source})" if source else ""
    if not isinstance(project_id, str):
        raise CocalcValidationError(
            f"project_id{where} must be a UUID string, got {type_name(project_id)}"
        )
    try:
        uuid.UUID(project_id)
    except ValueError:
        raise CocalcValidationError(
            f"project_id is not a valid UUID: {project_id!r:.80}{where}; {WHERE_PROJECT_IDS_ARE}"
        ) from None
    return project_id


def validate_host(host: str, source: str = "the host argument") -> str:
    """A base URL with a scheme (http or https), a host name and a valid port."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https"):
        if "://" not in host:
            raise CocalcValidationError(
                f"the host {host!r:.80} (from {source}) has no scheme: use http://{host} for a "
                f"plain-HTTP server such as the local one, or https://{host}"
            )
        raise CocalcValidationError(
            f"the host {host!r:.80} (from {source}) must start with http:// or https://"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise CocalcValidationError(
            f"the host {host!r:.80} (from {source}) has a bad port: a port is a number from 1 "
            "to 65535"
        )
    if not parts.hostname:
        raise CocalcValidationError(f"the host {host!r:.80} (from {source}) names no server")
    return host


def validate_hash(value: object) -> str:
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise CocalcValidationError(
            f"hash must be 40 lowercase hex digits (a SHA-1), got {value!r:.60}"
        )
    return value
