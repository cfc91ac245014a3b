"""Prefect integration for CoCalc: the ``CocalcCredentials`` block and tasks.

Install with ``pip install "cocalc-tasks[prefect]"``. The block is registered through the
``prefect.collections`` entry point, or with ``prefect block register -m prefect_tasks``.
"""

from prefect_tasks.credentials import CocalcCredentials
from prefect_tasks.job_tasks import arun_command, run_command, submit_command, wait_for_job
from prefect_tasks.jobs import CocalcJob, CocalcJobRun, cancel_cocalc_jobs
from prefect_tasks.notebooks import run_notebook
from prefect_tasks.tasks import (
    COCALC_CONTENT_HASH,
    aexecute_code,
    execute_code,
    list_kernels,
    retry_on_transient,
)

__all__ = [
    "COCALC_CONTENT_HASH",
    "CocalcCredentials",
    "CocalcJob",
    "CocalcJobRun",
    "aexecute_code",
    "arun_command",
    "cancel_cocalc_jobs",
    "execute_code",
    "list_kernels",
    "retry_on_transient",
    "run_command",
    "run_notebook",
    "submit_command",
    "wait_for_job",
]
