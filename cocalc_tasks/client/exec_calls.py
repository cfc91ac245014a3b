"""CoCalc's exec API (``POST /api/v2/exec``): the exec methods of ``CocalcClient``.

Blocking commands, async jobs (``submit``, ``job``, ``wait``, ``cancel``) and ``run_script``.
The transport rules (see ``docs/exec-api.md``):

- A blocking call or an ``async_await`` long poll is cut by CoCalc's hub after 60 s on master
  (body ``{"error": "undefined"}``) and 15 s on the rewrite (``"timeout"``); the command keeps
  running. ``wait`` treats those answers, and its own read timeout, as "poll again".
- ``async_cancel`` exists only on the rewrite (and on the local server). Elsewhere ``cancel``
  signals the job's process group through a second, blocking exec: ``kill -TERM``, then
  ``kill -KILL`` after ``grace`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Unpack

from cocalc_tasks.client.config import Timeout
from cocalc_tasks.errors import (
    CocalcError,
    CocalcServerError,
    CocalcTimeoutError,
    CocalcUnknownJobError,
    CocalcUnsupportedError,
    CocalcValidationError,
)
from cocalc_tasks.model.command_results import CommandResult, Job, JobStatus, new_output
from cocalc_tasks.model.exec_requests import (
    ExecOptions,
    ExecRequest,
    script_request,
    validate_job_id,
)
from cocalc_tasks.model.validation import validate_project_id

__all__ = ["EXEC_PATH", "ExecCalls", "OutputCallback"]

log = logging.getLogger("cocalc_tasks.client")

EXEC_PATH = "/api/v2/exec"
#: Read timeout of one ``async_await`` long poll: above master's 60 s hub limit.
LONG_POLL_SECONDS = 75.0
#: Extra read time beyond a command's own timeout, for the round trip.
_MARGIN = 15.0
#: How long ``wait`` keeps trying through connection failures before giving up.
RECONNECT_SECONDS = 120.0

#: ``on_output(stream, text)``: ``stream`` is ``"stdout"`` or ``"stderr"``; ``text`` is new.
OutputCallback = Callable[[str, str], None]
Deadline = float | datetime | None


class ExecCalls:
    """The exec methods; mixed into ``CocalcClient``, which provides ``_post``."""

    project_id: str | None

    def _post(self, path: str, body: dict[str, Any], timeout: Timeout | None) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by CocalcClient

    def _connect_timeout(self) -> float:
        raise NotImplementedError  # pragma: no cover - provided by CocalcClient

    def _read_timeout(self) -> float | None:
        raise NotImplementedError  # pragma: no cover - provided by CocalcClient

    # -- blocking ----------------------------------------------------------------------------
    def exec(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        err_on_exit: bool = True,
        **options: Unpack[ExecOptions],
    ) -> CommandResult:
        """Run a command in a project and wait for it (at most ~60 s on cocalc.com).

        A non-zero exit raises :class:`~cocalc_tasks.errors.CocalcCommandError` (with stdout,
        stderr and the exit code) unless ``err_on_exit=False``; then check ``result.ok``.
        """
        return self.send_exec(ExecRequest.build(command, args, **options), err_on_exit=err_on_exit)

    def send_exec(self, request: ExecRequest, *, err_on_exit: bool = True) -> CommandResult:
        """Run a prepared :class:`ExecRequest` and wait for it."""
        request = request.with_default_project(self.project_id)
        started = time.monotonic()
        read = None
        if request.effective_timeout:
            read = max(request.effective_timeout + _MARGIN, self._read_timeout() or 0.0)
        response = self._post(EXEC_PATH, request.body(), (self._connect_timeout(), read))
        elapsed = time.monotonic() - started
        result = CommandResult.from_response(
            _record(response), command=request.display, elapsed=elapsed
        )
        return result.raise_for_status() if err_on_exit else result

    def run_script(
        self,
        code: str,
        interpreter: str = "python3",
        args: Sequence[str] = (),
        *,
        err_on_exit: bool = True,
        **options: Unpack[ExecOptions],
    ) -> CommandResult:
        """Run ``code`` with ``interpreter`` (``python3``, ``sage``, ``bash``, any program).

        Any text is carried safely (see :mod:`cocalc_tasks.model.scripts`); ``args`` are passed to
        the script. Python and Sage print the value of a final expression, as a cell does.
        """
        request = script_request(code, interpreter, args, **options)
        return self.send_exec(request, err_on_exit=err_on_exit)

    # -- async jobs --------------------------------------------------------------------------
    def submit(
        self,
        command: str,
        args: Sequence[str] | None = None,
        *,
        job_key: str | None = None,
        **options: Unpack[ExecOptions],
    ) -> Job:
        """Start ``command`` as an async job and return at once (no 60 s limit); see
        :meth:`submit_request` for ``job_key``."""
        return self.submit_request(ExecRequest.build(command, args, **options), job_key=job_key)

    def submit_script(
        self,
        code: str,
        interpreter: str = "python3",
        args: Sequence[str] = (),
        **options: Unpack[ExecOptions],
    ) -> Job:
        """``run_script`` as an async job."""
        return self.submit_request(script_request(code, interpreter, args, **options))

    def submit_request(
        self, request: ExecRequest, *, job_key: str | None = None, job_group: str | None = None
    ) -> Job:
        """Start a prepared :class:`ExecRequest` as an async job.

        ``job_key`` makes the submit idempotent where the server supports it (CoCalc's rewrite,
        since August 2026, and the local server with ``--flavor cocalc-ai``): while a job of
        that key runs in the project, submitting again returns that job instead of starting a
        second one. Derive it from what must run once (a pipeline step's run), so that a retry
        after a crash between submitting and recording the job id attaches to the job. The
        returned :attr:`Job.job_key` says whether the server honoured it; CoCalc master ignores
        keys, and then only what the caller recorded prevents a second job."""
        request = request.with_default_project(self.project_id)
        body = request.body(async_call=True)
        if job_key is not None:
            body["job_key"] = job_key
        if job_group is not None:
            body["job_group"] = job_group
        response = self._post(EXEC_PATH, body, None)
        try:
            job = Job.from_response(
                _record(response), project_id=request.require_project(), command=request.display
            )
        except ValueError as exc:
            raise CocalcServerError(f"malformed async start record: {exc}") from None
        log.info("submitted job %s (pid %s) in project %s", job.job_id, job.pid, job.project_id)
        return job

    def job(
        self, job: str | Job, *, project_id: str | None = None, stats: bool = False
    ) -> JobStatus:
        """The job's record now, with the output so far (``stats``: CPU and memory samples)."""
        job_id, project = self._job_target(job, project_id)
        body: dict[str, Any] = {"project_id": project, "async_get": job_id}
        if stats:
            body["async_stats"] = True
        return _status(self._post(EXEC_PATH, body, None), job_id)

    def wait(
        self,
        job: str | Job,
        *,
        project_id: str | None = None,
        deadline: Deadline = None,
        on_output: OutputCallback | None = None,
        poll_interval: float = 1.0,
        stats: bool = False,
        on_status: Callable[[JobStatus], None] | None = None,
    ) -> CommandResult:
        """Wait for a job to finish and return its :class:`CommandResult` (not raised: check
        ``ok`` or call ``raise_for_status()``).

        Without ``on_output``, waits with ``async_await`` long polls, reconnecting whenever the
        transport gives up. With it, polls every ``poll_interval`` seconds and calls
        ``on_output(stream, text)`` with only the output that is new since the last poll.
        ``on_status`` (which also switches to polling) sees every record; an exception it
        raises ends the wait (the job keeps running).

        ``deadline``: seconds from now, or an aware ``datetime``. When it passes,
        :class:`~cocalc_tasks.errors.CocalcTimeoutError` is raised and the job keeps running.
        """
        job_id, project = self._job_target(job, project_id)
        command = job.command if isinstance(job, Job) else None
        end = _deadline(deadline)
        seen: dict[str, int] = {}
        failing_since: float | None = None
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CocalcTimeoutError(
                    f"job {job_id} is still running at the deadline; it keeps running "
                    "(wait again, or cancel it)"
                )
            body: dict[str, Any] = {"project_id": project, "async_get": job_id}
            if stats:
                body["async_stats"] = True
            long_poll = on_output is None and on_status is None
            if long_poll:
                body["async_await"] = True
                read = LONG_POLL_SECONDS if remaining is None else min(LONG_POLL_SECONDS, remaining)
            else:
                read = None
            try:
                status = _status(
                    self._post(EXEC_PATH, body, (self._connect_timeout(), read) if read else None),
                    job_id,
                )
            except CocalcTimeoutError:
                log.debug("job %s: the long poll ended without an answer; polling again", job_id)
                failing_since = None
                continue
            except CocalcError as exc:
                if not exc.transient or isinstance(exc, CocalcUnknownJobError):
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > RECONNECT_SECONDS:
                    raise
                log.warning("job %s: %s; trying again", job_id, exc)
                time.sleep(min(5.0, poll_interval * 2))
                continue
            failing_since = None
            if on_output is not None:
                for stream, text in new_output(status, seen):
                    on_output(stream, text)
            if on_status is not None:
                on_status(status)
            if status.done:
                return status.result(command)
            if not long_poll:
                pause = poll_interval if remaining is None else min(poll_interval, remaining)
                time.sleep(max(0.0, pause))

    def cancel(
        self, job: str | Job, *, project_id: str | None = None, grace: float = 5.0
    ) -> JobStatus:
        """Kill a running job's process group; return its final record.

        Uses ``async_cancel`` (the rewrite, the local server). On a server without it
        (CoCalc master), sends ``kill -TERM`` to the job's process group through a blocking
        exec, then ``kill -KILL`` after ``grace`` seconds; master then reports the job as
        ``completed`` (a signalled process has exit code 0 there), not ``killed``.
        A job that has already finished is returned as it is.
        """
        job_id, project = self._job_target(job, project_id)
        try:
            response = self._post(EXEC_PATH, {"project_id": project, "async_cancel": job_id}, None)
        except CocalcUnsupportedError:
            log.info("this server has no async_cancel; signalling job %s's process group", job_id)
            return self._cancel_by_signal(job_id, project, grace)
        status = _status(response, job_id)
        log.info("cancelled job %s: %s", job_id, status.status)
        return status

    def _cancel_by_signal(self, job_id: str, project: str, grace: float) -> JobStatus:
        status = self.job(job_id, project_id=project)
        if status.done or status.pid is None:
            return status
        pid = int(status.pid)
        steps = max(1, int(grace * 10))
        script = (
            f"kill -TERM -- -{pid} 2>/dev/null || exit 0\n"
            f"for i in $(seq {steps}); do\n"
            f"  kill -0 -- -{pid} 2>/dev/null || exit 0; sleep 0.1\n"
            "done\n"
            f"kill -KILL -- -{pid} 2>/dev/null; exit 0\n"
        )
        self.send_exec(
            ExecRequest(script, project_id=project, bash=True, timeout=grace + 30),
            err_on_exit=False,
        )
        for _ in range(50):
            status = self.job(job_id, project_id=project)
            if status.done:
                break
            time.sleep(0.1)
        return status

    def _job_target(self, job: str | Job, project_id: str | None) -> tuple[str, str]:
        if isinstance(job, Job):
            return job.job_id, project_id or job.project_id
        project = project_id if project_id is not None else self.project_id
        if project is None:
            raise CocalcValidationError(
                "project_id is required: jobs belong to a project (pass project_id=, or set "
                "COCALC_PROJECT_ID)"
            )
        return validate_job_id(job), validate_project_id(project)


def _record(response: Any) -> dict[str, Any]:
    if not isinstance(response, dict):
        raise CocalcServerError("the exec response is not a JSON object")
    return response


def _status(response: Any, job_id: str) -> JobStatus:
    try:
        return JobStatus.from_response(_record(response), job_id=job_id)
    except ValueError as exc:
        raise CocalcServerError(f"malformed job record: {exc}") from None


def _deadline(deadline: Deadline) -> float | None:
    if deadline is None:
        return None
    if isinstance(deadline, datetime):
        if deadline.tzinfo is None:
            raise ValueError("deadline must be an aware datetime (with a time zone)")
        return time.monotonic() + (deadline.timestamp() - time.time())
    return time.monotonic() + float(deadline)
