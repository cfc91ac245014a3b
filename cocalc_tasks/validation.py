"""Argument checks made before anything is sent; each failure names the bad argument."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from cocalc_tasks.errors import CocalcValidationError

__all__ = ["validate_execute", "validate_hash", "validate_project_id"]

_HASH_RE = re.compile(r"^[0-9a-f]{40}$")


def _type_name(value: object) -> str:
    return type(value).__name__


def validate_project_id(project_id: object) -> str:
    if not isinstance(project_id, str):
        raise CocalcValidationError(
            f"project_id must be a UUID string, got {_type_name(project_id)}"
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


def validate_execute(
    input: object,
    kernel: object,
    history: object,
    project_id: object,
    path: object,
) -> list[str]:
    """Check execute arguments; return ``history`` as a list."""
    if not isinstance(kernel, str) or not kernel.strip():
        raise CocalcValidationError(
            f"kernel must be a non-empty string such as 'python3', got {kernel!r:.60}"
        )
    if not isinstance(input, str):
        raise CocalcValidationError(f"input must be a string of code, got {_type_name(input)}")
    if history is None:
        history_list: list[str] = []
    elif isinstance(history, str) or not isinstance(history, Sequence):
        raise CocalcValidationError(f"history must be a list of strings, got {_type_name(history)}")
    else:
        history_list = list(history)
        for index, item in enumerate(history_list):
            if not isinstance(item, str):
                raise CocalcValidationError(
                    f"history[{index}] must be a string, got {_type_name(item)}"
                )
    if project_id is not None:
        validate_project_id(project_id)
    if path is not None and not isinstance(path, str):
        raise CocalcValidationError(f"path must be a string, got {_type_name(path)}")
    return history_list
