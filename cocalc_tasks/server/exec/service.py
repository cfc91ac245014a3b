"""CoCalc's exec API: blocking commands and async jobs, with master's messages.

One :class:`ExecService` serves ``POST /api/v2/exec`` (flavour ``http``: master's
``Error executing command '<cmd>' with args '<args>' -- `` prefix on failures) and the project
bridge's ``system.exec`` (flavour ``conat``: no prefix). See ``docs/exec-api.md`` for the
contract and for where this server differs from CoCalc master:

- it offers the rewrite's ``async_cancel`` and its ``killed`` status;
- a timed-out job keeps its stdout (master empties it) and ends its stderr with the
  ``killed command '...'`` line;
- ``path`` stays inside the project directory, as for kernels;
- every stream is capped at ``--exec-max-output`` characters, blocking calls included;
- a malformed field is refused with ``invalid exec request: ...`` naming it.

Jobs are rows in the shared store, so replicas sharing a database serve each other's jobs:
any replica reads and awaits a job from its row (the owner flushes output every 0.2 s), a
cancel through another replica is recorded in the row and acted on by the owner's watch
(:meth:`ExecService.watch`, every 0.25 s), and a replica whose heartbeat stops has its running
jobs marked ``error`` by the first replica to notice. Reads go through ``off_loop`` (inline for
SQLite, a worker thread for PostgreSQL) and a job's writes through one writer thread, in order,
so a slow database never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
import uuid
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from cocalc_tasks.notebooks.runner import ALIASES_ENV as KERNEL_ALIASES_ENV
from cocalc_tasks.notebooks.runner import KERNEL_DIRS_ENV
from cocalc_tasks.server.api_error import ApiError
from cocalc_tasks.server.auth import Identity
from cocalc_tasks.server.exec.commands import CommandSpec, RunningCommand, build_spec
from cocalc_tasks.server.exec.keys import KeyedJob, KeyRefused, conflict_message, keyed_job
from cocalc_tasks.server.metrics import ServerMetrics
from cocalc_tasks.server.processes.spawners import Spawners
from cocalc_tasks.server.projects import (
    PathEscape,
    checked_project_id,
    project_directory,
    resolve_path,
)
from cocalc_tasks.server.sandbox import Limits, Sandbox, child_setup
from cocalc_tasks.server.settings import ServerSettings
from cocalc_tasks.server.storage import JobRecord, JobStore, ReplicaRegistry, off_loop
from cocalc_tasks.server.storage.jobs import ORPHANED

__all__ = ["ExecService"]

log = logging.getLogger("cocalc_tasks.server.exec")

NOT_SIGNED_IN = "must be signed in"
NOT_COLLABORATOR = "user must be a collaborator on the project"
#: What CoCalc master's hub answers when it stops waiting (it reads ``.message`` of a string).
HUB_GAVE_UP = "undefined"
ASYNC_MAX_OUTPUT = 1024 * 1024
STOPPED = (
    "the cocalc-tasks server was stopped while this job was running; its process group was "
    "killed and its output up to that moment is kept"
)
DEAD_REPLICA = (
    "the cocalc-tasks replica '{name}' stopped answering while this job was running (no "
    "heartbeat for {silent:.0f} s); its output up to its last write is kept"
)
_FLUSH_SECONDS = 0.2
#: How often a replica renews its heartbeat and reads the cancels asked of its jobs.
WATCH_SECONDS = 0.25
#: How often a remote job's row is read while a caller awaits it or its cancel.
_POLL_SECONDS = 0.2
_DROPPED_ENV = ("DEBUG", "DEBUG_CONSOLE", "NODE_ENV", "DEBUG_FILE")


class _Invalid(Exception):
    pass


def _js(value: object) -> str:
    """A request value as JavaScript's template strings render it."""
    if value is None:
        return "undefined"
    if isinstance(value, list):
        return ",".join(_js(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cut(text: str, limit: int = 1024) -> str:
    """CoCalc's ``trunc``: at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Job:
    """A command this server is running (blocking or async)."""

    def __init__(self, command: RunningCommand, project_id: str, job_id: str | None) -> None:
        self.command = command
        self.project_id = project_id
        self.job_id = job_id
        self.err_on_exit = True
        self.dirty = False
        #: A keyed job's key (CoCalc's rewrite), else None.
        self.keyed: KeyedJob | None = None
        #: Set once the final record is written (or the job was settled elsewhere).
        self.settled = asyncio.Event()


class ExecService:
    def __init__(
        self,
        settings: ServerSettings,
        store: JobStore,
        base_env: Mapping[str, str],
        *,
        sandbox: Sandbox | None = None,
        registry: ReplicaRegistry | None = None,
        exclusive: bool = True,
        kernel_dirs: Sequence[str] = (),
        kernel_aliases: Mapping[str, str] | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """``exclusive``: no other server uses ``store`` (SQLite in this server's locked data
        directory), so every job found running at start was this server's."""
        self.settings = settings
        self.metrics = metrics or ServerMetrics()
        self.store = store
        self.replica = store.replica
        self.registry = registry
        self.exclusive = exclusive
        # Writes go through one thread, so a job's flushes and its final record stay in order.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "cocalc-jobs-writer")
        self.sandbox = sandbox
        self._rlimits = Limits.parse(settings.exec_limits).rlimits()
        self._setup = child_setup(self._rlimits, ignore_sigint=False)
        # One spawner per project inside its sandbox: bwrap starts once per project,
        # not once per command.
        self._spawners = (
            Spawners(sandbox, settings.area_idle_seconds)
            if sandbox is not None and sandbox.enabled
            else None
        )
        self._base_env = {k: v for k, v in base_env.items() if k not in _DROPPED_ENV}
        # The server's kernel aliases, for programs that start kernels themselves (the notebook
        # runner, cocalc_tasks/notebooks/runner.py): sage-9.8 means what it means to /execute.
        aliases = settings.kernel_aliases if kernel_aliases is None else kernel_aliases
        self._base_env[KERNEL_ALIASES_ENV] = json.dumps(dict(aliases))
        # ...and its kernelspec folders (its bundled bash among them): every kernel a project
        # lists runs notebooks too.
        self._base_env[KERNEL_DIRS_ENV] = json.dumps(list(kernel_dirs))
        # Programs of the server's own environment (python3, sage, jupyter) come first, as a
        # CoCalc project's software stack does.
        bindir = str(Path(sys.executable).parent)
        self._base_env["PATH"] = os.pathsep.join(
            [bindir, *(p for p in self._base_env.get("PATH", "").split(os.pathsep) if p)]
        )
        self._jobs: dict[str, _Job] = {}
        self._running: set[_Job] = set()
        #: One lock per (project, job key): two calls of one key never both start a job.
        self._key_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def recover(self) -> int:
        """Settle jobs this replica left ``running`` when it died (kill what is left of their
        process groups, mark them ``error``) and those of replicas that stopped answering.
        Returns how many there were. Called once, before serving."""
        orphans = self.store.running(None if self.exclusive else self.replica)
        for record in orphans:
            if self._spawners is None:  # in sandboxes, jobs died with their server
                _kill_leftover(record.pid, record.start)
            self.store.mark_orphaned(record.job_id, ORPHANED + f" (replica '{record.replica}')")
        if orphans:
            log.warning("%d job(s) were running when this server last stopped", len(orphans))
        return len(orphans) + self.settle_dead_replicas()

    def settle_dead_replicas(self) -> int:
        """Mark ``error`` the running jobs of replicas silent for ``--replica-timeout``."""
        if self.registry is None:
            return 0
        count = 0
        for name, heartbeat in self.registry.silent(self.settings.replica_timeout).items():
            message = DEAD_REPLICA.format(name=name, silent=time.time() - heartbeat)
            settled = [r.job_id for r in self.store.running(name)]
            settled = [job_id for job_id in settled if self.store.mark_orphaned(job_id, message)]
            self.registry.forget(name)
            if settled:
                log.warning(
                    "replica %r stopped answering: marked its %d running job(s) error",
                    name,
                    len(settled),
                )
            count += len(settled)
        return count

    async def watch(self) -> None:
        """Run for the server's lifetime: renew the heartbeat, act on cancels asked through
        other replicas (and on jobs they settled), and settle dead replicas' jobs."""
        beats = 0
        while True:
            try:
                if self.registry is not None and beats % 4 == 0:
                    await off_loop(self.store.db, self.registry.beat)
                    await off_loop(self.store.db, self.settle_dead_replicas)
                local = [j for j in self._jobs.values() if j.command.running]
                ids = [j.job_id for j in local if j.job_id is not None]
                stop = set(await off_loop(self.store.db, self.store.to_stop, ids)) if ids else set()
                for job in local:
                    if job.job_id in stop and job.command.running:
                        log.info("cancelling job %s, as asked through the store", job.job_id)
                        job.command.cancel()
            except Exception:  # keep watching whatever one pass met (a database restart)
                log.exception("the job watch failed; trying again")
            beats += 1
            await asyncio.sleep(WATCH_SECONDS)

    async def close(self) -> None:
        """Kill every running command's group; running jobs are recorded as ``error``."""
        self._closed = True
        jobs = [job for job in self._running if job.job_id is not None]
        for job in list(self._running):
            job.command.kill_group()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), 5)
        await asyncio.to_thread(self._writer.shutdown, wait=True)
        for job in jobs:
            c, job_id = job.command, job.job_id or ""
            self.store.update(job_id, stdout=c.stdout.text, stderr=c.stderr.text, stats=c.stats)
            self.store.mark_orphaned(job_id, STOPPED)
        if self.registry is not None:
            self.registry.forget()
        if self._spawners is not None:
            await self._spawners.close()

    def running_count(self) -> int:
        return len(self._running)

    # -- entry points ----------------------------------------------------------------------
    async def http(self, params: Mapping[str, Any], identity: Identity) -> dict[str, Any]:
        """``POST /api/v2/exec``: CoCalc master's checks and messages."""
        if not identity.signed_in:
            raise ApiError(NOT_SIGNED_IN, refusal="not_signed_in")
        project_id = checked_project_id(params.get("project_id"))
        if not identity.may_use_project(project_id.lower()):
            raise ApiError(NOT_COLLABORATOR, refusal="other_project")
        return await self.call(params, project_id.lower(), flavor="http")

    async def call(
        self, params: Mapping[str, Any], project_id: str, *, flavor: str
    ) -> dict[str, Any]:
        """One exec request for ``project_id`` (already authorized)."""
        fail = _Failure(params, flavor)
        try:
            if (job_id := params.get("async_cancel")) is not None:
                return await self._cancel(_job_id(job_id), project_id, fail)
            if (job_id := params.get("async_get")) is not None:
                return await self._get(
                    _job_id(job_id),
                    project_id,
                    stats=_flag(params, "async_stats", False),
                    wait=_flag(params, "async_await", False),
                    fail=fail,
                    limit=self.settings.hub_timeout if flavor == "http" else None,
                )
            return await self._start(params, project_id, fail, flavor)
        except _Invalid as exc:
            raise fail(f"invalid exec request: {exc}") from None

    # -- start -----------------------------------------------------------------------------
    async def _start(
        self, params: Mapping[str, Any], project_id: str, fail: _Failure, flavor: str
    ) -> dict[str, Any]:
        keyed = None
        if self.settings.flavor == "cocalc-ai":  # master drops job_key and job_group
            try:
                keyed = keyed_job(params)
            except KeyRefused as exc:
                raise fail(str(exc)) from None
        if keyed is None:
            return await self._launch(params, project_id, fail, flavor, None)
        lock = self._key_locks.setdefault((project_id, keyed.key), asyncio.Lock())
        async with lock:
            attached = await self._attach(project_id, keyed, fail)
            if attached is not None:
                return attached
            return await self._launch(params, project_id, fail, flavor, keyed)

    async def _attach(
        self, project_id: str, keyed: KeyedJob, fail: _Failure
    ) -> dict[str, Any] | None:
        """The record of the project's running job of this key (None: there is none); the
        same key with another command is refused, as the rewrite refuses it."""
        existing = await off_loop(self.store.db, self.store.running_keyed, project_id, keyed.key)
        if existing is None:
            return None
        if existing.fingerprint != keyed.fingerprint:
            raise fail(conflict_message(keyed.key))
        log.info("job key %r: attached to the running job %s", keyed.key, existing.job_id)
        return existing.body(with_stats=False)

    async def _launch(
        self,
        params: Mapping[str, Any],
        project_id: str,
        fail: _Failure,
        flavor: str,
        keyed: KeyedJob | None,
    ) -> dict[str, Any]:
        is_async = _flag(params, "async_call", False)
        spec = self._spec(params, project_id, is_async, fail)
        job_id = str(uuid.uuid4()) if is_async else None
        spawner = None
        if self._spawners is not None and self.sandbox is not None:
            area = self.sandbox.area(project_id)
            busy = {j.project_id for j in self._running}
            await self._spawners.close_idle(busy | {area.name})
            spawner = await self._spawners.for_area(area)
        job = _Job(RunningCommand(spec, spawner=spawner, limits=self._rlimits), project_id, job_id)
        job.keyed = keyed
        job.err_on_exit = _flag(params, "err_on_exit", True)
        job.command.on_output = lambda: self._mark_dirty(job)
        if keyed is not None:
            # The row first: its unique index is what keeps a second replica, given the same
            # key at the same moment, from starting the command too.
            try:
                await self._write(self.store.create, self._record(job))
            except Exception as exc:
                if not _unique_violation(exc):
                    raise
                attached = await self._attach(project_id, keyed, fail)  # another replica's
                if attached is None:  # it ended in between: this call's own, afresh
                    return await self._launch(params, project_id, fail, flavor, keyed)
                return attached
        await job.command.start()
        self._running.add(job)
        if job_id is not None:
            self._jobs[job_id] = job
            if keyed is None:
                await self._write(self.store.create, self._record(job))
            elif job.command.pid is not None:
                await self._write(self.store.update, job_id, pid=job.command.pid)
        self._spawn(self._supervise(job))
        if job_id is None:
            limit = self.settings.hub_timeout if flavor == "http" else None
            await self._wait_done(job, limit, fail)
            return self._blocking_body(job, fail)
        body: dict[str, Any] = {
            "stdout": "",
            "stderr": "",
            "exit_code": 0,
            "type": "async",
            "job_id": job_id,
            "start": job.command.start_ms,
            "status": "running",
        }
        if job.command.pid is not None:
            body["pid"] = job.command.pid
        if keyed is not None:
            body["job_key"] = keyed.key
            if keyed.group is not None:
                body["job_group"] = keyed.group
        return body

    def _spec(
        self, params: Mapping[str, Any], project_id: str, is_async: bool, fail: _Failure
    ) -> CommandSpec:
        """Check the request's fields and resolve them into what to spawn."""
        command = params.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _Invalid("command must be a non-empty string")
        args = params.get("args")
        if args is None:
            args = []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise _Invalid("args must be a list of strings")
        for name, value in [("command", command), ("args", "".join(args))]:
            if "\x00" in value:
                raise _Invalid(f"{name} contains a NUL character")
        requested = params.get("max_output")
        if requested is not None and (
            isinstance(requested, bool) or not isinstance(requested, int | float) or requested < 1
        ):
            raise _Invalid("max_output must be a positive number of characters")
        chosen = (
            int(requested) if requested is not None else (ASYNC_MAX_OUTPUT if is_async else None)
        )
        cap = self.settings.exec_max_output
        cwd = self._cwd(project_id, params.get("path"))
        env = self._env(project_id, params.get("env"))
        bash = _flag(params, "bash", False)
        timeout = _number(params, "timeout", 60.0)
        if len(self._running) >= self.settings.max_jobs:
            raise fail(
                f"too many commands running (limit {self.settings.max_jobs}); try again later"
            )
        sandbox = self.sandbox if self.sandbox is not None and self.sandbox.enabled else None
        area = sandbox.area(project_id) if sandbox is not None else None
        try:
            spec = build_spec(
                command,
                args,
                bash=bash,
                cwd=cwd,
                env=env,
                timeout=timeout,
                max_output=cap if chosen is None else min(cap, chosen),
                tmp_root=str(area.scratch) if area is not None else None,
                owner=area.owner if area is not None else None,
            )
        except OSError as exc:
            raise fail(f"Error: could not write the script: {exc}") from None
        if sandbox is None or area is None:
            return dataclasses.replace(spec, preexec=self._setup)
        launch = sandbox.wrap(spec.argv, area, cwd)
        return dataclasses.replace(spec, launch=launch, preexec=sandbox.setup(area, self._rlimits))

    def _cwd(self, project_id: str, path: object) -> Path:
        home = project_directory(self.settings.projects_dir, project_id)
        if path is None or path == "":
            return home
        if not isinstance(path, str):
            raise _Invalid("path must be a string")
        try:
            target = resolve_path(home, path)
        except PathEscape as exc:
            self.metrics.refusals.labels("path").inc()
            raise _Invalid(str(exc)) from None
        if not target.is_dir():
            raise _Invalid(f"path {path!r} is not a directory in the project")
        return target

    def _env(self, project_id: str, extra: object) -> dict[str, str]:
        env = dict(self._base_env)
        env["HOME"] = str(project_directory(self.settings.projects_dir, project_id))
        if extra is None:
            return env
        if not isinstance(extra, dict):
            raise _Invalid("env must be an object of strings")
        for name, value in extra.items():
            if not name or "=" in name or "\x00" in name:
                raise _Invalid(f"env has an invalid variable name {name!r}")
            if not isinstance(value, str) or "\x00" in value:
                raise _Invalid(f"env[{name!r}] must be a string without NUL characters")
            env[name] = value
        return env

    # -- supervision -----------------------------------------------------------------------
    async def _supervise(self, job: _Job) -> None:
        sandbox = self.sandbox if self.sandbox is not None and self.sandbox.enabled else None
        area = sandbox.area(job.project_id) if sandbox is not None else None
        ooms = sandbox.oom_kills(area) if sandbox is not None and area is not None else 0
        try:
            await job.command.finish()
            if sandbox is not None and area is not None and sandbox.oom_kills(area) > ooms:
                caps = sandbox.caps_for(area).as_text()
                self.metrics.memory_kills.labels("job").inc()
                job.command.stderr.note(
                    f"\ncocalc-tasks: a process of this job was killed: the project reached "
                    f"its memory cap ({caps})\n"
                )
        finally:
            self._running.discard(job)
            if job.job_id is not None:
                try:
                    if not self._closed:
                        final = self._final_fields(job)
                        self.metrics.jobs_finished.labels(final["status"]).inc()
                        await self._write(self.store.update, job.job_id, **final)
                finally:
                    self._jobs.pop(job.job_id, None)
                    job.settled.set()

    def _write(self, fn: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run a store write in the writer thread, after those already queued."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    def _mark_dirty(self, job: _Job) -> None:
        if job.job_id is None or job.dirty:
            return
        job.dirty = True
        asyncio.get_running_loop().call_later(_FLUSH_SECONDS, self._flush, job)

    def _flush(self, job: _Job) -> None:
        job.dirty = False
        if job.job_id is None or not job.command.running or self._closed:
            return
        c = job.command
        future = self._write(
            self.store.update, job.job_id, stdout=c.stdout.text, stderr=c.stderr.text, stats=c.stats
        )
        future.add_done_callback(_log_failure)

    async def _wait_done(self, job: _Job, limit: float | None, fail: _Failure) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(job.command.done.wait()), limit)
        except TimeoutError:
            # CoCalc's hub stops waiting; the command goes on until its own timeout.
            raise ApiError(HUB_GAVE_UP) from None

    # -- results ---------------------------------------------------------------------------
    def _blocking_body(self, job: _Job, fail: _Failure) -> dict[str, Any]:
        c = job.command
        if c.killed == "timeout":
            raise fail(f"killed command '{c.spec.spawned}'")
        if c.killed == "cancel":  # pragma: no cover - blocking commands have no job id
            raise fail(f"killed command '{c.spec.spawned}'")
        if c.spawn_error is not None and not job.err_on_exit:
            raise fail(
                f"command '{c.spec.described}' was not able to run -- "
                f"stderr='{_cut(c.stderr.text)}'"
            )
        if c.exit_code and job.err_on_exit:
            raise fail(
                f"command '{c.spec.described}' exited with nonzero code {c.exit_code} -- "
                f"stderr='{_cut(c.stderr.text)}'"
            )
        return {
            "stdout": c.stdout.final_text(),
            "stderr": c.stderr.final_text(),
            "exit_code": c.exit_code or 0,
            "type": "blocking",
        }

    def _final_fields(self, job: _Job) -> dict[str, Any]:
        """The finished record, master's way (see the module docstring for the exceptions)."""
        c = job.command
        stdout, stderr = c.stdout.final_text(), c.stderr.final_text()
        code = c.exit_code or 0
        if c.killed == "cancel":
            status, code = "killed", code or 1
        elif c.killed == "timeout":
            killed = f"killed command '{c.spec.spawned}'"
            status, code = "error", 1
            stderr = (
                f"{stderr}\n{killed}" if stderr and not stderr.endswith("\n") else (stderr + killed)
            )
        elif c.spawn_error is not None:
            status, code, stdout = "error", 1, ""
            if not job.err_on_exit:
                stderr = (
                    f"command '{c.spec.described}' was not able to run -- "
                    f"stderr='{_cut(c.stderr.text)}'"
                )
        elif code and job.err_on_exit:
            status, code, stdout = "error", 1, ""
            stderr = c.stderr.text or "No result"
        else:
            status = "completed"
        return {
            "status": status,
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": code,
            "elapsed_s": c.elapsed_s,
            "stats": c.stats,
        }

    def _record(self, job: _Job) -> JobRecord:
        c = job.command
        assert job.job_id is not None
        return JobRecord(
            job_id=job.job_id,
            project_id=job.project_id,
            command=c.spec.described,
            status="running",
            stdout=c.stdout.text,
            stderr=c.stderr.text,
            exit_code=0,
            start=c.start_ms,
            pid=c.pid,
            elapsed_s=None,
            stats=list(c.stats),
            replica=self.replica,
            job_key=job.keyed.key if job.keyed is not None else None,
            job_group=job.keyed.group if job.keyed is not None else None,
            fingerprint=job.keyed.fingerprint if job.keyed is not None else None,
        )

    async def _lookup(self, job_id: str, project_id: str, fail: _Failure) -> JobRecord:
        job = self._jobs.get(job_id)
        if job is not None and job.project_id == project_id:
            return self._record(job)
        record = await off_loop(self.store.db, self.store.get, job_id, project_id)
        if record is None:
            raise fail(f"Async operation '{job_id}' does not exist.", thrown=True)
        return record

    async def _await_row(
        self, job_id: str, project_id: str, fail: _Failure, limit: float | None
    ) -> JobRecord:
        """A job another replica runs: read its row until it is finished, or ``limit``."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            record = await self._lookup(job_id, project_id, fail)
            if record.status != "running":
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise ApiError(HUB_GAVE_UP)
            await asyncio.sleep(_POLL_SECONDS)

    # -- get / await / cancel --------------------------------------------------------------
    async def _get(
        self,
        job_id: str,
        project_id: str,
        *,
        stats: bool,
        wait: bool,
        fail: _Failure,
        limit: float | None,
    ) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if not wait:
            return (await self._lookup(job_id, project_id, fail)).body(with_stats=stats)
        if job is not None and job.project_id == project_id:
            await self._wait_done(job, limit, fail)
            await job.settled.wait()  # the supervisor writes the final record
        return (await self._await_row(job_id, project_id, fail, limit)).body(with_stats=stats)

    async def _cancel(self, job_id: str, project_id: str, fail: _Failure) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is not None and job.project_id == project_id:
            if job.command.running:
                job.command.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.settled.wait()), 10)
        elif await off_loop(self.store.db, self.store.request_cancel, job_id, project_id):
            # Another replica runs it: its watch reads the request and kills the job.
            with contextlib.suppress(ApiError):
                await self._await_row(job_id, project_id, fail, 10)
        return (await self._lookup(job_id, project_id, fail)).body(with_stats=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Failure:
    """Builds the error of one request in its flavour's words."""

    def __init__(self, params: Mapping[str, Any], flavor: str) -> None:
        self.prefix = (
            f"Error executing command '{_js(params.get('command'))}' with args "
            f"'{_js(params.get('args'))}' -- "
            if flavor == "http"
            else ""
        )

    def __call__(self, message: str, *, thrown: bool = False) -> ApiError:
        """``thrown``: CoCalc threw an ``Error`` (its text gains ``Error: ``), not a string."""
        return ApiError(self.prefix + ("Error: " if thrown else "") + message)


def _job_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 8192 or "\x00" in value:
        raise _Invalid("a job id must be a non-empty string")
    return value


def _unique_violation(exc: BaseException) -> bool:
    """A unique index refused a row (SQLite's IntegrityError, psycopg's UniqueViolation)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"IntegrityError", "UniqueViolation"})


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _Invalid(f"{name} must be true or false")
    return value


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"{name} must be a number of seconds")
    if value < 0:
        raise _Invalid(f"{name} must not be negative")
    return float(value)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("writing a job's output to the store failed: %s", exc)


def _kill_leftover(pid: object, start: object) -> None:
    """Kill a dead server's job group, if its leader is still that job (not a reused pid)."""
    if not isinstance(pid, int) or not isinstance(start, int):
        return
    try:
        process = psutil.Process(pid)
        started = process.create_time() * 1000
        if abs(started - start) > 5000 or os.getpgid(pid) != pid:
            return
        os.killpg(pid, 9)
    except (psutil.Error, OSError):
        return
    log.warning("killed the leftover process group %d of a job of the previous server", pid)
