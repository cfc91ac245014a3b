"""Typed results of CoCalc's exec API: :class:`CommandResult`, :class:`Job`, :class:`JobStatus`.

Both upstream flavours are read (see ``docs/exec-api.md``): master's record
(``stdout, stderr, exit_code, type, job_id, start, status, elapsed_s, pid, stats``) and the
rewrite's (same fields in another order, ``stats: []`` at the start, status ``killed``).
Unknown fields are ignored; a missing field gets CoCalc's default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cocalc_tasks.model.errors import CocalcError, CocalcTimeoutError

__all__ = [
    "CocalcCommandError",
    "CocalcCommandTimeoutError",
    "CommandResult",
    "Job",
    "JobStat",
    "JobState",
    "JobStatus",
    "new_output",
]

JobState = Literal["running", "completed", "error", "killed"]
_STATES: frozenset[str] = frozenset({"running", "completed", "error", "killed"})
_TRUNCATED = re.compile(r" \(truncated at \d+ characters\)$")
# The last line of a timed-out job's stderr (the local server keeps earlier stderr above it).
_KILLED = re.compile(r"(?:^|\n)killed command '[^\n]*'\s*$")


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, str):  # master's schema calls elapsed_s a string
        try:
            return float(value)
        except ValueError:
            return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class JobStat:
    """One sample of a job's process tree: memory in MiB, CPU in percent and seconds."""

    timestamp: int
    mem_rss: float
    cpu_pct: float
    cpu_secs: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStat:
        return cls(
            timestamp=_int(data, "timestamp") or 0,
            mem_rss=_float(data, "mem_rss") or 0.0,
            cpu_pct=_float(data, "cpu_pct") or 0.0,
            cpu_secs=_float(data, "cpu_secs") or 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CommandResult:
    """The outcome of a command: blocking, or a finished job.

    A non-zero exit does not raise by itself: ``ok`` is False and ``raise_for_status()``
    raises :class:`~cocalc_tasks.errors.CocalcCommandError` (or
    :class:`~cocalc_tasks.errors.CocalcCommandTimeoutError` for a killed job).
    """

    stdout: str
    stderr: str
    exit_code: int
    #: Seconds: measured by the client for a blocking call, CoCalc's ``elapsed_s`` for a job.
    elapsed: float | None = None
    #: ``completed`` for a blocking call; the job's final status otherwise.
    status: JobState = "completed"
    command: str | None = None
    job_id: str | None = None
    pid: int | None = None
    #: Start time, milliseconds since the epoch (jobs only).
    start: int | None = None
    stats: tuple[JobStat, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.exit_code == 0

    @property
    def timed_out(self) -> bool:
        """CoCalc killed the command at its timeout."""
        return self.status == "error" and bool(_KILLED.search(self.stderr))

    @property
    def truncated(self) -> bool:
        """CoCalc cut stdout or stderr at ``max_output`` (its marker ends the text)."""
        return bool(_TRUNCATED.search(self.stdout) or _TRUNCATED.search(self.stderr))

    def raise_for_status(self) -> CommandResult:
        """Return self if the command succeeded; raise a typed error otherwise."""
        if self.ok:
            return self
        what = self.command or (f"job {self.job_id}" if self.job_id else "the command")
        if self.timed_out:
            raise CocalcCommandTimeoutError(
                f"{what!r} was killed at its timeout",
                exit_code=self.exit_code,
                stdout=self.stdout,
                stderr=self.stderr,
                command=self.command,
                result=self,
            )
        if self.status == "killed":
            message = f"{what!r} was cancelled"
        elif self.status == "error":
            message = f"{what!r} failed (exit code {self.exit_code})"
        else:
            message = f"{what!r} exited with code {self.exit_code}"
        last = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        raise CocalcCommandError(
            f"{message}: {last[0][:300]}" if last else message,
            exit_code=self.exit_code,
            stdout=self.stdout,
            stderr=self.stderr,
            command=self.command,
            result=self,
        )

    @classmethod
    def from_response(
        cls, data: Mapping[str, Any], *, command: str | None = None, elapsed: float | None = None
    ) -> CommandResult:
        """A blocking call's body, or a finished job's record."""
        status = data.get("status")
        return cls(
            stdout=_str(data, "stdout"),
            stderr=_str(data, "stderr"),
            exit_code=_int(data, "exit_code") or 0,
            elapsed=_float(data, "elapsed_s") if elapsed is None else elapsed,
            status=status if isinstance(status, str) and status in _STATES else "completed",  # type: ignore[arg-type]
            command=command,
            job_id=data.get("job_id") if isinstance(data.get("job_id"), str) else None,
            pid=_int(data, "pid"),
            start=_int(data, "start"),
            stats=_stats(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``from_dict`` reverses it."""
        return {**asdict(self), "stats": [asdict(s) for s in self.stats]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandResult:
        return cls.from_response(
            {**data, "elapsed_s": data.get("elapsed")},
            command=data.get("command"),
        )


@dataclass(frozen=True)
class Job:
    """An async job, as ``submit`` returns it. Pass it (or its ``job_id``) to ``wait``."""

    job_id: str
    project_id: str
    pid: int | None = None
    #: Start time, milliseconds since the epoch.
    start: int | None = None
    status: JobState = "running"
    command: str | None = None
    #: The ``job_key`` the server honoured (CoCalc's rewrite echoes it); None where it was not
    #: given or the server ignores keys (CoCalc master).
    job_key: str | None = None

    @classmethod
    def from_response(
        cls, data: Mapping[str, Any], *, project_id: str, command: str | None = None
    ) -> Job:
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("the async start record has no job_id")
        status = data.get("status")
        return cls(
            job_id=job_id,
            project_id=project_id,
            pid=_int(data, "pid"),
            start=_int(data, "start"),
            status=status if isinstance(status, str) and status in _STATES else "running",  # type: ignore[arg-type]
            command=command,
            job_key=data["job_key"] if isinstance(data.get("job_key"), str) else None,
        )


@dataclass(frozen=True)
class JobStatus:
    """A job's record at one moment: the output so far, and the result once it is done."""

    job_id: str
    status: JobState
    stdout: str
    stderr: str
    exit_code: int
    pid: int | None = None
    start: int | None = None
    #: Seconds from start to finish; None while running.
    elapsed_s: float | None = None
    stats: tuple[JobStat, ...] = field(default=())

    @property
    def done(self) -> bool:
        return self.status != "running"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {**asdict(self), "stats": [asdict(s) for s in self.stats]}

    @classmethod
    def from_response(cls, data: Mapping[str, Any], *, job_id: str) -> JobStatus:
        status = data.get("status")
        if not isinstance(status, str) or status not in _STATES:
            raise ValueError(f"unknown job status {status!r}")
        found = data.get("job_id")
        return cls(
            job_id=found if isinstance(found, str) and found else job_id,
            status=status,  # type: ignore[arg-type]
            stdout=_str(data, "stdout"),
            stderr=_str(data, "stderr"),
            exit_code=_int(data, "exit_code") or 0,
            pid=_int(data, "pid"),
            start=_int(data, "start"),
            elapsed_s=_float(data, "elapsed_s"),
            stats=_stats(data),
        )

    def result(self, command: str | None = None) -> CommandResult:
        """The :class:`CommandResult` of a finished job."""
        if not self.done:
            raise ValueError(f"job {self.job_id} is still running")
        return CommandResult(
            stdout=self.stdout,
            stderr=self.stderr,
            exit_code=self.exit_code,
            elapsed=self.elapsed_s,
            status=self.status,
            command=command,
            job_id=self.job_id,
            pid=self.pid,
            start=self.start,
            stats=self.stats,
        )


def _stats(data: Mapping[str, Any]) -> tuple[JobStat, ...]:
    stats = data.get("stats")
    if not isinstance(stats, list):
        return ()
    return tuple(JobStat.from_dict(s) for s in stats if isinstance(s, Mapping))


def new_output(status: JobStatus, seen: dict[str, int]) -> list[tuple[str, str]]:
    """``(stream, text)`` for what each stream gained since ``seen`` (offsets, updated).

    ``seen`` starts as ``{}``. A stream that shrank (master empties a failed job's stdout)
    yields nothing and its offset moves back.
    """
    gained = []
    for name in ("stdout", "stderr"):
        text: str = getattr(status, name)
        start = seen.get(name, 0)
        if len(text) > start:
            gained.append((name, text[start:]))
        seen[name] = len(text)
    return gained


class CocalcCommandError(CocalcError):
    """A shell command exited with a non-zero code (or could not be started).

    ``exit_code`` is None when the program could not run at all. ``stderr`` is the command's
    own error output, without CoCalc's wrapping; ``result`` is the whole
    :class:`~cocalc_tasks.model.command_results.CommandResult` when the output was received.
    """

    hint = "the command failed; see its stderr"

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        stdout: str = "",
        stderr: str = "",
        command: str | None = None,
        result: CommandResult | None = None,
        server_message: str | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.command = command
        self.result = result
        super().__init__(message, server_message=server_message)


class CocalcCommandTimeoutError(CocalcCommandError, CocalcTimeoutError):
    """CoCalc killed the command (its whole process group) at its ``timeout``."""

    transient = False
    hint = "raise timeout=, or submit the command as a job (no 60 s request limit)"
