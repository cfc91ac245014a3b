"""The typed model every view shares: requests, results, output items and errors.

- :mod:`~cocalc_tasks.model.requests`: ``ExecuteRequest``, one Jupyter execute call;
- :mod:`~cocalc_tasks.model.exec_requests`: ``ExecRequest``, one exec API command;
- :mod:`~cocalc_tasks.model.results`: ``ExecutionResult`` and ``KernelSpec``;
- :mod:`~cocalc_tasks.model.output_items`: outputs parsed once into a typed union;
- :mod:`~cocalc_tasks.model.command_results`: ``CommandResult``, ``Job`` and ``JobStatus``;
- :mod:`~cocalc_tasks.model.identity`: ``Whoami``, what a server takes a key for;
- :mod:`~cocalc_tasks.model.notebook_cells`: between CoCalc's outputs and notebook cells;
- :mod:`~cocalc_tasks.model.errors` and :mod:`~cocalc_tasks.model.messages`: the error
  hierarchy's base, and CoCalc's messages mapped onto it (all listed in :mod:`cocalc_tasks.errors`);
- :mod:`~cocalc_tasks.model.hashing`, :mod:`~cocalc_tasks.model.validation`,
  :mod:`~cocalc_tasks.model.scripts`: CoCalc's content hash, argument checks, and the script
  transport of ``run_script``.

Nothing here does I/O; everything imports only the standard library (``nbformat`` on demand),
and each name below loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocalc_tasks._lazy import lazy_exports

_EXPORTS = {
    "CommandResult": "cocalc_tasks.model.command_results",
    "Job": "cocalc_tasks.model.command_results",
    "JobStat": "cocalc_tasks.model.command_results",
    "JobStatus": "cocalc_tasks.model.command_results",
    "ExecOptions": "cocalc_tasks.model.exec_requests",
    "ExecRequest": "cocalc_tasks.model.exec_requests",
    "script_request": "cocalc_tasks.model.exec_requests",
    "compute_hash": "cocalc_tasks.model.hashing",
    "ExecuteOptions": "cocalc_tasks.model.requests",
    "ExecuteRequest": "cocalc_tasks.model.requests",
    "ExecutionResult": "cocalc_tasks.model.results",
    "Image": "cocalc_tasks.model.results",
    "KernelSpec": "cocalc_tasks.model.results",
    "RemoteError": "cocalc_tasks.model.results",
    "Whoami": "cocalc_tasks.model.identity",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from cocalc_tasks.model.command_results import CommandResult as CommandResult
    from cocalc_tasks.model.command_results import Job as Job
    from cocalc_tasks.model.command_results import JobStat as JobStat
    from cocalc_tasks.model.command_results import JobStatus as JobStatus
    from cocalc_tasks.model.exec_requests import ExecOptions as ExecOptions
    from cocalc_tasks.model.exec_requests import ExecRequest as ExecRequest
    from cocalc_tasks.model.exec_requests import script_request as script_request
    from cocalc_tasks.model.hashing import compute_hash as compute_hash
    from cocalc_tasks.model.identity import Whoami as Whoami
    from cocalc_tasks.model.requests import ExecuteOptions as ExecuteOptions
    from cocalc_tasks.model.requests import ExecuteRequest as ExecuteRequest
    from cocalc_tasks.model.results import ExecutionResult as ExecutionResult
    from cocalc_tasks.model.results import Image as Image
    from cocalc_tasks.model.results import KernelSpec as KernelSpec
    from cocalc_tasks.model.results import RemoteError as RemoteError
