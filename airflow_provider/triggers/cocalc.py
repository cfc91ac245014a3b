"""CocalcJobTrigger: waits in the triggerer for a CoCalc exec job, streaming its output.

The trigger only reads: it polls ``async_get`` (an idempotent read) and never starts anything,
so a triggerer restart that rebuilds it from :meth:`serialize` cannot run a job twice. Its
kwargs hold no secret (a connection id, never a key): Airflow stores them in plain text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider.hooks.cocalc import CocalcHook
from cocalc_tasks.client import poll_job
from cocalc_tasks.errors import CocalcError, CocalcTimeoutError
from cocalc_tasks.reporting import OutputLines

if TYPE_CHECKING:
    from cocalc_tasks.client import CocalcClient

__all__ = ["CocalcJobTrigger"]

#: Bound on the cancel request sent when the task is killed while deferred.
CANCEL_SECONDS = 30.0


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
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_id = job_id
        self.project_id = project_id
        self.cocalc_conn_id = cocalc_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.reason = reason

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
        lines = OutputLines.to_logger(self.log)
        try:
            client = await self._client()
            self.log.info("waiting for CoCalc job %s in project %s", self.job_id, self.project_id)
            status = await poll_job(
                client,
                self.job_id,
                self.project_id,
                poll_interval=self.poll_interval,
                deadline=self.deadline,
                on_status=lines.update,
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
