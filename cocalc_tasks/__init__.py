"""cocalc-tasks: run code on CoCalc Jupyter kernels as pipeline steps.

>>> from cocalc_tasks import execute_code
>>> execute_code("factor(2023)", kernel="sage-9.8").text  # doctest: +SKIP
'7 * 17^2'

The error classes are plain Python and load at once. Every other name loads on first use
(PEP 562), so importing an operator or task module that only refers to them stays cheap at
DAG-parse time; ``requests`` is imported when a client is first needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cocalc_tasks import errors
from cocalc_tasks.errors import *  # noqa: F403  (the one error hierarchy, named in errors.__all__)

__version__ = "0.1.0"

#: Lazily loaded public names and the module each comes from.
_EXPORTS = {
    "execute_code": "cocalc_tasks.api",
    "list_kernels": "cocalc_tasks.api",
    "run_command": "cocalc_tasks.api",
    "run_script": "cocalc_tasks.api",
    "submit_command": "cocalc_tasks.api",
    "wait_for_job": "cocalc_tasks.api",
    "cancel_job": "cocalc_tasks.api",
    "ExecRequest": "cocalc_tasks.exec_request",
    "CommandResult": "cocalc_tasks.command_result",
    "Job": "cocalc_tasks.command_result",
    "JobStatus": "cocalc_tasks.command_result",
    "JobStat": "cocalc_tasks.command_result",
    "CocalcClient": "cocalc_tasks.client",
    "ExecuteRequest": "cocalc_tasks.request",
    "compute_hash": "cocalc_tasks.hashing",
    "ExecutionResult": "cocalc_tasks.models",
    "Image": "cocalc_tasks.models",
    "KernelSpec": "cocalc_tasks.models",
    "RemoteError": "cocalc_tasks.models",
    "KernelSession": "cocalc_tasks.session",
    "run_notebook": "cocalc_tasks.notebooks",
    "NotebookResult": "cocalc_tasks.notebooks",
    "NotebookCell": "cocalc_tasks.notebooks",
}

__all__ = sorted([*_EXPORTS, *errors.__all__])


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
    from cocalc_tasks.api import cancel_job as cancel_job
    from cocalc_tasks.api import execute_code as execute_code
    from cocalc_tasks.api import list_kernels as list_kernels
    from cocalc_tasks.api import run_command as run_command
    from cocalc_tasks.api import run_script as run_script
    from cocalc_tasks.api import submit_command as submit_command
    from cocalc_tasks.api import wait_for_job as wait_for_job
    from cocalc_tasks.client import CocalcClient as CocalcClient
    from cocalc_tasks.command_result import CommandResult as CommandResult
    from cocalc_tasks.command_result import Job as Job
    from cocalc_tasks.command_result import JobStat as JobStat
    from cocalc_tasks.command_result import JobStatus as JobStatus
    from cocalc_tasks.exec_request import ExecRequest as ExecRequest
    from cocalc_tasks.hashing import compute_hash as compute_hash
    from cocalc_tasks.models import ExecutionResult as ExecutionResult
    from cocalc_tasks.models import Image as Image
    from cocalc_tasks.models import KernelSpec as KernelSpec
    from cocalc_tasks.models import RemoteError as RemoteError
    from cocalc_tasks.notebooks import NotebookCell as NotebookCell
    from cocalc_tasks.notebooks import NotebookResult as NotebookResult
    from cocalc_tasks.notebooks import run_notebook as run_notebook
    from cocalc_tasks.request import ExecuteRequest as ExecuteRequest
    from cocalc_tasks.session import KernelSession as KernelSession
