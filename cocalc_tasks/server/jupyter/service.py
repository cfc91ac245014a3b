"""One execution end to end: params → auth → cache → pool.take → runner → cache.store → body.

Order and messages follow CoCalc (docs/cocalc-api.md §4, §6, §7). Every refusal raises
:class:`ApiError`, which the routes turn into HTTP 200 ``{"error": message}``.

Deliberate differences from cocalc.com, all on the side of safety:
- a normal request checks project permissions *before* the cache (CoCalc checks after);
- a hash-only lookup needs a caller allowed to call at all (CoCalc asks nothing), and a
  project's cached result is a hit only for callers who may use that project;
- a ``path`` that leaves the project directory, or does not exist, is refused with an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cocalc_tasks.model.hashing import compute_hash
from cocalc_tasks.server.api_error import ApiError
from cocalc_tasks.server.auth import Identity
from cocalc_tasks.server.jupyter.execute import KernelDied, chdir_code, run_cell
from cocalc_tasks.server.jupyter.kernelspecs import KernelCatalog, UnknownKernel
from cocalc_tasks.server.jupyter.outputs import OutputCollector, OutputLimits
from cocalc_tasks.server.jupyter.phases import PhaseClock
from cocalc_tasks.server.jupyter.pool import KernelPools, KernelStartError
from cocalc_tasks.server.jupyter.quotas import QuotaExceeded, Quotas, caller_ids
from cocalc_tasks.server.metrics import ServerMetrics
from cocalc_tasks.server.projects import (
    PathEscape,
    checked_project_id,
    project_directory,
    resolve_path,
)
from cocalc_tasks.server.sandbox import Sandbox
from cocalc_tasks.server.settings import ServerSettings
from cocalc_tasks.server.storage import ApiCall, Storage, off_loop

__all__ = ["ExecutionService"]

log = logging.getLogger("cocalc_tasks.server.jupyter.service")

NOT_SIGNED_IN = "account_id must be specified -- make sure you are signed in"
NOT_COLLABORATOR = "permission denied -- user must be collaborator on project"
MISSING_INPUT = "input or hash must not be null"
MISSING_KERNEL = "kernel must be specified in hash is not specified"
SPAWN_FAILED = "Error: **Unable to Spawn Jupyter Kernel:**\n\nError: "
_HASH_RE = re.compile(r"^[0-9a-f]{40}$")


def _report_write_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("a store write failed: %s", exc)


def js_iso_now() -> str:
    """The current time as JavaScript's ``Date.toISOString()`` prints it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _optional_str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _history(params: Mapping[str, Any]) -> list[str]:
    value = params.get("history")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ApiError("history must be a list of strings")
    return value


def _project_id(params: Mapping[str, Any]) -> str | None:
    value = params.get("project_id")
    return None if value is None else checked_project_id(value)


class ExecutionService:
    def __init__(
        self,
        settings: ServerSettings,
        catalog: KernelCatalog,
        pools: KernelPools,
        storage: Storage,
        sandbox: Sandbox | None = None,
        metrics: ServerMetrics | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        """``quotas``: shared with whatever else reads them (the pages, /metrics), so the
        site's usage is read once per period for all of them."""
        self.settings = settings
        self.catalog = catalog
        self.pools = pools
        self.metrics = metrics or ServerMetrics()
        self.db = storage.db
        self.cache = storage.cache
        self.api_log = storage.api_log
        self.quotas = quotas or Quotas(storage.api_log, settings)
        self._log_writer = concurrent.futures.ThreadPoolExecutor(1, "cocalc-api-log")
        self.sandbox = sandbox
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self.sandbox_dir = settings.data_dir / "sandbox"
        self.sandbox_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        """Finish writing the API log (the store closes after this)."""
        await asyncio.to_thread(self._log_writer.shutdown, wait=True)

    # -- auth ------------------------------------------------------------------------------
    def _authorize(self, identity: Identity, project_id: str | None) -> None:
        if project_id is not None:
            if not identity.signed_in:
                raise ApiError(NOT_SIGNED_IN, refusal="not_signed_in")
            if not identity.may_use_project(project_id.lower()):
                raise ApiError(NOT_COLLABORATOR, refusal="other_project")
        elif not identity.signed_in and not self.settings.allow_anonymous:
            raise ApiError(NOT_SIGNED_IN, refusal="not_signed_in")

    # -- kernels -----------------------------------------------------------------------------
    def kernels(self, params: Mapping[str, Any], identity: Identity) -> list[dict[str, Any]]:
        self._authorize(identity, _project_id(params))
        return self.catalog.listing()

    # -- execute -----------------------------------------------------------------------------
    async def execute(
        self, params: Mapping[str, Any], identity: Identity, *, route: str = "v2"
    ) -> dict[str, Any]:
        """Return ``{"output", "created"}`` plus ``id`` on a cache hit; ``{}`` on a hash miss.

        Every call is written to the API log, refusals included, under ``route``."""
        started = time.monotonic()
        clock = PhaseClock()
        facts: dict[str, Any] = {"cached": False, "clock": clock}
        error: str | None = None
        try:
            answer = await self._execute(params, identity, facts)
        except ApiError as exc:
            error = str(exc)
            raise
        finally:
            account_id, anonymous_id = caller_ids(identity)
            call = ApiCall(
                route=route,
                account_id=account_id,
                anonymous_id=anonymous_id,
                project_id=facts.get("project_id"),
                path=facts.get("path"),
                kernel=facts.get("kernel"),
                hash=facts.get("hash"),
                tag=facts.get("tag"),
                cached=facts["cached"],
                total_time_s=time.monotonic() - started,
                error=error,
            )
            self._log(call)
            clock.lap("store_writes")
            if error is None and (facts.get("kernel_ran") or facts["cached"]):
                kind = "computed" if facts.get("kernel_ran") else "cached"
                self._after_answer(self.metrics.phases, clock, kind)
        return answer

    def _log(self, call: ApiCall) -> None:
        """Write one API log row, after the answer; a lost row is logged and never costs the
        caller a result."""
        self._after_answer(self.api_log.record, call)

    def _after_answer(self, write: Callable[..., object], *args: Any) -> None:
        """Run a store write once the answer is on its way. SQLite: on the event loop's next
        turn (a fraction of a millisecond). PostgreSQL: by one thread, in call order."""
        name = getattr(write, "__qualname__", "write")
        if self.db.local:

            def run() -> None:
                try:
                    write(*args)
                except Exception as exc:
                    log.error("store write %s failed: %s", name, exc)

            asyncio.get_running_loop().call_soon(run)
            return
        try:
            written = asyncio.get_running_loop().run_in_executor(self._log_writer, write, *args)
        except RuntimeError:  # the server is stopping: its writer is closed
            log.warning("store write %s lost at shutdown", name)
        else:
            written.add_done_callback(_report_write_failure)

    async def _execute(
        self, params: Mapping[str, Any], identity: Identity, facts: dict[str, Any]
    ) -> dict[str, Any]:
        no_cache = bool(params.get("noCache"))
        digest = params.get("hash")
        if digest is not None and not no_cache:
            return await self._lookup(digest, identity, facts)
        input_ = _optional_str(params, "input")
        kernel_name = _optional_str(params, "kernel")
        if input_ is None:
            raise ApiError(MISSING_INPUT)
        if kernel_name is None or not kernel_name.strip():
            raise ApiError(MISSING_KERNEL)
        history = _history(params)
        project_id = _project_id(params)
        path = _optional_str(params, "path")
        facts.update(
            kernel=kernel_name,
            project_id=project_id.lower() if project_id else None,
            path=path,
            tag=_optional_str(params, "tag"),  # CoCalc writes it to its API log
        )
        self._authorize(identity, project_id)
        try:
            kernel = self.catalog.resolve(kernel_name)
        except UnknownKernel as exc:
            raise ApiError(SPAWN_FAILED + str(exc)) from None
        directory = self._directory(project_id, path)
        digest = compute_hash(input_, kernel_name, history, project_id, path)
        facts["hash"] = digest
        clock: PhaseClock = facts["clock"]
        clock.lap("checks")
        hit = None if no_cache else await self._cached(digest, identity)
        clock.lap("cache_lookup")
        if hit is not None:
            facts["cached"] = True
            self.metrics.executions.labels("cache").inc()
            return hit
        if project_id is None:  # CoCalc's quotas hold in the global pool, on a cache miss
            try:
                await off_loop(self.db, self.quotas.check, identity)
            except QuotaExceeded as exc:
                raise ApiError(str(exc), refusal="quota") from None
            clock.lap("quota")
        created = js_iso_now()
        output = await self._run(kernel.spec_name, directory, history, input_, project_id, clock)
        facts["kernel_ran"] = True
        self.metrics.executions.labels("computed").inc()
        owner = project_id.lower() if project_id else None
        if self.db.local:  # written on the loop's next turn, before any later request is read
            self._after_answer(self.cache.put, digest, output, created, owner)
        else:  # another replica may ask for this hash at once: stored before the answer
            await off_loop(self.db, self.cache.put, digest, output, created, owner)
        return {"output": output, "created": created}

    async def _lookup(
        self, digest: object, identity: Identity, facts: dict[str, Any]
    ) -> dict[str, Any]:
        """A hash-only lookup. CoCalc answers it before any check; here the caller must be
        allowed to call at all, and a project's result is only a hit for those who may use
        that project (for anyone else it is a miss, which says nothing of its existence)."""
        if not identity.signed_in and not self.settings.allow_anonymous:
            raise ApiError(NOT_SIGNED_IN, refusal="not_signed_in")
        if not isinstance(digest, str) or not _HASH_RE.match(digest):
            raise ApiError("hash must be a string of 40 hex digits")
        facts["hash"] = digest
        hit = await self._cached(digest, identity)
        facts["cached"] = hit is not None
        if hit is not None:
            self.metrics.executions.labels("cache").inc()
        return hit or {}

    async def _cached(self, digest: str, identity: Identity) -> dict[str, Any] | None:
        hit = await off_loop(self.db, self.cache.get, digest)
        if hit is None:
            return None
        if hit.project_id is not None and not (
            identity.signed_in and identity.may_use_project(hit.project_id)
        ):
            return None
        self._after_answer(self.cache.touch, hit.id)
        return {"id": hit.id, "output": hit.output, "created": hit.created}

    def _directory(self, project_id: str | None, path: str | None) -> Path | None:
        if path is None:
            return None  # the kernel's own fresh scratch directory, deleted afterwards
        base = (
            project_directory(self.settings.projects_dir, project_id)
            if project_id is not None
            else self.sandbox_dir
        )
        try:
            target = resolve_path(base, path)
        except PathEscape as exc:
            raise ApiError(f"Error: {exc}", refusal="path") from None
        if not target.is_dir():
            raise ApiError(f"Error: path {path!r} is not a directory in the project")
        return target

    async def _run(
        self,
        spec_name: str,
        directory: Path | None,
        history: list[str],
        input_: str,
        project_id: str | None,
        clock: PhaseClock,
    ) -> list[dict[str, Any]]:
        in_project = project_id is not None
        s = self.settings
        timeout = s.project_cell_timeout if in_project else s.cell_timeout
        limits = OutputLimits(
            max_output_per_cell=s.project_max_output_per_cell
            if in_project
            else s.max_output_per_cell,
            max_output=s.project_max_output if in_project else s.max_output,
        )
        async with self._slots:
            area = self.sandbox.area(project_id) if self.sandbox is not None else None
            ooms = self.sandbox.oom_kills(area) if self.sandbox is not None and area else 0
            try:
                kernel = await self.pools.take(spec_name, area)
            except KernelStartError as exc:
                raise ApiError(SPAWN_FAILED + str(exc)) from None
            clock.lap("kernel_take")
            try:
                prefix: list[dict[str, Any]] = []
                if directory is not None:
                    code = chdir_code(kernel.language, str(directory))
                    if code is None:
                        prefix.append(
                            {
                                "name": "stderr",
                                "text": f"Error: unable to change directory: no chdir for "
                                f"language {kernel.language!r}",
                            }
                        )
                    else:
                        await run_cell(kernel, code, OutputCollector(limits), timeout)
                if history:
                    await run_cell(kernel, "\n".join(history), OutputCollector(limits), timeout)
                collector = OutputCollector(limits, items=prefix)
                outputs = await run_cell(kernel, input_, collector, timeout)
                clock.lap("execute")
                return outputs
            except KernelDied as exc:
                hint = ""
                if self.sandbox is not None and area and self.sandbox.oom_kills(area) > ooms:
                    caps = self.sandbox.caps_for(area).as_text()
                    hint = f" (the project reached its memory cap: {caps})"
                    self.metrics.memory_kills.labels("kernel").inc()
                raise ApiError(f"Error: {exc}{hint}") from None
            finally:
                self.pools.release(kernel)
                clock.lap("release")
