"""CocalcJobTrigger: waits in the triggerer for a CoCalc exec job, streaming its output.

The trigger only reads: it polls ``async_get`` (an idempotent read) and never starts anything,
so a triggerer restart that rebuilds it from :meth:`serialize` cannot run a job twice. Its
kwargs hold no secret (a connection id, never a key): Airflow stores them in plain text.

How much of the job's output it has logged is kept in the task's XCom (``cocalc_logged``,
``{"stdout": chars, "stderr": chars}``), so a trigger rebuilt after a triggerer restart logs
only what is new instead of the whole output again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider.hooks.cocalc import CocalcHook
from cocalc_tasks.client import poll_job
from cocalc_tasks.errors import CocalcError, CocalcTimeoutError
from cocalc_tasks.reporting import OutputLines

if TYPE_CHECKING:
    from cocalc_tasks.client import CocalcClient
    from cocalc_tasks.model import JobStatus

log = logging.getLogger(__name__)

__all__ = ["LOGGED_KEY", "CocalcJobTrigger"]

#: Bound on the cancel request sent when the task is killed while deferred.
CANCEL_SECONDS = 30.0
#: XCom key of the output offsets the trigger has logged (see the module's docstring).
LOGGED_KEY = "cocalc_logged"


class LoggedOutput:
    """Where a trigger keeps how far it logged the job's output: its task's XCom. Airflow's XCom
    calls are blocking: they run through asgiref's ``sync_to_async``, as Airflow's own
    common-compat provider makes blocking calls from triggers, so that their messages to the
    triggerer's supervisor go through its event loop (a plain thread would interleave them
    with the loop's own on Airflow 3.0 and 3.1). Best effort: where no task instance or no
    XCom is reachable (``dag.test()`` runs triggers in line), nothing is kept."""

    def __init__(self, task_instance: Any) -> None:
        self.where = None
        if task_instance is not None:
            self.where = {
                "dag_id": task_instance.dag_id,
                "task_id": task_instance.task_id,
                "run_id": task_instance.run_id,
                "map_index": task_instance.map_index,
            }
        self.saved: dict[str, int] = {}

    async def read(self) -> dict[str, int]:
        if self.where is None:
            return {}
        from asgiref.sync import sync_to_async

        def get() -> Any:
            from airflow.sdk.execution_time.xcom import XCom

            return XCom.get_one(key=LOGGED_KEY, **self.where)  # type: ignore[arg-type]

        try:
            value = await sync_to_async(get)()
        except Exception as exc:
            log.debug("could not read %s: %s", LOGGED_KEY, exc)
            return {}
        if isinstance(value, dict):
            self.saved = {str(k): int(v) for k, v in value.items() if isinstance(v, int)}
        return dict(self.saved)

    async def write(self, offsets: dict[str, int]) -> None:
        if self.where is None or offsets == self.saved:
            return
        from asgiref.sync import sync_to_async

        def put() -> None:
            from airflow.sdk.execution_time.xcom import XCom

            XCom.set(LOGGED_KEY, offsets, **self.where)  # type: ignore[arg-type]

        try:
            await sync_to_async(put)()
            self.saved = dict(offsets)
        except Exception as exc:
            log.debug("could not write %s: %s", LOGGED_KEY, exc)


class CocalcJobTrigger(BaseTrigger):
    """Fires one event when a CoCalc job ends, fails to be read, or outlives ``deadline``.

    Args:
        job_id: The job, as ``submit`` returned it.
        project_id: The job's project.
        cocalc_conn_id: The ``cocalc`` connection (looked up in the triggerer).
        poll_interval: Seconds between polls; each poll's new output goes to the task log.
        deadline: Unix time after which the trigger stops waiting (``None``: no limit).
        reason: What the deadline is (``"execution_timeout"``: the task's), echoed in the
            timeout event for the operator to report.
        notebook: The job is a notebook run: its runner's protocol lines are not logged.

    The event's payload: ``status`` is ``"done"`` (with ``job_status``, the job's own status),
    ``"timeout"`` (the deadline passed, with ``reason``; the job may still run: the operator
    cancels it) or ``"error"`` (with ``message`` and ``transient``).
    """

    def __init__(
        self,
        *,
        job_id: str,
        project_id: str,
        cocalc_conn_id: str = CocalcHook.default_conn_name,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        reason: str | None = None,
        notebook: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_id = job_id
        self.project_id = project_id
        self.cocalc_conn_id = cocalc_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.reason = reason
        self.notebook = notebook

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "project_id": self.project_id,
                "cocalc_conn_id": self.cocalc_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "reason": self.reason,
                "notebook": self.notebook,
            },
        )

    async def _client(self) -> CocalcClient:
        return await CocalcHook(self.cocalc_conn_id).aget_client()

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        payload = {"status": status, "job_id": self.job_id, "project_id": self.project_id}
        return TriggerEvent({**payload, **fields})  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the job ends (:func:`~cocalc_tasks.client.poll_job`: each HTTP call in a
        worker thread, so the triggerer's event loop is never blocked)."""
        hide = None
        if self.notebook:
            from cocalc_tasks.notebooks.runner import STATUS_PREFIX

            def hide(line: str) -> bool:
                return line.startswith(STATUS_PREFIX)

        lines = OutputLines.to_logger(self.log, hide)
        logged = LoggedOutput(getattr(self, "task_instance", None))

        async def on_status(status: JobStatus) -> None:
            lines.update(status)
            await logged.write(lines.logged())

        try:
            client = await self._client()
            offsets = await logged.read()
            if offsets:
                lines.skip(offsets)
                self.log.info(
                    "resuming CoCalc job %s: its first %s characters of output were logged",
                    self.job_id,
                    sum(offsets.values()),
                )
            else:
                self.log.info(
                    "waiting for CoCalc job %s in project %s", self.job_id, self.project_id
                )
            status = await poll_job(
                client,
                self.job_id,
                self.project_id,
                poll_interval=self.poll_interval,
                deadline=self.deadline,
                on_status=on_status,
            )
        except CocalcTimeoutError as exc:
            lines.flush()
            yield self._event("timeout", message=str(exc), reason=self.reason)
            return
        except CocalcError as exc:
            yield self._event("error", message=str(exc), transient=exc.transient)
            return
        except Exception as exc:  # a missing connection: the worker reports it
            yield self._event("error", message=f"{type(exc).__name__}: {exc}", transient=False)
            return
        lines.flush()
        yield self._event("done", job_status=status.status)

    async def on_kill(self) -> None:
        """Cancel the job: the task was marked failed or success, or cleared, while deferred.

        Airflow calls this only on such user actions, never on a triggerer restart (the job
        must survive those). Airflow versions without ``BaseTrigger.on_kill`` never call it:
        there, a job whose task is killed while deferred runs on until its own ``timeout``.
        """
        client = await self._client()
        status = await asyncio.wait_for(
            asyncio.to_thread(client.cancel, self.job_id, project_id=self.project_id),
            CANCEL_SECONDS,
        )
        self.log.info("cancelled CoCalc job %s: %s", self.job_id, status.status)
