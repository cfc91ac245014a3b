"""Projects on the local server: a project's id, its directory, and paths inside it.

Each ``project_id`` has its own directory under the projects root; a ``path`` must stay inside
it, through ``..`` and symlinks alike. Every route that takes a project (Jupyter, exec, the
project bridge) checks the id here, with CoCalc's message.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from cocalc_tasks.server.api_error import ApiError

__all__ = ["INVALID_UUID", "PathEscape", "checked_project_id", "project_directory", "resolve_path"]

INVALID_UUID = "invalid account_id or project_id -- all must be valid uuid's"


def checked_project_id(value: object) -> str:
    """``value`` itself if it is a project id (a UUID); CoCalc's refusal otherwise."""
    if not isinstance(value, str):
        raise ApiError(INVALID_UUID)
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(INVALID_UUID) from None
    return value


class PathEscape(ValueError):
    """A ``path`` that leaves its project directory."""


def project_directory(root: Path, project_id: str) -> Path:
    directory = root / project_id.lower()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def resolve_path(base: Path, path: str) -> Path:
    """``base / path`` with symlinks resolved; refuses anything outside ``base``."""
    if "\x00" in path:
        raise PathEscape("path contains a NUL character")
    real_base = base.resolve()
    target = (real_base / path).resolve()
    if target != real_base and real_base not in target.parents:
        raise PathEscape(f"path {path!r} is outside the project directory")
    return target
