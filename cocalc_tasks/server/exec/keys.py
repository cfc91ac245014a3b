"""Keyed async jobs, as CoCalc's rewrite (cocalc-ai) has them since August 2026.

An async exec call with a ``job_key`` attaches to the project's *running* job of that key, if
there is one, instead of starting a second process: its answer is that job's record (the same
``job_id``). The same key with a different command (or other execution options) is refused
with the rewrite's message. A finished key starts a new job. ``job_group`` is only echoed back.
The rewrite's behaviour is ``startOrAttachKeyedAsyncJob`` in
``src/packages/backend/execute-code.ts`` (sagemathinc/cocalc-ai). CoCalc master ignores both
fields, and so does the local server with ``--flavor master``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KeyedJob", "conflict_message", "keyed_job"]

_MAX = 8192
#: The options that make two calls the same job.
_SAME_JOB = ("command", "args", "path", "timeout", "max_output", "bash", "env", "err_on_exit")


class KeyRefused(ValueError):
    """A ``job_key`` or ``job_group`` the rewrite refuses."""


@dataclass(frozen=True)
class KeyedJob:
    """A call's key, group, and the fingerprint of what it runs."""

    key: str
    group: str | None
    fingerprint: str


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise KeyRefused(f"{name} must not be empty")
    if len(text) > _MAX:
        raise KeyRefused(f"{name} is too long")
    return text


def keyed_job(params: Mapping[str, Any]) -> KeyedJob | None:
    """The call's :class:`KeyedJob` (an async call with a ``job_key``), else None."""
    key = _text(params, "job_key")
    group = _text(params, "job_group")
    if key is None or params.get("async_call") is not True:
        return None
    same = {name: params.get(name) for name in _SAME_JOB}
    digest = hashlib.sha256(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()
    return KeyedJob(key, group, digest)


def conflict_message(key: str) -> str:
    return (
        f"Async job '{key}' was requested with conflicting commands for the same aggregate value."
    )
