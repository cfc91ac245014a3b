"""cocalc-tasks: run code on CoCalc Jupyter kernels as pipeline steps.

>>> from cocalc_tasks import execute_code
>>> execute_code("factor(2023)", kernel="sage-9.8").text  # doctest: +SKIP
'7 * 17^2'

Names load on first use (PEP 562), so importing an operator or task module that only refers to
them stays cheap at DAG-parse time; ``requests`` is imported when a client is first needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "execute_code": "cocalc_tasks.api",
    "list_kernels": "cocalc_tasks.api",
    "CocalcClient": "cocalc_tasks.client",
    "compute_hash": "cocalc_tasks.hashing",
    "ExecutionResult": "cocalc_tasks.models",
    "Image": "cocalc_tasks.models",
    "KernelSpec": "cocalc_tasks.models",
    "RemoteError": "cocalc_tasks.models",
    "KernelSession": "cocalc_tasks.session",
    **{
        name: "cocalc_tasks.errors"
        for name in (
            "CocalcApiDisabledError",
            "CocalcAuthError",
            "CocalcBadRequestError",
            "CocalcConnectionError",
            "CocalcError",
            "CocalcExecutionError",
            "CocalcKernelDiedError",
            "CocalcKernelError",
            "CocalcPermissionError",
            "CocalcQuotaError",
            "CocalcServerError",
            "CocalcTimeoutError",
            "CocalcUnknownKernelError",
            "CocalcValidationError",
        )
    },
}

__all__ = [
    "CocalcApiDisabledError",
    "CocalcAuthError",
    "CocalcBadRequestError",
    "CocalcClient",
    "CocalcConnectionError",
    "CocalcError",
    "CocalcExecutionError",
    "CocalcKernelDiedError",
    "CocalcKernelError",
    "CocalcPermissionError",
    "CocalcQuotaError",
    "CocalcServerError",
    "CocalcTimeoutError",
    "CocalcUnknownKernelError",
    "CocalcValidationError",
    "ExecutionResult",
    "Image",
    "KernelSession",
    "KernelSpec",
    "RemoteError",
    "compute_hash",
    "execute_code",
    "list_kernels",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cocalc_tasks' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from cocalc_tasks.api import execute_code, list_kernels
    from cocalc_tasks.client import CocalcClient
    from cocalc_tasks.errors import (
        CocalcApiDisabledError,
        CocalcAuthError,
        CocalcBadRequestError,
        CocalcConnectionError,
        CocalcError,
        CocalcExecutionError,
        CocalcKernelDiedError,
        CocalcKernelError,
        CocalcPermissionError,
        CocalcQuotaError,
        CocalcServerError,
        CocalcTimeoutError,
        CocalcUnknownKernelError,
        CocalcValidationError,
    )
    from cocalc_tasks.hashing import compute_hash
    from cocalc_tasks.models import ExecutionResult, Image, KernelSpec, RemoteError
    from cocalc_tasks.session import KernelSession
