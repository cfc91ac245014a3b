"""cocalc-tasks: run code on CoCalc Jupyter kernels as pipeline steps.

>>> from cocalc_tasks import execute_code
>>> execute_code("factor(2023)", kernel="sage-9.8").text  # doctest: +SKIP
'7 * 17^2'

The base error classes are plain Python and load at once. Every other name loads on first use
(PEP 562), so importing an operator or task module that only refers to them stays cheap at
DAG-parse time; ``requests`` is imported when a client is first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocalc_tasks import errors
from cocalc_tasks._lazy import lazy_exports
from cocalc_tasks.model.errors import *  # noqa: F403  (the hierarchy's base, loaded at once)

__version__ = "0.1.0"

#: Lazily loaded public names and the module each comes from.
_EXPORTS = {
    **errors._EXPORTS,
    "execute_code": "cocalc_tasks.api",
    "list_kernels": "cocalc_tasks.api",
    "run_command": "cocalc_tasks.api",
    "run_script": "cocalc_tasks.api",
    "submit_command": "cocalc_tasks.api",
    "wait_for_job": "cocalc_tasks.api",
    "cancel_job": "cocalc_tasks.api",
    "whoami": "cocalc_tasks.api",
    "Whoami": "cocalc_tasks.model.identity",
    "ExecRequest": "cocalc_tasks.model.exec_requests",
    "CommandResult": "cocalc_tasks.model.command_results",
    "Job": "cocalc_tasks.model.command_results",
    "JobStatus": "cocalc_tasks.model.command_results",
    "JobStat": "cocalc_tasks.model.command_results",
    "CocalcClient": "cocalc_tasks.client.client",
    "ExecuteRequest": "cocalc_tasks.model.requests",
    "compute_hash": "cocalc_tasks.model.hashing",
    "ExecutionResult": "cocalc_tasks.model.results",
    "Image": "cocalc_tasks.model.results",
    "KernelSpec": "cocalc_tasks.model.results",
    "RemoteError": "cocalc_tasks.model.results",
    "KernelSession": "cocalc_tasks.client.kernel_session",
    "run_notebook": "cocalc_tasks.notebooks.run",
    "NotebookResult": "cocalc_tasks.notebooks.run",
    "NotebookCell": "cocalc_tasks.notebooks.run",
}

__all__ = sorted({*_EXPORTS, *errors.__all__})


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:
    from cocalc_tasks.api import cancel_job as cancel_job
    from cocalc_tasks.api import execute_code as execute_code
    from cocalc_tasks.api import list_kernels as list_kernels
    from cocalc_tasks.api import run_command as run_command
    from cocalc_tasks.api import run_script as run_script
    from cocalc_tasks.api import submit_command as submit_command
    from cocalc_tasks.api import wait_for_job as wait_for_job
    from cocalc_tasks.api import whoami as whoami
    from cocalc_tasks.client.client import CocalcClient as CocalcClient
    from cocalc_tasks.client.kernel_session import KernelSession as KernelSession
    from cocalc_tasks.errors import CocalcCommandError as CocalcCommandError
    from cocalc_tasks.errors import CocalcCommandTimeoutError as CocalcCommandTimeoutError
    from cocalc_tasks.errors import CocalcExecutionError as CocalcExecutionError
    from cocalc_tasks.errors import error_from_message as error_from_message
    from cocalc_tasks.model.command_results import CommandResult as CommandResult
    from cocalc_tasks.model.command_results import Job as Job
    from cocalc_tasks.model.command_results import JobStat as JobStat
    from cocalc_tasks.model.command_results import JobStatus as JobStatus
    from cocalc_tasks.model.exec_requests import ExecRequest as ExecRequest
    from cocalc_tasks.model.hashing import compute_hash as compute_hash
    from cocalc_tasks.model.identity import Whoami as Whoami
    from cocalc_tasks.model.requests import ExecuteRequest as ExecuteRequest
    from cocalc_tasks.model.results import ExecutionResult as ExecutionResult
    from cocalc_tasks.model.results import Image as Image
    from cocalc_tasks.model.results import KernelSpec as KernelSpec
    from cocalc_tasks.model.results import RemoteError as RemoteError
    from cocalc_tasks.notebooks.run import NotebookCell as NotebookCell
    from cocalc_tasks.notebooks.run import NotebookResult as NotebookResult
    from cocalc_tasks.notebooks.run import run_notebook as run_notebook
