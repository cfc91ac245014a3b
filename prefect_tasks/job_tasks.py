"""Prefect tasks for CoCalc exec jobs: ``run_command`` and ``arun_command``.

A job has no Jupyter cell limit: these are for steps of any length. Each task submits the job,
streams its new output to the run logger while it runs, fetches the result with CPU and
memory samples, and creates a markdown artifact (command, exit code, elapsed time, samples).

- Retries: as ``execute_code``, only transient errors are retried; a non-zero exit never is.
  A retry of the same task run re-attaches to the job the earlier try started (running, or
  ran to its end) instead of starting a second one.
- Cancellation: a cancelled wait (flow-run cancellation, a task timeout in ``arun_command``,
  Ctrl-C) cancels the job. For jobs waited on in worker threads (``.map``/``.submit``), add
  :func:`~prefect_tasks.jobs.cancel_cocalc_jobs` to the flow's ``on_cancellation`` hooks.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from cocalc_tasks.errors import CocalcUnknownJobError
from cocalc_tasks.model import CommandResult, ExecRequest, Job
from cocalc_tasks.reporting import command_dict, command_log_records, command_markdown
from prefect_tasks.credentials import CocalcCredentials
from prefect_tasks.jobs import (
    DEFAULT_JOB_TIMEOUT,
    await_job,
    exec_request,
    record_job,
    run_logger,
    started_job,
    task_call,
    task_job_key,
    wait_job,
)
from prefect_tasks.tasks import TASK_OPTIONS

__all__ = ["arun_command", "run_command", "submit_command", "wait_for_job"]

#: The job each task run started, for its retries in this process (task run id -> job).
_STARTED: dict[uuid.UUID, Job] = {}

#: As ``execute_code``'s: no cache, no persisted result, retries for transient errors only.
_JOB_TASK_OPTIONS: dict[str, Any] = {**TASK_OPTIONS, "task_run_name": "cocalc-job"}


def _task_run_id() -> uuid.UUID | None:
    context = TaskRunContext.get()
    return context.task_run.id if context is not None else None


def _start(credentials: CocalcCredentials, request: ExecRequest) -> Job:
    """Re-attach to this task call's job from an earlier try, or submit a new one.

    The earlier try's job is found in this process's memory, or else in the flow run's labels
    (a try in a new process, after a worker died); and where the server honours job keys
    (CoCalc's rewrite), the submit itself returns it."""
    logger = run_logger()
    run_id = _task_run_id()
    call = task_call()
    with credentials.get_client() as client:
        earlier = _STARTED.get(run_id) if run_id is not None else None
        if earlier is not None:
            try:
                state: str = client.job(earlier.job_id, project_id=earlier.project_id).status
            except CocalcUnknownJobError:
                state = "unknown"
            if state in ("running", "completed"):
                logger.info("re-attaching to CoCalc job %s (%s)", earlier.job_id, state)
                return earlier
        recorded = started_job(credentials, call)
        if recorded is not None:
            return recorded
        job = client.submit_request(request, job_key=task_job_key())
    if run_id is not None:
        _STARTED[run_id] = job
    record_job(job, call=call)
    logger.info("submitted CoCalc job %s: %s", job.job_id, request.display)
    return job


def _finish(
    credentials: CocalcCredentials,
    job: Job,
    display: str | None,
    *,
    fail_on_nonzero: bool,
    artifact_key: str | None,
    as_dict: bool,
) -> CommandResult | dict[str, Any]:
    """Fetch the result with its samples, log it, make the artifact, judge the exit code."""
    with credentials.get_client() as client:
        status = client.job(job.job_id, project_id=job.project_id, stats=True)
        page = client.page_url(job.project_id, job.job_id)
    result = status.result(display)
    record_job(job, "done")
    run_id = _task_run_id()
    if run_id is not None:
        _STARTED.pop(run_id, None)
    logger = run_logger()
    for level, message in command_log_records(result):
        getattr(logger, level)("%s", message)
    create_markdown_artifact(
        markdown=command_markdown(result, title=f"CoCalc job: {display or job.job_id}", page=page),
        key=artifact_key,
        description=f"CoCalc job {job.job_id}: exit code {result.exit_code}",
        _sync=True,  # type: ignore[call-arg]
    )
    if fail_on_nonzero:
        result.raise_for_status()
    return command_dict(result) if as_dict else result


def _run_command(
    credentials: CocalcCredentials,
    command: str | None = None,
    args: list[str] | None = None,
    *,
    code: str | None = None,
    interpreter: str = "python3",
    project_id: str | None = None,
    path: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_JOB_TIMEOUT,
    poll_interval: float = 2.0,
    fail_on_nonzero: bool = True,
    artifact_key: str | None = None,
    as_dict: bool = False,
) -> CommandResult | dict[str, Any]:
    """Run a command, or code with an interpreter, as a CoCalc exec job and wait for it.

    Args:
        credentials: A :class:`CocalcCredentials` block.
        command: A program (with ``args``) or a bash script.
        args: Arguments of ``command``.
        code: Code for ``interpreter`` instead of a command (any text arrives intact; Python
            and Sage print a final expression's value as a cell does).
        interpreter: ``python3`` (default), ``sage``, ``bash``, ``Rscript``...
        project_id: The project (default: the block's). CoCalc requires one.
        path: Working directory relative to the project's home.
        env: Variables added to the project's environment.
        timeout: Seconds before CoCalc kills the job (default one hour; 0: no limit).
        poll_interval: Seconds between polls; each poll's new output goes to the run log.
        fail_on_nonzero: Raise :class:`~cocalc_tasks.CocalcCommandError` (never retried)
            when the job exits non-zero or is killed.
        artifact_key: Key of the markdown artifact (lowercase letters, digits, dashes).
        as_dict: Return the compact JSON-safe summary instead of the ``CommandResult``.

    Example:
        ```python
        from prefect import flow
        from prefect_tasks import CocalcCredentials, run_command

        @flow
        def nightly() -> str:
            credentials = CocalcCredentials.load("my-cocalc")
            return run_command(credentials, code="factor(2^255 - 1)", interpreter="sage").stdout
        ```
    """
    options = {"project_id": project_id, "path": path, "timeout": timeout, "env": env}
    request = exec_request(credentials, command, args, code, interpreter, options)
    job = _start(credentials, request)
    wait_job(credentials, job, poll_interval=poll_interval)  # a retry re-attaches to the job
    return _finish(
        credentials,
        job,
        request.display,
        fail_on_nonzero=fail_on_nonzero,
        artifact_key=artifact_key,
        as_dict=as_dict,
    )


run_command = task(**_JOB_TASK_OPTIONS)(_run_command)


@task(**_JOB_TASK_OPTIONS)
async def arun_command(
    credentials: CocalcCredentials,
    command: str | None = None,
    args: list[str] | None = None,
    *,
    code: str | None = None,
    interpreter: str = "python3",
    project_id: str | None = None,
    path: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_JOB_TIMEOUT,
    poll_interval: float = 2.0,
    fail_on_nonzero: bool = True,
    artifact_key: str | None = None,
    as_dict: bool = False,
) -> CommandResult | dict[str, Any]:
    """The async twin of :func:`run_command`, with the same parameters.

    The wait polls from the event loop (each request in a worker thread), so cancelling the
    task (flow-run cancellation, ``timeout_seconds``) stops it at once and cancels the job.
    """
    options = {"project_id": project_id, "path": path, "timeout": timeout, "env": env}
    request = exec_request(credentials, command, args, code, interpreter, options)
    job = await asyncio.to_thread(_start, credentials, request)
    await await_job(credentials, job, poll_interval=poll_interval)
    finish = functools.partial(
        _finish,
        fail_on_nonzero=fail_on_nonzero,
        artifact_key=artifact_key,
        as_dict=as_dict,
    )
    return await asyncio.to_thread(finish, credentials, job, request.display)


@task(**{**_JOB_TASK_OPTIONS, "task_run_name": "cocalc-submit"})
def submit_command(
    credentials: CocalcCredentials,
    command: str | None = None,
    args: list[str] | None = None,
    *,
    code: str | None = None,
    interpreter: str = "python3",
    project_id: str | None = None,
    path: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_JOB_TIMEOUT,
) -> Job:
    """Start a job as :func:`run_command` does, and return its :class:`~cocalc_tasks.Job` at
    once (fire and forget); :func:`wait_for_job` waits for it later and judges it as
    :func:`run_command` would. A retry of the same call attaches to the job it started.

    Example:
        ```python
        from prefect import flow
        from prefect_tasks import CocalcCredentials, submit_command, wait_for_job

        @flow
        def nightly() -> str:
            credentials = CocalcCredentials.load("my-cocalc")
            job = submit_command(credentials, code="factor(2^255 - 1)", interpreter="sage")
            ...  # other work while the job runs
            return wait_for_job(credentials, job).stdout
        ```
    """
    options = {"project_id": project_id, "path": path, "timeout": timeout, "env": env}
    request = exec_request(credentials, command, args, code, interpreter, options)
    return _start(credentials, request)


@task(**{**_JOB_TASK_OPTIONS, "task_run_name": "cocalc-wait"})
def wait_for_job(
    credentials: CocalcCredentials,
    job: Job | Mapping[str, Any] | str,
    *,
    project_id: str | None = None,
    poll_interval: float = 2.0,
    fail_on_nonzero: bool = True,
    artifact_key: str | None = None,
    as_dict: bool = False,
) -> CommandResult | dict[str, Any]:
    """Wait for a job (from :func:`submit_command`, a ``{"job_id", "project_id"}`` mapping, or
    a job id with ``project_id``), streaming its output, and return its result as
    :func:`run_command` does: the same artifact, and a non-zero exit raises
    :class:`~cocalc_tasks.CocalcCommandError` when ``fail_on_nonzero``. A cancelled flow run or
    an interrupted wait cancels the job."""
    if isinstance(job, str):
        project = project_id or credentials.project_id
        if not project:
            raise ValueError("wait_for_job needs the job's project: pass project_id=")
        job = Job(job_id=job, project_id=project)
    elif not isinstance(job, Job):
        job = Job(job_id=str(job["job_id"]), project_id=str(job["project_id"]))
    wait_job(credentials, job, poll_interval=poll_interval)
    return _finish(
        credentials,
        job,
        job.command,
        fail_on_nonzero=fail_on_nonzero,
        artifact_key=artifact_key,
        as_dict=as_dict,
    )
