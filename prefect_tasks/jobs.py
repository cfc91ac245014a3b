"""CoCalc exec jobs in Prefect: the ``CocalcJob`` block (Prefect's ``JobBlock``/``JobRun``),
and what the job tasks share with it: record a job on its flow run, and cancel it.

Every job started inside a flow run is recorded as a label of that run,
``cocalc.job.<job id>: <project id>``, as soon as it exists. That record is what
:func:`cancel_cocalc_jobs` reads when the run is cancelled, in whichever process Prefect runs
the hook (the flow's own, or the runner's after it has stopped the flow's).

The task that started it is recorded too, ``cocalc.task.<task key>.<dynamic key>: <job id>
<project id>``: a later try of the same task in the same flow run, in this process or in a
new one after a worker died, finds its job there (:func:`started_job`) and attaches to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from prefect import get_run_logger
from prefect.blocks.abstract import JobBlock, JobRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from pydantic import Field

from cocalc_tasks import CocalcClient
from cocalc_tasks.client import poll_job
from cocalc_tasks.errors import CocalcError
from cocalc_tasks.model import CommandResult, ExecRequest, Job, JobStatus, script_request
from cocalc_tasks.reporting import OutputLines, command_log_records, command_markdown
from prefect_tasks.credentials import LOGO_URL, CocalcCredentials

__all__ = [
    "JOB_LABEL_PREFIX",
    "TASK_LABEL_PREFIX",
    "CocalcJob",
    "CocalcJobRun",
    "FlowRunCancelling",
    "await_job",
    "cancel_cocalc_jobs",
    "exec_request",
    "record_job",
    "started_job",
    "task_job_key",
]

#: Flow-run label of a job: ``cocalc.job.<job id>`` -> project id (``done`` once it ended).
JOB_LABEL_PREFIX = "cocalc.job."
#: Flow-run label of the job a task call started: ``cocalc.task.<task key>.<dynamic key>`` ->
#: ``<job id> <project id>``.
TASK_LABEL_PREFIX = "cocalc.task."
#: Default remote time limit of a job (CoCalc's own default, 60 s, is too short for jobs).
DEFAULT_JOB_TIMEOUT = 3600.0

log = logging.getLogger("prefect_tasks")


def exec_request(
    credentials: CocalcCredentials,
    command: str | None,
    args: list[str] | None,
    code: str | None,
    interpreter: str,
    options: Mapping[str, Any],
) -> ExecRequest:
    """The request for ``command``/``args`` or ``code``/``interpreter`` (exactly one), in
    ``options["project_id"]`` or else the credentials' project."""
    if (command is None) == (code is None):
        raise ValueError("a CoCalc job needs exactly one of command= or code=")
    options = {**options, "project_id": options.get("project_id") or credentials.project_id}
    if command is not None:
        return ExecRequest(command, args, **options)
    if args:
        raise ValueError("args= goes with command=; a script gets its values from code")
    return script_request(str(code), interpreter, **options)


def run_logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def task_call() -> str | None:
    """This task call's identity in its flow run, the same for each of its tries and across
    processes: ``<task key>.<dynamic key>`` (``None`` outside a task run)."""
    context = TaskRunContext.get()
    if context is None:
        return None
    return f"{context.task_run.task_key}.{context.task_run.dynamic_key}"


def task_job_key() -> str | None:
    """The ``job_key`` of this task call's job (see :func:`task_call`)."""
    context = TaskRunContext.get()
    call = task_call()
    if context is None or call is None:
        return None
    return f"prefect/{context.task_run.flow_run_id}/{call}"


def _flow_run_id() -> Any:
    task_context = TaskRunContext.get()
    if task_context is not None:
        return task_context.task_run.flow_run_id
    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


def record_job(job: Job, value: str | None = None, *, call: str | None = None) -> None:
    """Label the current flow run with the job, and with the task ``call`` that started it
    (best effort: without a run, or without an API to reach, the job is not recorded and only
    the task itself can cancel it)."""
    flow_run_id = _flow_run_id()
    if flow_run_id is None:
        return
    labels: dict[str, bool | int | float | str] = {
        JOB_LABEL_PREFIX + job.job_id: value or job.project_id
    }
    if call is not None:
        labels[TASK_LABEL_PREFIX + call] = f"{job.job_id} {job.project_id}"
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(flow_run_id, labels)
    except Exception as exc:
        log.debug("could not label the flow run with job %s: %s", job.job_id, exc)


def started_job(credentials: CocalcCredentials, call: str | None) -> Job | None:
    """The job an earlier try of this task ``call`` started, from its flow run's labels, when
    it still runs or ran to its end (a cancelled, killed or forgotten one is not reused)."""
    flow_run_id = _flow_run_id()
    if call is None or flow_run_id is None:
        return None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as api:
            labels = dict(api.read_flow_run(flow_run_id).labels or {})
    except Exception as exc:
        log.debug("could not read flow run %s: %s", flow_run_id, exc)
        return None
    value = labels.get(TASK_LABEL_PREFIX + call)
    if not isinstance(value, str) or len(value.split()) != 2:
        return None
    job_id, project_id = value.split()
    job = Job(job_id=job_id, project_id=project_id)
    try:
        with credentials.get_client() as client:
            state = client.job(job_id, project_id=project_id).status
    except CocalcError:
        return None
    if state not in ("running", "completed"):
        return None
    run_logger().info("re-attaching to CoCalc job %s (%s)", job_id, state)
    return job


def cancel_job(credentials: CocalcCredentials, job: Job) -> None:
    """Cancel ``job`` with a new client (the task's own may be mid-request)."""
    try:
        with credentials.get_client() as client:
            status = client.cancel(job.job_id, project_id=job.project_id)
        run_logger().warning("cancelled CoCalc job %s: %s", job.job_id, status.status)
    except Exception as exc:
        run_logger().error("could not cancel CoCalc job %s: %s", job.job_id, exc)


async def acancel_job(credentials: CocalcCredentials, job: Job) -> None:
    """:func:`cancel_job` from async code that is being cancelled: shielded, so the cancel
    request itself is not cancelled with the scope (e.g. a task's ``timeout_seconds``)."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(cancel_job, credentials, job)


async def await_job(credentials: CocalcCredentials, job: Job, *, poll_interval: float) -> JobStatus:
    """Poll until ``job`` ends (:func:`~cocalc_tasks.client.job_polling.poll_job`), each new line
    to the run logger. A cancelled wait (flow-run cancellation, a task's ``timeout_seconds``)
    or a cancelling flow run (:class:`CancellationWatch`) cancels the job."""
    lines = OutputLines.to_logger(run_logger())
    watch = CancellationWatch()

    def on_status(status: JobStatus) -> None:
        lines.update(status)
        watch(status)

    client = credentials.get_client()
    try:
        return await poll_job(
            client, job.job_id, job.project_id, poll_interval=poll_interval, on_status=on_status
        )
    except (asyncio.CancelledError, FlowRunCancelling):
        await acancel_job(credentials, job)
        raise
    finally:
        lines.flush()
        client.close()


def wait_job(
    credentials: CocalcCredentials,
    job: Job,
    *,
    poll_interval: float,
    cancel_on_error: bool = False,
) -> CommandResult:
    """:func:`await_job` for sync tasks: wait for ``job``, each new line to the run logger.
    A cancelling flow run (:class:`CancellationWatch`) or an interrupt (Ctrl-C, a cancellation
    raised in the flow's main thread) cancels the job. Any other error leaves it running, for
    a retry that re-attaches to it; ``cancel_on_error`` cancels it then too, for tasks whose
    retry starts a new job (two would run)."""
    lines = OutputLines.to_logger(run_logger())
    watch = CancellationWatch()
    with credentials.get_client() as client:
        try:
            return client.wait(
                job, on_output=lines.feed, on_status=watch, poll_interval=poll_interval
            )
        except Exception as exc:
            if cancel_on_error or isinstance(exc, FlowRunCancelling):
                cancel_job(credentials, job)
            raise
        except BaseException:
            cancel_job(credentials, job)
            raise
        finally:
            lines.flush()


class FlowRunCancelling(Exception):
    """The flow run is being cancelled: the job was cancelled and the task stops waiting."""


class CancellationWatch:
    """An ``on_status`` callback that raises :class:`FlowRunCancelling` once the current flow
    run is cancelling (its state is read at most every ``every`` seconds).

    It lets a wait that Prefect cannot interrupt (a sync task in a worker thread, ``.map``)
    notice the cancellation and cancel its job."""

    def __init__(self, every: float = 5.0) -> None:
        context = FlowRunContext.get()
        self.flow_run_id = context.flow_run.id if context and context.flow_run else None
        self.every = every
        self._next = time.monotonic() + every

    def __call__(self, status: Any = None) -> None:
        if self.flow_run_id is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every
        try:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                state = client.read_flow_run(self.flow_run_id).state
        except Exception as exc:
            log.debug("could not read flow run %s: %s", self.flow_run_id, exc)
            return
        if state is not None and (state.is_cancelling() or state.is_cancelled()):
            raise FlowRunCancelling(f"flow run {self.flow_run_id} is being cancelled")


def cancel_cocalc_jobs(
    credentials: CocalcCredentials | str | Callable[[], CocalcCredentials],
) -> Callable[..., None]:
    """A flow ``on_cancellation`` hook that cancels the run's CoCalc jobs still running.

    ``credentials`` is a block, the name of a saved one, or a function that returns one (both
    called when the hook runs)::

        @flow(on_cancellation=[cancel_cocalc_jobs("my-cocalc")])
        def nightly(): ...

    The jobs come from the flow run's labels, so the hook works where Prefect runs it: in the
    flow's process, or in the runner's once the flow's process is gone.
    """

    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            labels = dict(client.read_flow_run(flow_run.id).labels or {})
        jobs = [
            Job(job_id=key[len(JOB_LABEL_PREFIX) :], project_id=str(project))
            for key, project in labels.items()
            if key.startswith(JOB_LABEL_PREFIX) and project != "done"
        ]
        block = CocalcCredentials.load(credentials) if isinstance(credentials, str) else credentials
        for job in jobs:
            cancel_job(block, job)  # type: ignore[arg-type]

    hook.__name__ = "cancel_cocalc_jobs"
    return hook


class CocalcJobRun(JobRun[CommandResult]):
    """A started CoCalc job: wait for it (its output streams to the run logger), then fetch
    its :class:`~cocalc_tasks.CommandResult`."""

    def __init__(self, block: CocalcJob, job: Job, request: ExecRequest) -> None:
        self.block = block
        self.job = job
        self.request = request
        self.status: str = job.status

    async def wait_for_completion(self) -> Any:
        """Poll until the job ends, logging each new line; a cancelled wait (task timeout,
        flow cancellation) cancels the job."""
        status = await await_job(
            self.block.credentials, self.job, poll_interval=self.block.poll_interval
        )
        self.status = status.status
        await asyncio.to_thread(record_job, self.job, "done")
        return self.logger

    async def fetch_result(self) -> CommandResult:
        """The finished job's result with its CPU and memory samples, logged; a non-zero exit
        raises :class:`~cocalc_tasks.CocalcCommandError` when ``fail_on_nonzero``."""

        def fetch() -> CommandResult:
            with self.block.credentials.get_client() as client:
                status = client.job(self.job.job_id, project_id=self.job.project_id, stats=True)
            return status.result(self.request.display)

        result = await asyncio.to_thread(fetch)
        for level, message in command_log_records(result):
            getattr(self.logger, level)("%s", message)
        return result.raise_for_status() if self.block.fail_on_nonzero else result

    def markdown(self, result: CommandResult) -> str:
        return command_markdown(result, title=f"CoCalc job: {self.request.display}")


class CocalcJob(JobBlock[CommandResult]):
    """A command, or code with an interpreter, to run as a CoCalc exec job (no Jupyter cell
    limit).

    Example:
        ```python
        from prefect import flow
        from prefect_tasks import CocalcCredentials, CocalcJob

        @flow
        async def nightly() -> str:
            job = CocalcJob(
                credentials=CocalcCredentials.load("my-cocalc"),
                code="factor(2^255 - 1)",
                interpreter="sage",
            )
            run = await job.trigger()
            await run.wait_for_completion()
            return (await run.fetch_result()).stdout
        ```
    """

    _block_type_name = "CoCalc Job"
    _block_type_slug = "cocalc-job"
    _documentation_url = "https://cocalc-tasks.github.io/cocalc-tasks/guides/prefect.html"  # type: ignore[assignment]
    _logo_url = LOGO_URL  # type: ignore[assignment]

    credentials: CocalcCredentials = Field(description="Where to run, with which key.")
    command: str | None = Field(default=None, description="A program, or a bash script.")
    args: list[str] | None = Field(default=None, description="Arguments of the command.")
    code: str | None = Field(default=None, description="Code to run with the interpreter.")
    interpreter: str = Field(default="python3", description="python3, sage, bash, Rscript...")
    project_id: str | None = Field(default=None, description="Project (default: the block's).")
    path: str | None = Field(default=None, description="Working directory in the project.")
    env: dict[str, str] | None = Field(default=None, description="Environment variables.")
    timeout: float = Field(
        default=DEFAULT_JOB_TIMEOUT, description="Seconds before CoCalc kills the job; 0: none."
    )
    poll_interval: float = Field(default=2.0, gt=0, description="Seconds between polls.")
    fail_on_nonzero: bool = Field(
        default=True, description="fetch_result raises when the job exits non-zero."
    )

    def request(self) -> ExecRequest:
        options = {
            "project_id": self.project_id,
            "path": self.path,
            "timeout": self.timeout,
            "env": self.env,
        }
        return exec_request(
            self.credentials, self.command, self.args, self.code, self.interpreter, options
        )

    async def trigger(self) -> CocalcJobRun:
        """Submit the job and return its :class:`CocalcJobRun` at once."""
        request = self.request()

        def submit() -> Job:
            client: CocalcClient
            with self.credentials.get_client() as client:
                return client.submit_request(request)

        job = await asyncio.to_thread(submit)
        await asyncio.to_thread(record_job, job)
        self.logger.info("submitted CoCalc job %s: %s", job.job_id, request.display)
        return CocalcJobRun(self, job, request)
