"""``poll_job``: wait for an exec job from asyncio code without blocking the event loop.

Each poll is one ``async_get`` (an idempotent read) made in a worker thread, so the loop stays
free and a cancelled wait stops at its next ``await``: no thread is left polling. The Airflow
trigger and the Prefect async task both wait this way. (``CocalcClient.wait`` is the blocking
twin, with long polls.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cocalc_tasks.client.exec_calls import RECONNECT_SECONDS
from cocalc_tasks.errors import CocalcError, CocalcTimeoutError, CocalcUnknownJobError
from cocalc_tasks.model.command_results import JobStatus

if TYPE_CHECKING:
    from cocalc_tasks.client.client import CocalcClient

__all__ = ["poll_job"]

log = logging.getLogger("cocalc_tasks.client")


async def poll_job(
    client: CocalcClient,
    job_id: str,
    project_id: str,
    *,
    poll_interval: float = 2.0,
    deadline: float | None = None,
    on_status: Callable[[JobStatus], Awaitable[None] | None] | None = None,
) -> JobStatus:
    """Poll until the job ends and return its final record (``done`` is True).

    ``on_status`` sees every record (e.g. ``OutputLines.update`` to stream the output); a
    coroutine function is awaited.
    ``deadline`` is a Unix time: past it, :class:`~cocalc_tasks.errors.CocalcTimeoutError`
    is raised and the job keeps running. Transient errors are retried for
    ``RECONNECT_SECONDS``; others (an unknown job, a refused key) are raised at once.
    """
    failing_since: float | None = None
    while True:
        try:
            status = await asyncio.to_thread(client.job, job_id, project_id=project_id)
        except CocalcError as exc:
            now = time.monotonic()
            failing_since = failing_since or now
            if (
                not exc.transient
                or isinstance(exc, CocalcUnknownJobError)
                or now - failing_since > RECONNECT_SECONDS
            ):
                raise
            log.warning("job %s: %s; polling again", job_id, exc)
        else:
            failing_since = None
            if on_status is not None:
                pending = on_status(status)
                if inspect.isawaitable(pending):
                    await pending
            if status.done:
                return status
        if deadline is not None and time.time() >= deadline:
            raise CocalcTimeoutError(
                f"job {job_id} is still running at the deadline; it keeps running "
                "(wait again, or cancel it)"
            )
        await asyncio.sleep(poll_interval)
