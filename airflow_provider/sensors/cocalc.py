"""CocalcJobSensor: waits for a CoCalc job that another task started, and judges it.

The pair is fire-and-forget with a sensor, as dbt Cloud's ``wait_for_termination=False`` with
``DbtCloudJobRunSensor``: a run or notebook operator with ``wait_for_completion=False``
returns its job at once, and the sensor waits for it (``poke``, ``reschedule`` or deferred)
and returns what the operator would have returned.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider.hooks.cocalc import CocalcHook
from airflow_provider.operators.cocalc import fail
from airflow_provider.operators.job import TRIGGER_GRACE, judge_job
from airflow_provider.operators.notebook import collect_notebook
from cocalc_tasks.errors import CocalcError, CocalcValidationError
from cocalc_tasks.reporting import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["CocalcJobSensor"]

#: Keys that make a job record a notebook run (``CocalcNotebookOperator``'s return value).
_NOTEBOOK_KEYS = frozenset({"workdir", "parameters"})


class CocalcJobSensor(BaseSensorOperator):
    """Wait for a CoCalc job and judge its end as the operator that started it would.

    Args:
        job: What the starting task returned with ``wait_for_completion=False`` (pass its
            ``.output``): ``CocalcRunOperator``'s ``{"job_id", "project_id"}``, or
            ``CocalcNotebookOperator``'s run record, whose executed notebook is then saved.
            Or a job id, e.g. ``"{{ ti.xcom_pull(task_ids='start', key='cocalc_job_id') }}"``.
            Templated.
        project_id: The job's project when ``job`` is an id (default: the connection's).
        fail_on_nonzero: Fail (without retries) when the job exits non-zero or is killed.
        max_xcom_chars: Characters kept of stdout and of stderr in the XCom value.
        deferrable: Wait in the triggerer (default: ``[operators] default_deferrable``).
        cocalc_conn_id: The ``cocalc`` connection.

    The sensor's own ``timeout`` (and ``execution_timeout``) bound the wait, in every mode; a
    sensor only watches, so the job keeps running when it gives up. Returns (XCom
    ``return_value``) the starting operator's summary.
    """

    template_fields: Sequence[str] = ("job", "project_id")
    ui_color = "#4474c4"
    ui_fgcolor = "#fff"

    def __init__(
        self,
        *,
        job: str | Mapping[str, Any],
        project_id: str | None = None,
        fail_on_nonzero: bool = True,
        max_xcom_chars: int = DEFAULT_MAX_CHARS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.project_id = project_id
        self.fail_on_nonzero = fail_on_nonzero
        self.max_xcom_chars = max_xcom_chars
        self.deferrable = deferrable
        self.cocalc_conn_id = cocalc_conn_id

    # -- what to wait for ------------------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        """The job as ``{"job_id", "project_id", ...}``, from whichever form ``job`` took."""
        if isinstance(self.job, Mapping):
            record = dict(self.job)
        elif isinstance(self.job, str) and self.job.strip():
            record = {"job_id": self.job.strip()}
        else:
            raise CocalcValidationError(
                f"job must be a job id or the starting task's return value, got {self.job!r:.200}"
            )
        if not record.get("job_id"):
            raise CocalcValidationError(f"no job_id in job {self.job!r:.200}")
        record["project_id"] = (
            record.get("project_id")
            or self.project_id
            or CocalcHook(self.cocalc_conn_id).project_id
        )
        if not record["project_id"]:
            raise CocalcValidationError(
                "the job's project is unknown: give project_id= or a connection with one"
            )
        return record

    def _judge(self, client: Any, record: Mapping[str, Any], context: Context) -> Any:
        job = {"job_id": str(record["job_id"]), "project_id": str(record["project_id"])}
        if set(record) >= _NOTEBOOK_KEYS:
            from cocalc_tasks.notebooks import NotebookRun

            status = client.job(job["job_id"], project_id=job["project_id"])
            return collect_notebook(
                client, NotebookRun.from_dict(record), status.result(), context, self.log
            )
        return judge_job(
            client,
            job,
            self.log,
            fail_on_nonzero=self.fail_on_nonzero,
            max_xcom_chars=self.max_xcom_chars,
        )

    # -- poke and reschedule ---------------------------------------------------------------------
    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            record = self._record()
            client = CocalcHook(self.cocalc_conn_id).client
            status = client.job(record["job_id"], project_id=record["project_id"])
            if not status.done:
                self.log.info("CoCalc job %s is %s", record["job_id"], status.status)
                return False
            return PokeReturnValue(is_done=True, xcom_value=self._judge(client, record, context))
        except CocalcError as exc:
            fail(exc)

    # -- deferrable ------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider.triggers.cocalc import LOGGED_KEY, CocalcJobTrigger

        try:
            record = self._record()
            client = CocalcHook(self.cocalc_conn_id).client
            if client.job(record["job_id"], project_id=record["project_id"]).done:
                return self._judge(client, record, context)
        except CocalcError as exc:
            fail(exc)
        deadline = time.time() + self._seconds_left(context)
        context["ti"].xcom_push(key=LOGGED_KEY, value={})  # nothing logged yet by a trigger
        self.defer(
            trigger=CocalcJobTrigger(
                job_id=str(record["job_id"]),
                project_id=str(record["project_id"]),
                cocalc_conn_id=self.cocalc_conn_id,
                poll_interval=float(self.poke_interval),
                deadline=deadline,
                reason="sensor_timeout",
            ),
            method_name="execute_complete",
            kwargs={"record": record},
            timeout=timedelta(seconds=max(deadline - time.time(), 0) + TRIGGER_GRACE),
        )

    def _seconds_left(self, context: Context) -> float:
        limits = [float(self.timeout)]
        if self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        started = context["ti"].start_date
        spent = time.time() - started.timestamp() if started else 0.0
        return max(min(limits) - spent, 0.0)

    def execute_complete(
        self, context: Context, event: dict[str, Any], record: dict[str, Any] | None = None
    ) -> Any:
        status = event.get("status")
        job_id = event.get("job_id")
        if status == "timeout":
            raise AirflowSensorTimeout(f"CoCalc job {job_id} still runs at the sensor's timeout")
        if status != "done":
            message = f"waiting for CoCalc job {job_id} failed: {event.get('message')}"
            if event.get("transient"):
                raise AirflowException(message)
            raise AirflowFailException(message)
        try:
            client = CocalcHook(self.cocalc_conn_id).client
            return self._judge(client, record or self._record(), context)
        except CocalcError as exc:
            fail(exc)
