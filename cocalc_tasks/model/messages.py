"""CoCalc's error messages, mapped to the typed errors (``docs/cocalc-api.md`` §6.2).

CoCalc reports failures as HTTP 200 with ``{"error": "<message>"}``; :func:`error_from_message`
turns that verbatim text into the matching class, and keeps the text.
"""

from __future__ import annotations

import re

from cocalc_tasks.model.command_results import CocalcCommandError, CocalcCommandTimeoutError
from cocalc_tasks.model.errors import (
    CocalcApiDisabledError,
    CocalcAuthError,
    CocalcBadRequestError,
    CocalcCapabilityError,
    CocalcError,
    CocalcKernelDiedError,
    CocalcPermissionError,
    CocalcQuotaError,
    CocalcServerError,
    CocalcTimeoutError,
    CocalcUnknownJobError,
    CocalcUnknownKernelError,
    CocalcUnsupportedError,
)

__all__ = ["error_from_message"]

# Verbatim messages (or distinctive fragments) from docs/cocalc-api.md §6, mapped to classes.
# Order matters: the first fragment found in the message wins.
_MESSAGE_MAP: tuple[tuple[str, type[CocalcError]], ...] = (
    ("lacks required capability", CocalcCapabilityError),
    ("permission denied", CocalcPermissionError),
    ("must be collaborator", CocalcPermissionError),
    ("must be a collaborator on", CocalcPermissionError),
    ("project specific api key must match", CocalcPermissionError),
    ("must be signed in", CocalcAuthError),
    ("must sign in with an account API key", CocalcAuthError),
    ("account_id must be specified", CocalcAuthError),
    ("MUST provide an api key", CocalcAuthError),
    ("You must provide authentication", CocalcAuthError),
    ("Unknown authorization type", CocalcAuthError),
    ("must sign in as project or account", CocalcAuthError),
    ("at least one of account_id or anonymous_id", CocalcAuthError),
    ("seconds of compute time per", CocalcQuotaError),
    ("too much overall usage", CocalcQuotaError),
    ("Unable to Spawn Jupyter Kernel", CocalcUnknownKernelError),
    ("No spec available for kernel", CocalcUnknownKernelError),
    ("Kernel last exited", CocalcKernelDiedError),
    ("Kernel last terminated", CocalcKernelDiedError),
    ("Jupyter API is not enabled", CocalcApiDisabledError),
    ("Jupyter API is not correctly configured", CocalcApiDisabledError),
    ("input or hash must not be null", CocalcBadRequestError),
    ("kernel must be specified", CocalcBadRequestError),
    ("must be valid uuid", CocalcBadRequestError),
    ("must specify project_id", CocalcBadRequestError),
    ("invalid exec request", CocalcBadRequestError),
    ("too many commands running", CocalcServerError),
    ("unknown function", CocalcUnsupportedError),
    ("method_not_allowed", CocalcUnsupportedError),
    # CoCalc master answers an `async_cancel` (which it does not know) with this TypeError.
    ("(reading 'split')", CocalcUnsupportedError),
)
_TIMEOUT_MESSAGES = frozenset({"timeout", "undefined", "error: timeout"})
# Master wraps every exec failure in this prefix; the rewrite does not (docs/exec-api.md).
_EXEC_PREFIX = re.compile(r"^Error executing command '.*?' with args '.*?' -- ", re.DOTALL)
_NONZERO = re.compile(
    r"^command '(?P<command>.*)' exited with nonzero code (?P<code>-?\d+) -- "
    r"stderr='(?P<stderr>.*)'$",
    re.DOTALL,
)
_NOT_RUN = re.compile(
    r"^command '(?P<command>.*)' was not able to run -- stderr='(?P<stderr>.*)'$", re.DOTALL
)
_KILLED = re.compile(r"^killed command '(?P<command>.*)'$", re.DOTALL)
_UNKNOWN_JOB = re.compile(r"^Async operation '(?P<job>.*)' does not exist\.$", re.DOTALL)


def error_from_message(message: object) -> CocalcError:
    """Turn the ``error`` value of a CoCalc response into the matching typed error.

    Unknown messages become a plain :class:`CocalcError` that keeps the text, so nothing the
    server said is lost.
    """
    text = message if isinstance(message, str) else repr(message)
    if text.strip().lower() in _TIMEOUT_MESSAGES or text.startswith("timeout - callHub"):
        return CocalcTimeoutError(f"the server timed out ({text.strip()!r})", server_message=text)
    exec_error = _exec_error(text)
    if exec_error is not None:
        return exec_error
    for fragment, cls in _MESSAGE_MAP:
        if fragment in text:
            return cls(text, server_message=text)
    return CocalcError(text, server_message=text)


def _exec_error(text: str) -> CocalcError | None:
    """The exec API's own failures, in either flavour (with or without master's prefix)."""
    core = _EXEC_PREFIX.sub("", text, count=1)
    if core.startswith("Error: "):
        core = core[len("Error: ") :]
    if match := _NONZERO.match(core):
        code = int(match["code"])
        return CocalcCommandError(
            f"command {match['command']!r} exited with code {code}",
            exit_code=code,
            stderr=match["stderr"],
            command=match["command"],
            server_message=text,
        )
    if match := _NOT_RUN.match(core):
        return CocalcCommandError(
            f"command {match['command']!r} could not be started",
            stderr=match["stderr"],
            command=match["command"],
            server_message=text,
        )
    if match := _KILLED.match(core):
        return CocalcCommandTimeoutError(
            f"the command was killed at its timeout ({core})",
            command=match["command"],
            server_message=text,
        )
    if match := _UNKNOWN_JOB.match(core):
        return CocalcUnknownJobError(
            f"no job {match['job']!r} in this project", job_id=match["job"], server_message=text
        )
    return None
