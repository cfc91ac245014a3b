"""CocalcRunOperator: a command or script as a CoCalc exec job, for steps of any length.

A Jupyter cell on CoCalc is capped at 15-30 s; an exec job is not. The operator submits the
job, then either waits for it on the worker with the output streamed to the task log, or
(``deferrable=True``) hands the wait to :class:`~airflow_provider.triggers.cocalc.CocalcJobTrigger`
and frees the worker slot.

No job runs twice: the job id is kept in Airflow's task state store (``ResumableJobMixin``,
Airflow 3.3+) as soon as it exists. The next try of the same task instance, after a worker
crash or a transient error, attaches to the job if it still runs, and takes its result if it
ran to its end; only a job that was cancelled, killed at its timeout or forgotten by the
server is submitted anew. Below Airflow 3.3 every try submits a new job (the job id is still
pushed to XCom as ``cocalc_job_id``, but Airflow clears XCom at each try).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowTaskTimeout,
    BaseOperator,
    ResumableJobMixin,
    conf,
)

from airflow_provider.hooks.cocalc import CocalcHook
from airflow_provider.operators.cocalc import (
    PROJECT_URL_KEY,
    CocalcProjectLink,
    fail,
    job_key,
    project_url,
    read_code_file,
)
from cocalc_tasks.errors import CocalcError, CocalcUnknownJobError, CocalcValidationError
from cocalc_tasks.reporting import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from cocalc_tasks.model import CommandResult, ExecRequest

__all__ = [
    "JOB_ID_KEY",
    "CocalcJobStep",
    "CocalcRunOperator",
    "defer_to_trigger",
    "judge_job",
    "raise_for_event",
]

#: XCom key of the job id, pushed as soon as the job exists.
JOB_ID_KEY = "cocalc_job_id"
#: Default remote time limit of a job, in seconds (CoCalc's own default, 60 s, is a trap for
#: the long steps this operator is for).
DEFAULT_JOB_TIMEOUT = 3600.0
#: How long after the job's own timeout a deferred wait gives up on a silent server.
DEADLINE_MARGIN = 120.0
#: How long after the trigger's own deadline Airflow fails the deferred task by itself (the
#: trigger fires first and cancels the job; this only matters when no triggerer runs it).
TRIGGER_GRACE = 300.0
#: The trigger's ``reason`` when its deadline is the task's ``execution_timeout``.
EXECUTION_TIMEOUT = "execution_timeout"


class CocalcJobStep(ResumableJobMixin, BaseOperator):
    """What the run and notebook operators share: the hook, the job states that decide a
    retry, and the cancel on the way to a deferral that Airflow fails itself. A subclass
    sets ``cocalc_conn_id`` and says which job the task recorded (:meth:`recorded_job`)."""

    cocalc_conn_id: str
    _hook: CocalcHook | None = None

    @property
    def hook(self) -> CocalcHook:
        if self._hook is None:
            self._hook = CocalcHook(self.cocalc_conn_id)
        return self._hook

    def is_job_active(self, status: str) -> bool:
        return status == "running"

    def is_job_succeeded(self, status: str) -> bool:
        """A job that ran to its end is never run again, whatever its exit code (a notebook's
        failing cell included: it would fail again): its result stands. A cancelled or killed
        one is submitted anew."""
        return status == "completed"

    def recorded_job(self, context: Context) -> tuple[str, str] | None:
        """``(job id, project id)`` of the job this try recorded in XCom, if any."""
        raise NotImplementedError

    def link_job(self, context: Context, project_id: str, job_id: str) -> None:
        """Point the extra link at the job this try submitted or re-attached to (its page,
        where the server has job pages); the last one pushed is the one the task shows."""
        context["ti"].xcom_push(
            key=PROJECT_URL_KEY, value=project_url(self.hook, project_id, job_id)
        )

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """Cancel the job when Airflow fails the deferred task itself (no triggerer ran the
        trigger to its deadline), then let Airflow raise as usual."""
        if next_method == TRIGGER_FAILED and (job := self.recorded_job(context)):
            cancel_quietly(self.cocalc_conn_id, *job, self.log)
        return super().resume_execution(next_method, next_kwargs, context)


class CocalcRunOperator(CocalcJobStep):
    """Run a command, or code with an interpreter, as a CoCalc exec job.

    Args:
        command: A program (with ``args``) or a bash script. Templated.
        args: Arguments of ``command``. Templated.
        code: Code for ``interpreter`` (run through ``run_script``: any text arrives intact;
            Python and Sage print a final expression's value as a cell does). Templated.
        code_file: A file with the code (relative paths: the DAG's folder). The path is
            templated; the content is sent as written, never rendered.
        interpreter: ``python3`` (default), ``sage``, ``bash``, ``Rscript``... for ``code``.
        project_id: The project to run in (default: the connection's). Required by CoCalc.
        path: Working directory relative to the project's home.
        env: Variables added to the project's environment. Templated.
        timeout: Seconds before CoCalc kills the job (default one hour; 0: no limit).
        deferrable: Wait in the triggerer instead of on a worker (default: Airflow's
            ``[operators] default_deferrable``).
        poll_interval: Seconds between polls; each poll's new output goes to the task log.
        fail_on_nonzero: Fail the task (without retries) when the job exits non-zero or is
            killed. When False, the summary is returned whatever the exit code.
        wait_for_completion: False: submit the job and return ``{"job_id", "project_id"}``
            at once (fire and forget); a :class:`~airflow_provider.sensors.cocalc.CocalcJobSensor`
            given that value waits for the job and judges it as this operator would.
        max_xcom_chars: Characters kept of stdout and of stderr in the XCom value (the end).
        cocalc_conn_id: The ``cocalc`` connection.

    ``durable`` (a keyword of Airflow's ``ResumableJobMixin``, Airflow 3.3+; default True) keeps
    the job id across tries, so a retry re-attaches to the running job.

    Returns (XCom ``return_value``), when it waits: ``exit_code``, ``status``, ``ok``,
    ``stdout`` and ``stderr`` (cut to their ends), ``job_id``, ``elapsed``, ``command`` and
    ``stats`` (CPU and memory summary).
    """

    template_fields: Sequence[str] = (
        "command",
        "args",
        "code",
        "interpreter",
        "project_id",
        "path",
        "env",
        "code_file",
    )
    template_fields_renderers = {"command": "bash", "code": "py", "args": "json", "env": "json"}
    ui_color = "#4474c4"
    ui_fgcolor = "#fff"
    operator_extra_links = (CocalcProjectLink(),)
    #: Key of the job in the task state store; never rename (in-flight retries read it).
    external_id_key = "cocalc_job"

    def __init__(
        self,
        *,
        command: str | None = None,
        args: Sequence[str] | None = None,
        code: str | None = None,
        code_file: str | None = None,
        interpreter: str = "python3",
        project_id: str | None = None,
        path: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_JOB_TIMEOUT,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        fail_on_nonzero: bool = True,
        wait_for_completion: bool = True,
        max_xcom_chars: int = DEFAULT_MAX_CHARS,
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [
            name
            for name, v in (("command", command), ("code", code), ("code_file", code_file))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "CocalcRunOperator needs exactly one of command=, code= or code_file=, "
                f"got {', '.join(given) or 'none'}"
            )
        if args is not None and command is None:
            raise ValueError("args= goes with command=; a script gets its values from code")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        self.command = command
        self.args = args
        self.code = code
        self.code_file = code_file
        self.interpreter = interpreter
        self.project_id = project_id
        self.path = path
        self.env = env
        self.timeout = timeout
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.fail_on_nonzero = fail_on_nonzero
        self.wait_for_completion = wait_for_completion
        self.max_xcom_chars = max_xcom_chars
        self.cocalc_conn_id = cocalc_conn_id
        #: ``{"job_id", "project_id"}`` of the job this try submitted or attached to.
        self._job: dict[str, str] | None = None
        self._result: dict[str, Any] | None = None
        self._built: ExecRequest | None = None

    def _request(self) -> ExecRequest:
        """The job's request, built once per execution (after templating): the submit and
        the result's label share it, and ``code_file`` is read once."""
        if self._built is None:
            self._built = self._build_request()
        return self._built

    def _build_request(self) -> ExecRequest:
        from cocalc_tasks.model import ExecRequest, script_request

        project = self.project_id or self.hook.project_id
        options: dict[str, Any] = {
            "project_id": project,
            "path": self.path,
            "timeout": self.timeout,
            "env": self.env,
        }
        if self.command is not None:
            return ExecRequest(self.command, self.args, **options)
        code = self.code if self.code is not None else read_code_file(self, str(self.code_file))
        return script_request(code, self.interpreter, **options)

    # -- the steps: submit, or re-attach (ResumableJobMixin drives these) ----------------------
    def execute(self, context: Context) -> Any:
        try:  # the link first (a retry that re-attaches submits nothing to push it later)
            url = project_url(self.hook, self.project_id or self.hook.project_id)
        except Exception:  # a broken connection fails below, with its own message
            url = ""
        context["ti"].xcom_push(key=PROJECT_URL_KEY, value=url)
        try:
            if not self.wait_for_completion:  # the job key still stops a retry running it twice
                return self.submit_job(context)
            return self.execute_resumable(context)
        except CocalcError as exc:
            fail(exc)

    def submit_job(self, context: Context) -> Any:
        request = self._request()
        job = self.hook.client.submit_request(request, job_key=job_key(context))
        self._job = {"job_id": job.job_id, "project_id": job.project_id}
        ti = context["ti"]
        ti.xcom_push(key=JOB_ID_KEY, value=job.job_id)
        self.link_job(context, job.project_id, job.job_id)
        self.log.info("submitted CoCalc job %s: %s", job.job_id, request.display)
        return self._job

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """The job's status, or ``"unknown"`` when the server no longer has it."""
        job = _job_ref(external_id)
        try:
            status = self.hook.client.job(job["job_id"], project_id=job["project_id"])
        except CocalcUnknownJobError:
            return "unknown"
        self._job = job
        self.link_job(context, job["project_id"], job["job_id"])
        return status.status

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait for the job (or defer), then return :meth:`get_job_result`'s value.

        Airflow 3.3's mixin returns this method's value when it re-attaches, but calls
        ``get_job_result`` after it on a fresh submit: the result is therefore fetched here,
        once, and remembered."""
        job = self._job = _job_ref(external_id)
        if self.deferrable:
            defer_to_trigger(self, context, job, job_timeout=self.timeout)
        deadline = None
        if self.timeout:  # execution_timeout needs nothing here: Airflow interrupts the wait
            deadline = time.time() + float(self.timeout) + DEADLINE_MARGIN
        from cocalc_tasks.reporting import OutputLines

        lines = OutputLines.to_logger(self.log)
        self.log.info("waiting for CoCalc job %s", job["job_id"])
        self.hook.client.wait(
            job["job_id"],
            project_id=job["project_id"],
            on_output=lines.feed,
            poll_interval=self.poll_interval,
            deadline=None if deadline is None else deadline - time.time(),
        )
        lines.flush()
        return self.get_job_result(job, context)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        """Fetch the finished job (with its CPU and memory samples), log it, judge it."""

        job = self._job = _job_ref(external_id)
        if self._result is not None and self._result["job_id"] == job["job_id"]:
            return self._result
        self._result = judge_job(
            self.hook.client,
            job,
            self.log,
            display=self._display(),
            fail_on_nonzero=self.fail_on_nonzero,
            max_xcom_chars=self.max_xcom_chars,
        )
        return self._result

    def _display(self) -> str | None:
        try:
            return self._request().display
        except (CocalcError, OSError):
            return None

    # -- deferrable: the trigger's event ----------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        job = {"job_id": str(event.get("job_id")), "project_id": str(event.get("project_id"))}
        self._job = job
        raise_for_event(self.hook.client, event, self.log)  # retries re-attach to the job
        try:
            return self.get_job_result(job, context)
        except CocalcError as exc:
            fail(exc)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets of the run (Airflow's OpenLineage provider calls this when the
        task ends; :mod:`airflow_provider.lineage`)."""
        from airflow_provider.lineage import operator_lineage

        job, result = self._job or {}, self._result or {}
        return operator_lineage(
            self.hook.base_url,
            job.get("project_id") or self.project_id or self.hook.project_id,
            job_id=job.get("job_id"),
            kernel=None if self.command is not None else self.interpreter,
            status=result.get("status"),
            exit_code=result.get("exit_code"),
        )

    def recorded_job(self, context: Context) -> tuple[str, str] | None:
        job_id = context["ti"].xcom_pull(task_ids=self.task_id, key=JOB_ID_KEY)
        return (str(job_id), str(self._request().project_id)) if job_id else None

    # -- kill -----------------------------------------------------------------------------------
    def on_kill(self) -> None:
        """Cancel the running job (SIGTERM to the task, or its ``execution_timeout``).

        A new client sends the cancel: the hook's may be in the middle of a request."""
        job = self._job
        if job is None:
            return
        if self._hook is not None:
            self._hook.client.abort()
        status = CocalcHook(self.cocalc_conn_id).client.cancel(
            job["job_id"], project_id=job["project_id"]
        )
        self.log.info("cancelled CoCalc job %s: %s", job["job_id"], status.status)


def judge_job(
    client: Any,
    job: Mapping[str, str],
    log: Any,
    *,
    display: str | None = None,
    fail_on_nonzero: bool = True,
    max_xcom_chars: int = DEFAULT_MAX_CHARS,
) -> dict[str, Any]:
    """Fetch a finished job (with its CPU and memory samples), log it, and judge it: a
    non-zero exit or a killed job raises ``AirflowFailException`` when ``fail_on_nonzero``;
    otherwise the compact summary that goes to XCom. The run operator and the sensor share it."""
    from cocalc_tasks.reporting import command_dict, command_log_records

    status = client.job(job["job_id"], project_id=job["project_id"], stats=True)
    result: CommandResult = status.result(display)
    for level, message in command_log_records(result):
        getattr(log, level)("%s", message)
    if fail_on_nonzero and not result.ok:
        try:
            result.raise_for_status()
        except CocalcError as exc:
            raise AirflowFailException(str(exc)) from exc
    return command_dict(result, max_xcom_chars)


#: ``next_method`` of a deferred task that Airflow resumes only to fail it (trigger timeout).
TRIGGER_FAILED = "__fail__"


def wait_deadline(
    operator: BaseOperator, context: Context, job_timeout: float | None
) -> tuple[float | None, str | None]:
    """When a deferred wait gives up (a Unix time), and why: at the task's ``execution_timeout``
    (counted from the try's start, as for a task that never defers) or ``DEADLINE_MARGIN``
    after the job's own ``timeout``, whichever comes first.

    Airflow 3 applies ``execution_timeout`` only while a task runs on a worker, not while it
    is deferred: without this, a deferred task would wait past it, and its job run on."""
    now = time.time()
    job_end = now + float(job_timeout) + DEADLINE_MARGIN if job_timeout else None
    limit = operator.execution_timeout
    if limit is None:
        return job_end, None
    started = context["ti"].start_date
    task_end = (started.timestamp() if started else now) + limit.total_seconds()
    if job_end is not None and job_end <= task_end:
        return job_end, None
    return task_end, EXECUTION_TIMEOUT


def defer_to_trigger(
    operator: BaseOperator,
    context: Context,
    job: Mapping[str, str],
    *,
    job_timeout: float | None,
    kwargs: dict[str, Any] | None = None,
    notebook: bool = False,
) -> NoReturn:
    """Hand the wait for ``job`` to :class:`~airflow_provider.triggers.cocalc.CocalcJobTrigger`,
    with the deadline of :func:`wait_deadline`; resume in ``execute_complete``."""
    from airflow_provider.triggers.cocalc import LOGGED_KEY, CocalcJobTrigger

    deadline, reason = wait_deadline(operator, context, job_timeout)
    context["ti"].xcom_push(key=LOGGED_KEY, value={})  # nothing logged yet by a trigger
    operator.defer(
        trigger=CocalcJobTrigger(
            job_id=job["job_id"],
            project_id=job["project_id"],
            cocalc_conn_id=operator.cocalc_conn_id,  # type: ignore[attr-defined]
            poll_interval=operator.poll_interval,  # type: ignore[attr-defined]
            deadline=deadline,
            reason=reason,
            notebook=notebook,
        ),
        method_name="execute_complete",
        kwargs=kwargs,
        timeout=None
        if deadline is None
        else timedelta(seconds=max(deadline - time.time(), 0) + TRIGGER_GRACE),
    )


def cancel_quietly(conn_id: str, job_id: str, project_id: str, log: Any) -> None:
    """Cancel a job on the way to a failure that is already decided: log, never raise."""
    try:
        status = CocalcHook(conn_id).client.cancel(job_id, project_id=project_id)
        log.warning("cancelled CoCalc job %s: %s", job_id, status.status)
    except Exception as exc:
        log.error("could not cancel CoCalc job %s: %s", job_id, exc)


def raise_for_event(client: Any, event: Mapping[str, Any], log: Any, what: str = "job") -> None:
    """Return when :class:`~airflow_provider.triggers.cocalc.CocalcJobTrigger`'s event says
    the job is done. Otherwise raise what Airflow should see: a job that outlived its deadline
    is cancelled and ``AirflowException`` (retryable) raised, as for a transient failure of
    the wait, or ``AirflowTaskTimeout`` when the deadline was the task's ``execution_timeout``
    (retryable too, as Airflow's own timeouts are); any other failure is
    ``AirflowFailException``."""
    status = event.get("status")
    if status == "done":
        return
    job_id, project_id = str(event.get("job_id")), str(event.get("project_id"))
    if status == "timeout":
        log.error("%s %s outlived its deadline; cancelling it", what, job_id)
        try:
            client.cancel(job_id, project_id=project_id)
        except CocalcError as exc:
            fail(exc)
        if event.get("reason") == EXECUTION_TIMEOUT:
            raise AirflowTaskTimeout(
                f"the task's execution_timeout passed while waiting for {what} {job_id}; "
                "the job was cancelled"
            )
        raise AirflowException(str(event.get("message") or f"the {what} outlived its deadline"))
    message = f"waiting for {what} {job_id} failed: {event.get('message')}"
    if event.get("transient"):
        raise AirflowException(message)
    raise AirflowFailException(message)


def _job_ref(external_id: Any) -> dict[str, str]:
    """The stored ``{"job_id", "project_id"}``, checked (the store holds plain JSON)."""
    if (
        not isinstance(external_id, Mapping)
        or not isinstance(external_id.get("job_id"), str)
        or not isinstance(external_id.get("project_id"), str)
    ):
        raise CocalcValidationError(f"not a stored CoCalc job: {external_id!r:.200}")
    return {"job_id": external_id["job_id"], "project_id": external_id["project_id"]}
