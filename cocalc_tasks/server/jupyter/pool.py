"""Warm pools of pre-started kernels, one pool per kernelspec and area.

An area is the global pool's shared place or one project's (see ``sandbox.py``). With the
sandbox off every call uses the default area's pools; with it on, each project that runs code
gets its own small pools, forked inside its own sandbox, stopped again when it is idle.

A call takes a kernel from its pool (starting one on the spot when the pool is empty), the pool
refills in the background, and the used kernel is shut down off the request path: nothing
persists between calls. IPython and Sage kernels are forked ready to run from a zygote that
built them once (``prepared.py``); other kernels, and every kernel with ``--no-fork-kernels``,
start through jupyter_client (forked from a zygote where they can be, else exec'd). Kernel
starts run in parallel up to ``max_parallel_starts`` so that starts overlap with execution.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from string import Template
from typing import Any

import zmq
import zmq.asyncio

from cocalc_tasks.server.jupyter.execute import run_cell
from cocalc_tasks.server.jupyter.kernel import WarmKernel, shutdown_kernel
from cocalc_tasks.server.jupyter.kernelspecs import KernelCatalog
from cocalc_tasks.server.jupyter.outputs import OutputCollector, OutputLimits
from cocalc_tasks.server.jupyter.prepared import KernelChannels, KernelConnection, PreparedKernel
from cocalc_tasks.server.metrics import ServerMetrics
from cocalc_tasks.server.processes.zygotes import (
    ForkingKernelManager,
    Zygote,
    ZygoteError,
    Zygotes,
    app_arguments,
    thread_env,
)
from cocalc_tasks.server.sandbox import ANONYMOUS, Area, Sandbox

__all__ = ["KernelPools", "KernelStartError"]

log = logging.getLogger("cocalc_tasks.server.jupyter.pool")


#: (area name, kernelspec name)
PoolKey = tuple[str, str]
#: A started kernel of either kind.
AnyKernel = WarmKernel | PreparedKernel


class KernelStartError(RuntimeError):
    """A kernel could not be started."""


def kernel_command(argv: Sequence[str], resource_dir: str) -> list[str]:
    """A kernelspec's command as jupyter_client runs it (``KernelManager.format_kernel_cmd``):
    a bare ``python`` is the server's interpreter, ``{resource_dir}`` the spec's folder."""
    command = list(argv)
    major, minor = sys.version_info[:2]
    if command and command[0] in {"python", f"python{major}", f"python{major}.{minor}"}:
        command[0] = sys.executable
    return [arg.replace("{resource_dir}", resource_dir) for arg in command]


class KernelPools:
    """All pools of one server; ``close()`` shuts every kernel down."""

    def __init__(
        self,
        catalog: KernelCatalog,
        *,
        scratch_dir: Path,
        kernel_env: dict[str, str],
        default_size: int = 2,
        size_for: Callable[[str, str], int] | None = None,
        max_parallel_starts: int = 4,
        start_timeout: float = 60.0,
        fork: bool = True,
        prepare: bool = True,
        default_area: Area | None = None,
        sandbox: Sandbox | None = None,
        env_for: Callable[[Area], dict[str, str]] | None = None,
        limits_for: Callable[[str], Sequence[tuple[int, int]]] | None = None,
        project_size: int = 1,
        idle_seconds: float = 1800.0,
        sage_threads: int = 1,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics or ServerMetrics()
        self.sage_threads = sage_threads
        self.scratch_dir = scratch_dir
        self.kernel_env = kernel_env
        self.default_area = default_area or Area(ANONYMOUS, scratch_dir, scratch_dir, scratch_dir)
        self.sandbox = sandbox
        self._env_for = env_for or (lambda area: kernel_env)
        self._limits_for = limits_for or (lambda spec_name: ())
        self._size_for = size_for or (lambda name, language: default_size)
        self._project_size = project_size
        self._idle_seconds = idle_seconds
        self._ready: dict[PoolKey, asyncio.Queue[AnyKernel]] = {}
        self._starting: dict[PoolKey, int] = {}
        self._areas: dict[str, Area] = {self.default_area.name: self.default_area}
        self._used: dict[str, float] = {}
        self._start_slots = asyncio.Semaphore(max_parallel_starts)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = zmq.asyncio.Context()
        # Clients connect before a new kernel has bound its sockets; retry after 10 ms, not
        # libzmq's default 100 ms, so a kernel is reachable as soon as it is up.
        self._context.setsockopt(zmq.RECONNECT_IVL, 10)
        self._start_timeout = start_timeout
        self._closed = False
        self._live: set[AnyKernel] = set()
        #: Kernels handed to a call and not yet released.
        self._taken: set[AnyKernel] = set()
        self._failures: dict[PoolKey, int] = {}
        #: Zygotes that fork pre-imported kernels (see processes/zygotes.py); None: always exec.
        self.zygotes = (
            Zygotes(
                kernel_env,
                # Forked kernels share this command line: name the server's scratch space in it,
                # as exec'd kernels do with their connection files.
                label=str(scratch_dir / "kernel-zygote"),
                start_timeout=start_timeout,
                sandbox=sandbox,
                env_for=self._env_for,
                sage_threads=sage_threads,
                prepare=prepare,
            )
            if fork
            else None
        )
        #: Where prepared kernels connect (one socket per area).
        self.channels = KernelChannels()

    @property
    def per_project(self) -> bool:
        """Projects get pools of their own only inside sandboxes."""
        return self.sandbox is not None and self.sandbox.enabled

    def area_for(self, area: Area | None) -> Area:
        """The area whose pools serve a call meant for ``area``."""
        if area is None or not self.per_project:
            return self.default_area
        self._areas[area.name] = area
        return area

    # -- public ------------------------------------------------------------------------------
    def warm(self, spec_name: str, area: Area | None = None) -> None:
        """Make sure the pool of ``spec_name`` (in ``area``) exists and is filling."""
        key = (self.area_for(area).name, spec_name)
        self._ready.setdefault(key, asyncio.Queue())
        self._starting.setdefault(key, 0)
        self._refill(key)

    async def take(self, spec_name: str, area: Area | None = None) -> AnyKernel:
        """A fresh kernel for one call: from the pool, or started now if the pool is empty."""
        kernel = await self._take(spec_name, area)
        self._taken.add(kernel)
        return kernel

    async def _take(self, spec_name: str, area: Area | None) -> AnyKernel:
        where = self.area_for(area)
        key = (where.name, spec_name)
        self._used[where.name] = time.monotonic()
        self.warm(spec_name, where)
        queue = self._ready[key]
        while not queue.empty():
            kernel = queue.get_nowait()
            if queue.empty():
                # Ran dry: refill now. Otherwise the refill waits for release(), so that a
                # kernel start does not compete for the CPU with the call that is running.
                self._refill(key)
            if await kernel.is_alive():
                return kernel
            self.release(kernel)
        kernel = await self.start_kernel(spec_name, where)
        self._refill(key)
        return kernel

    def release(self, kernel: AnyKernel) -> None:
        """Shut a used kernel down in the background, and top its pool up."""
        self._taken.discard(kernel)
        self._spawn(self._dispose(kernel))
        key = (kernel.area_name, kernel.spec_name)
        if key in self._ready:
            self._refill(key)

    def pooled(self, area: Area | None = None) -> list[AnyKernel]:
        """The ready kernels waiting in the pools of ``area`` (all areas: None)."""
        kernels: list[AnyKernel] = []
        wanted = None if area is None else self.area_for(area).name
        for (area_name, _), queue in self._ready.items():
            if wanted is not None and area_name != wanted:
                continue
            waiting = [queue.get_nowait() for _ in range(queue.qsize())]
            for kernel in waiting:
                queue.put_nowait(kernel)
            kernels.extend(waiting)
        return kernels

    async def settled(self, area: Area | None = None, timeout: float | None = None) -> None:
        """Wait (at most a kernel's start timeout) until no kernel of ``area``'s pools is still
        starting: a refill after a call or a stop. A listing right after a call then shows the
        pool as it will be, not as it was for the moment the refill took."""
        name = self.area_for(area).name
        limit = self._start_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not any(n for (where, _), n in self._starting.items() if where == name and n > 0):
                return
            await asyncio.sleep(0.02)

    def stop_pooled(self, pid: int, area: Area | None = None) -> bool:
        """Shut down the ready kernel with this process id (in ``area``'s pools); the pool
        refills. False if no such pooled kernel has that pid."""
        wanted = None if area is None else self.area_for(area).name
        for (area_name, _), queue in self._ready.items():
            if wanted is not None and area_name != wanted:
                continue
            kept = [queue.get_nowait() for _ in range(queue.qsize())]
            found = [k for k in kept if k.pid == pid]
            for kernel in kept:
                if kernel not in found:
                    queue.put_nowait(kernel)
            if found:
                for kernel in found:
                    self.release(kernel)
                return True
        return False

    def sizes(self, area: Area | None = None) -> dict[str, int]:
        """Ready kernels per kernelspec in ``area`` (default: the default area)."""
        name = self.area_for(area).name
        return {spec: q.qsize() for (where, spec), q in self._ready.items() if where == name}

    def census(self) -> dict[tuple[str, str], dict[str, int]]:
        """``(area, kernelspec) -> {"warm", "busy", "starting"}`` over every pool."""
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for key, queue in self._ready.items():
            counts[key] = {"warm": queue.qsize(), "busy": 0, "starting": self._starting.get(key, 0)}
        for kernel in self._taken:
            key = (kernel.area_name, kernel.spec_name)
            counts.setdefault(key, {"warm": 0, "busy": 0, "starting": 0})["busy"] += 1
        return counts

    async def close_idle(self) -> list[str]:
        """Stop the pools and zygotes of project areas unused for ``idle_seconds``."""
        now = time.monotonic()
        idle = [
            name
            for name, used in self._used.items()
            if name != self.default_area.name and now - used > self._idle_seconds
        ]
        for name in idle:
            self._used.pop(name, None)
            for key in [k for k in self._ready if k[0] == name]:
                queue = self._ready.pop(key)
                self._starting.pop(key, None)
                while not queue.empty():
                    await self._dispose(queue.get_nowait())
            if self.zygotes is not None:
                await self.zygotes.close_area(name)
            if (area := self._areas.get(name)) is not None:
                await self.channels.close_area(area.scratch)
        return idle

    def live_count(self) -> int:
        return len(self._live)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(k.dispose() for k in list(self._live)), return_exceptions=True)
        self._live.clear()
        if self.zygotes is not None:
            await self.zygotes.close()
        await self.channels.close()
        self._context.destroy(linger=0)

    # -- internals ---------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self, key: PoolKey) -> None:
        if self._closed or key not in self._ready:
            return
        area_name, spec_name = key
        target = self._size_for(spec_name, self.catalog.language(spec_name))
        if area_name != self.default_area.name:
            target = min(target, self._project_size)
        missing = target - self._ready[key].qsize() - self._starting[key]
        for _ in range(max(0, missing)):
            self._starting[key] += 1
            self._spawn(self._fill_one(key))

    async def _fill_one(self, key: PoolKey) -> None:
        area_name, spec_name = key
        try:
            # Back off after repeated failures, so a broken spec does not spin the CPU.
            failures = self._failures.get(key, 0)
            if failures:
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            kernel = await self.start_kernel(spec_name, self._areas[area_name])
        except Exception as exc:
            self._failures[key] = self._failures.get(key, 0) + 1
            log.warning("could not pre-start a %s kernel: %s", spec_name, exc)
            return
        finally:
            if key in self._starting:
                self._starting[key] -= 1
        self._failures.pop(key, None)
        if self._closed or key not in self._ready:
            await self._dispose(kernel)
        else:
            self._ready[key].put_nowait(kernel)

    async def start_kernel(self, spec_name: str, area: Area | None = None) -> AnyKernel:
        """Start one ready kernel outside any pool; the caller disposes it."""
        where = self.area_for(area)
        spec = self.catalog.get_spec(spec_name)
        workdir = Path(tempfile.mkdtemp(prefix="kernel-", dir=where.scratch))
        env = {**self._env_for(where), "COCALC_JUPYTER_KERNELNAME": spec_name}
        async with self._start_slots:
            started = time.monotonic()
            kernel: AnyKernel | None = await self._start_prepared(
                spec_name, spec, where, workdir, env
            )
            if kernel is None:
                kernel = await self._start_managed(spec_name, spec.language, where, workdir, env)
        self.metrics.kernel_starts.labels(spec_name, kernel.how).inc()
        self.metrics.kernel_start_seconds.labels(kernel.how).observe(time.monotonic() - started)
        return kernel

    async def _start_prepared(
        self, spec_name: str, spec: Any, where: Area, workdir: Path, env: dict[str, str]
    ) -> PreparedKernel | None:
        """Fork a prepared kernel from its zygote; None if this kernel has no such zygote.
        ``spec``: the kernelspec, as read once by :meth:`start_kernel`."""
        if self.zygotes is None:
            return None
        argv = kernel_command(spec.argv, spec.resource_dir)
        spec_env = {**env, **{k: Template(v).safe_substitute(env) for k, v in spec.env.items()}}
        if len(argv) < 3 or argv[1] != "-m":
            return None
        zygote = await self.zygotes.for_command(argv, where, spec_env)
        if zygote is None or not zygote.prepared or zygote.prepare is None:
            return None
        if zygote.prepare != (argv[2], app_arguments(argv)):
            return None  # another spec of the same interpreter and module, with other options
        address = await self.channels.address(where)
        token, connected = self.channels.expect()
        argv = [arg.replace("{connection_file}", address) for arg in argv]
        if where.owner is not None:  # the kernel works in it as the project's user
            where.owner.chown_tree(workdir)
        spec_env.update(thread_env(argv[2], self.sage_threads))
        try:
            process = await zygote.spawn(
                argv,
                spec_env,
                str(workdir),
                limits=self._limits_for(spec_name),
                serve={"address": address, "token": token},
            )
        except (OSError, ZygoteError) as exc:
            self.channels.forget(token)
            log.warning("prepared fork failed (%s): starting the kernel the usual way", exc)
            return None
        try:
            connection = await self._connected(connected, zygote, process.pid)
        except Exception as exc:
            self.channels.forget(token)
            if process.poll() is None:
                process.kill()
            raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
        kernel = PreparedKernel(
            spec_name, spec.language, process, zygote, connection, workdir, where.name, address
        )
        self._live.add(kernel)
        return kernel

    async def _connected(
        self, connected: asyncio.Future[KernelConnection], zygote: Zygote, pid: int
    ) -> KernelConnection:
        """The kernel's connection once it said hello; fails if it dies or times out first."""
        died: asyncio.Future[Any] = asyncio.ensure_future(
            zygote.wait_exit(pid, self._start_timeout)
        )
        either: set[asyncio.Future[Any]] = {connected, died}
        try:
            done, _ = await asyncio.wait(
                either, timeout=self._start_timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            died.cancel()
        if connected in done:
            return connected.result()
        connected.cancel()
        if died in done and died.result() is not None:
            raise RuntimeError(f"the kernel died while starting (exit code {died.result()})")
        raise TimeoutError(f"the kernel did not connect within {self._start_timeout:g} s")

    async def _start_managed(
        self, spec_name: str, language: str, where: Area, workdir: Path, env: dict[str, str]
    ) -> WarmKernel:
        """Start a kernel through jupyter_client (forked from a zygote where it can be)."""
        scratch = where.scratch
        token = uuid.uuid4().hex[:10]
        manager = ForkingKernelManager(
            zygotes=self.zygotes,
            area=where,
            sandbox=self.sandbox,
            limits=self._limits_for(spec_name),
            sage_threads=self.sage_threads,
            kernel_name=spec_name,
            kernel_spec_manager=self.catalog.manager,
            transport="ipc",
            ip=str(scratch / f"i-{token}"),
            connection_file=str(scratch / f"kernel-{token}.json"),
            context=self._context,
        )
        try:
            await manager.start_kernel(cwd=str(workdir), env=env)
        except Exception as exc:
            await shutdown_kernel(manager, workdir, spec_name)
            raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
        client = manager.client(context=self._context)
        kernel = WarmKernel(spec_name, language, manager, client, workdir, where.name)
        kernel.how = "forked" if manager.forked else "exec"
        self._live.add(kernel)
        try:
            client.start_channels()
            await kernel.wait_ready(self._start_timeout)
            await _warm_up(kernel, self._start_timeout)
        except Exception as exc:
            await self._dispose(kernel)
            raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
        return kernel

    async def _dispose(self, kernel: AnyKernel) -> None:
        await kernel.dispose()
        self._live.discard(kernel)


# Throwaway cells per language: a fresh IPython kernel's first execution is about twice as slow
# as later ones (and formatting the first result is slower still), so the pool pays that cost
# instead of the caller. They are not recorded: the caller's first cell is still In[1], and
# nothing is bound in the user namespace.
_IPYTHON_WARM_UP = ("None", "get_ipython().display_formatter.format(0); None")
_WARM_UP: dict[str, tuple[str, ...]] = {
    "python": _IPYTHON_WARM_UP,
    "sage": _IPYTHON_WARM_UP,
    "bash": (":",),
}


async def _warm_up(kernel: WarmKernel, timeout: float) -> None:
    for code in _WARM_UP.get(kernel.language.lower(), ()):
        await run_cell(kernel, code, OutputCollector(OutputLimits(0, 0)), timeout, record=False)
