"""The one error hierarchy used by the client, the CLI, Airflow and Prefect.

CoCalc reports failures as HTTP 200 with ``{"error": "<message>"}``. :func:`error_from_message`
maps those verbatim messages (``docs/cocalc-api.md`` §6.2) to the classes below. An exception
raised *by the remote code* is not a transport failure: it arrives inside a successful result and
becomes :class:`CocalcExecutionError` only when the caller asks for it (``raise_for_error``).

Every class carries ``transient``: ``True`` when trying the same call again later may succeed.
Orchestrator retry policies read that flag instead of keeping their own lists.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cocalc_tasks.command_result import CommandResult
    from cocalc_tasks.models import ExecutionResult

__all__ = [
    "CocalcApiDisabledError",
    "CocalcAuthError",
    "CocalcBadRequestError",
    "CocalcCapabilityError",
    "CocalcCommandError",
    "CocalcCommandTimeoutError",
    "CocalcConnectionError",
    "CocalcError",
    "CocalcExecutionError",
    "CocalcKernelDiedError",
    "CocalcKernelError",
    "CocalcNotebookError",
    "CocalcPermissionError",
    "CocalcQuotaError",
    "CocalcServerError",
    "CocalcTimeoutError",
    "CocalcUnknownJobError",
    "CocalcUnknownKernelError",
    "CocalcUnsupportedError",
    "CocalcValidationError",
    "error_from_message",
]


class CocalcError(Exception):
    """Base class of every error raised by cocalc-tasks."""

    transient: ClassVar[bool] = False
    hint: ClassVar[str] = ""

    def __init__(self, message: str, *, server_message: str | None = None) -> None:
        self.message = message
        #: The verbatim ``error`` string sent by the server, when there was one.
        self.server_message = server_message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors and extra attributes do not survive Exception's default
        # pickling; errors must, because Airflow and Prefect pickle them across processes.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[CocalcError], args: tuple[Any, ...], state: dict[str, Any]) -> CocalcError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class CocalcAuthError(CocalcError):
    """The API key is missing, invalid, or not accepted for this request."""

    hint = "check the API key (COCALC_API_KEY) and that it belongs to this server"


class CocalcPermissionError(CocalcAuthError):
    """The key is valid but may not use this project."""

    hint = "use an account key of a collaborator, or the project's own key"


class CocalcCapabilityError(CocalcPermissionError):
    """The key lacks a capability the call needs (the rewrite's keys, e.g. ``project:exec``)."""

    hint = "give the API key the capability named in the message, for this project"


class CocalcQuotaError(CocalcError):
    """The hourly compute quota of the global pool is used up."""

    transient = True
    hint = "wait and retry, or run in your own project (project_id) which has no hourly quota"


class CocalcKernelError(CocalcError):
    """A problem with the Jupyter kernel itself."""


class CocalcUnknownKernelError(CocalcKernelError):
    """No kernel of that name exists on the server."""

    hint = "list the available kernels with `cocalc-tasks kernels`"


class CocalcKernelDiedError(CocalcKernelError):
    """The kernel process died or was killed while running the code."""

    transient = True
    hint = "the code may exceed the memory or CPU limits of the kernel"


class CocalcApiDisabledError(CocalcError):
    """The server does not offer the Jupyter API (or not the global pool)."""

    hint = "use your own project (project_id) or another server"


class CocalcUnsupportedError(CocalcApiDisabledError):
    """The server does not know this call (an older or newer CoCalc)."""

    hint = "this server does not offer that call; see the compatibility notes in the docs"


class CocalcBadRequestError(CocalcError):
    """The request is malformed: the server (or the client's own checks) refused it."""


class CocalcValidationError(CocalcBadRequestError, ValueError):
    """An argument is invalid; raised by the client before anything is sent."""


class CocalcTimeoutError(CocalcError):
    """No answer in time, from the client's HTTP timeout or the server's hub timeout."""

    transient = True
    hint = (
        "raise the client timeout or split the work; a command longer than CoCalc's 60 s "
        "request limit should be submitted as a job"
    )


class CocalcConnectionError(CocalcError):
    """The server could not be reached."""

    transient = True
    hint = "check COCALC_HOST and the network"


class CocalcServerError(CocalcError):
    """The server answered with something that is not a CoCalc API response.

    That covers non-2xx statuses, HTML pages from proxies, and truncated or non-JSON bodies.
    ``status_code`` and a short ``body_excerpt`` are kept for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body_excerpt: str = "",
        server_message: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body_excerpt = body_excerpt
        super().__init__(message, server_message=server_message)

    @property
    def transient(self) -> bool:  # type: ignore[override]
        """5xx and 429 may go away; other statuses will not."""
        return self.status_code is None or self.status_code >= 500 or self.status_code == 429


class CocalcExecutionError(CocalcError):
    """The remote code raised an exception. ``result`` holds all outputs up to the error."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        error = result.error
        assert error is not None, "CocalcExecutionError needs a result with an error"
        self.ename = error.ename
        self.evalue = error.evalue
        self.traceback = error.traceback
        summary = f"{error.ename}: {error.evalue}" if error.ename else f"error: {error.evalue}"
        super().__init__(f"remote code raised {summary}")

    @property
    def full_message(self) -> str:
        """The summary followed by the clean (ANSI-free) remote traceback."""
        return f"{self.message}\n{self.traceback}" if self.traceback else self.message


class CocalcCommandError(CocalcError):
    """A shell command exited with a non-zero code (or could not be started).

    ``exit_code`` is None when the program could not run at all. ``stderr`` is the command's
    own error output, without CoCalc's wrapping; ``result`` is the whole
    :class:`~cocalc_tasks.command_result.CommandResult` when the output was received.
    """

    hint = "the command failed; see its stderr"

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        stdout: str = "",
        stderr: str = "",
        command: str | None = None,
        result: CommandResult | None = None,
        server_message: str | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.command = command
        self.result = result
        super().__init__(message, server_message=server_message)


class CocalcCommandTimeoutError(CocalcCommandError, CocalcTimeoutError):
    """CoCalc killed the command (its whole process group) at its ``timeout``."""

    transient = False
    hint = "raise timeout=, or submit the command as a job (no 60 s request limit)"


class CocalcNotebookError(CocalcError):
    """A notebook cell raised. The executed notebook up to and including that cell was saved
    (``output``) and is in ``result``; ``cell`` is the failing cell's index (0-based, in the
    executed notebook, the injected parameters cell counted), ``ename``/``evalue`` the remote
    exception."""

    def __init__(
        self,
        message: str,
        *,
        cell: int | None = None,
        ename: str = "",
        evalue: str = "",
        output: str | None = None,
        result: Any = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, server_message=server_message)
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.output = output
        self.result = result


class CocalcUnknownJobError(CocalcError):
    """No async job of that id in that project."""

    hint = (
        "CoCalc keeps a job for one hour after it was last read, and forgets every job when "
        "the project restarts; check the project_id too"
    )

    def __init__(self, message: str, *, job_id: str = "", server_message: str | None = None):
        self.job_id = job_id
        super().__init__(message, server_message=server_message)


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
