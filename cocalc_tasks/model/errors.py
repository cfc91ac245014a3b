"""The base of the one error hierarchy: every error class that carries no result.

CoCalc reports failures as HTTP 200 with ``{"error": "<message>"}``;
:func:`~cocalc_tasks.model.messages.error_from_message` maps those verbatim messages
(``docs/cocalc-api.md`` §6.2) to these classes. An exception raised *by the remote code* is not a
transport failure: it arrives inside a successful result and becomes
:class:`~cocalc_tasks.model.results.CocalcExecutionError` only when the caller asks for it
(``raise_for_error``). The classes that carry a result are defined beside that result, so this
module imports nothing; :mod:`cocalc_tasks.errors` lists the whole hierarchy.

Every class carries ``transient``: ``True`` when trying the same call again later may succeed.
Orchestrator retry policies read that flag instead of keeping their own lists.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CocalcApiDisabledError",
    "CocalcAuthError",
    "CocalcBadRequestError",
    "CocalcCapabilityError",
    "CocalcConnectionError",
    "CocalcError",
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

    hint = "check the API key, and that it belongs to this server: cocalc-tasks whoami tells"


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
