"""cocalc-tasks: run code on CoCalc Jupyter kernels as pipeline steps.

>>> from cocalc_tasks import execute_code
>>> execute_code("factor(2023)", kernel="sage-9.8").text  # doctest: +SKIP
'7 * 17^2'
"""

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

__version__ = "0.1.0"

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
