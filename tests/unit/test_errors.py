"""Every error message of docs/cocalc-api.md §6 maps to its class."""

from __future__ import annotations

import pytest

from cocalc_tasks.errors import (
    CocalcApiDisabledError,
    CocalcAuthError,
    CocalcBadRequestError,
    CocalcError,
    CocalcKernelDiedError,
    CocalcPermissionError,
    CocalcQuotaError,
    CocalcServerError,
    CocalcTimeoutError,
    CocalcUnknownKernelError,
    error_from_message,
)

DOCUMENTED = [
    ("input or hash must not be null", CocalcBadRequestError),
    ("kernel must be specified in hash is not specified", CocalcBadRequestError),
    ("Jupyter API is not enabled on this server.", CocalcApiDisabledError),
    (
        "Jupyter API is not correctly configured (account_id is not a valid uuid) -- "
        "contact your site admin",
        CocalcApiDisabledError,
    ),
    ("at least one of account_id or anonymous_id must be set", CocalcAuthError),
    (
        "You may use at most 180 seconds of compute time per 1 hour. Sign in to increase "
        "your quota.",
        CocalcQuotaError,
    ),
    (
        "You may use at most 900 seconds of compute time per 1 hour. Please try again later "
        "or do this computation in a project.",
        CocalcQuotaError,
    ),
    (
        "There is too much overall usage of code evaluation right now.  Please try again "
        "later or do this computation in a project.",
        CocalcQuotaError,
    ),
    ("account_id must be specified -- make sure you are signed in", CocalcAuthError),
    ("permission denied -- user must be collaborator on project", CocalcPermissionError),
    ("invalid account_id or project_id -- all must be valid uuid's", CocalcBadRequestError),
    (
        'Error: **Unable to Spawn Jupyter Kernel:**\n\nError: No spec available for kernel "x".',
        CocalcUnknownKernelError,
    ),
    ("Error: Kernel last exited with code 137.", CocalcKernelDiedError),
    ("Error: Kernel last terminated by signal SIGKILL", CocalcKernelDiedError),
    ("timeout", CocalcTimeoutError),
    ("undefined", CocalcTimeoutError),
    ("must be signed in and MUST provide an api key (cookies are not allowed)", CocalcAuthError),
    ("You must provide authentication via an API key.", CocalcAuthError),
    ("Unknown authorization type 'Digest'", CocalcAuthError),
    ("must sign in as project or account", CocalcAuthError),
]


@pytest.mark.parametrize(("message", "cls"), DOCUMENTED)
def test_documented_message_maps_to_class(message: str, cls: type[CocalcError]) -> None:
    error = error_from_message(message)
    assert type(error) is cls
    assert error.server_message == message
    assert message in str(error) or cls is CocalcTimeoutError


def test_unknown_message_keeps_text() -> None:
    error = error_from_message("something new happened")
    assert type(error) is CocalcError and str(error) == "something new happened"


def test_non_string_error_value_is_kept() -> None:
    error = error_from_message({"code": 7})
    assert "7" in str(error)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (CocalcQuotaError("x"), True),
        (CocalcTimeoutError("x"), True),
        (CocalcAuthError("x"), False),
        (CocalcUnknownKernelError("x"), False),
        (CocalcServerError("x", status_code=502), True),
        (CocalcServerError("x", status_code=400), False),
        (CocalcServerError("x", status_code=None), True),
    ],
)
def test_transient_flag(error: CocalcError, transient: bool) -> None:
    assert error.transient is transient


def test_every_error_says_what_to_do() -> None:
    assert "cocalc-tasks whoami" in str(CocalcAuthError("bad key"))  # how to check a key
    assert "project" in str(CocalcQuotaError("quota"))


def _every_error_class() -> list[type[CocalcError]]:
    import cocalc_tasks.errors as errors

    found: list[type[CocalcError]] = []
    for name in errors.__all__:  # the documented list: some classes load on first use
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, CocalcError):
            found.append(value)
    assert len(found) == len(errors.__all__) - 1  # every name but error_from_message
    return found


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda c: c.__name__)
def test_every_error_class_survives_a_pickle_round_trip(cls: type[CocalcError]) -> None:
    """Airflow and Prefect pickle errors across processes (ProcessPoolTaskRunner, stored
    failures): every class must come back as itself, with its message and attributes."""
    import pickle

    from cocalc_tasks import ExecutionResult

    if cls.__name__ == "CocalcExecutionError":
        result = ExecutionResult.from_response(
            {"output": [{"ename": "KeyError", "evalue": "'x'", "traceback": ["tb"]}]},
            kernel="python3",
        )
        error: CocalcError = cls(result)  # type: ignore[call-arg]
    else:
        error = cls("something failed", server_message="verbatim")
        error.extra = {"n": 1}  # type: ignore[attr-defined]
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert type(clone) is cls and str(clone) == str(error) and clone.args == error.args
    assert clone.__dict__ == error.__dict__
