"""Argument checks made before anything is sent; each failure names the bad argument."""

from __future__ import annotations

import re
import uuid

from cocalc_tasks.model.errors import CocalcValidationError

__all__ = ["type_name", "validate_hash", "validate_project_id"]

_HASH_RE = re.compile(r"^[0-9a-f]{40}$")


def type_name(value: object) -> str:
    return type(value).__name__


def validate_project_id(project_id: object) -> str:
    if not isinstance(project_id, str):
        raise CocalcValidationError(
            f"project_id must be a UUID string, got {type_name(project_id)}"
        )
    try:
        uuid.UUID(project_id)
    except ValueError:
        raise CocalcValidationError(f"project_id is not a valid UUID: {project_id!r}") from None
    return project_id


def validate_hash(value: object) -> str:
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise CocalcValidationError(
            f"hash must be 40 lowercase hex digits (a SHA-1), got {value!r:.60}"
        )
    return value
