"""Warm pools of pre-started kernels, one pool per kernelspec.

A call takes a kernel from its pool (starting one on the spot when the pool is empty), the pool
refills in the background, and the used kernel is shut down off the request path: nothing
persists between calls. Kernel starts run in parallel up to ``max_parallel_starts`` so that
starts overlap with execution.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from cocalc_tasks.server.forkserver import ForkingKernelManager, ForkServers
from cocalc_tasks.server.kernel import WarmKernel, shutdown_kernel
from cocalc_tasks.server.kernelspecs import KernelCatalog
from cocalc_tasks.server.outputs import OutputCollector, OutputLimits
from cocalc_tasks.server.runner import run_cell

__all__ = ["KernelPools", "KernelStartError"]

log = logging.getLogger("cocalc_tasks.server.pool")


class KernelStartError(RuntimeError):
    """A kernel could not be started."""


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
    ) -> None:
        self.catalog = catalog
        self.scratch_dir = scratch_dir
        self.kernel_env = kernel_env
        self._size_for = size_for or (lambda name, language: default_size)
        self._ready: dict[str, asyncio.Queue[WarmKernel]] = {}
        self._starting: dict[str, int] = {}
        self._start_slots = asyncio.Semaphore(max_parallel_starts)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = zmq.asyncio.Context()
        # Clients connect before a new kernel has bound its sockets; retry after 10 ms, not
        # libzmq's default 100 ms, so a kernel is reachable as soon as it is up.
        self._context.setsockopt(zmq.RECONNECT_IVL, 10)
        self._start_timeout = start_timeout
        self._closed = False
        self._live: set[WarmKernel] = set()
        self._failures: dict[str, int] = {}
        #: Zygotes that fork pre-imported kernels (see forkserver.py); None: always exec.
        self.fork_servers = (
            ForkServers(
                kernel_env,
                # Forked kernels share this command line: name the server's scratch space in it,
                # as exec'd kernels do with their connection files.
                label=str(scratch_dir / "kernel-zygote"),
                start_timeout=start_timeout,
            )
            if fork
            else None
        )

    # -- public ------------------------------------------------------------------------------
    def warm(self, spec_name: str) -> None:
        """Make sure the pool of ``spec_name`` exists and is filling."""
        self._ready.setdefault(spec_name, asyncio.Queue())
        self._starting.setdefault(spec_name, 0)
        self._refill(spec_name)

    async def take(self, spec_name: str) -> WarmKernel:
        """A fresh kernel for one call: from the pool, or started now if the pool is empty."""
        self.warm(spec_name)
        queue = self._ready[spec_name]
        while not queue.empty():
            kernel = queue.get_nowait()
            if queue.empty():
                # Ran dry: refill now. Otherwise the refill waits for release(), so that a
                # kernel start does not compete for the CPU with the call that is running.
                self._refill(spec_name)
            if await kernel.manager.is_alive():
                return kernel
            self.release(kernel)
        kernel = await self.start_kernel(spec_name)
        self._refill(spec_name)
        return kernel

    def release(self, kernel: WarmKernel) -> None:
        """Shut a used kernel down in the background, and top its pool up."""
        self._spawn(self._dispose(kernel))
        if kernel.spec_name in self._ready:
            self._refill(kernel.spec_name)

    def pooled(self) -> list[WarmKernel]:
        """The ready kernels waiting in the pools (not yet given to any call)."""
        kernels: list[WarmKernel] = []
        for queue in self._ready.values():
            waiting = [queue.get_nowait() for _ in range(queue.qsize())]
            for kernel in waiting:
                queue.put_nowait(kernel)
            kernels.extend(waiting)
        return kernels

    def stop_pooled(self, pid: int) -> bool:
        """Shut down the ready kernel with this process id; the pool refills. False if no
        pooled kernel has that pid."""
        for queue in self._ready.values():
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

    def sizes(self) -> dict[str, int]:
        return {name: queue.qsize() for name, queue in self._ready.items()}

    def live_count(self) -> int:
        return len(self._live)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(k.dispose() for k in list(self._live)), return_exceptions=True)
        self._live.clear()
        if self.fork_servers is not None:
            await self.fork_servers.close()
        self._context.destroy(linger=0)

    # -- internals ---------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self, spec_name: str) -> None:
        if self._closed:
            return
        target = self._size_for(spec_name, self.catalog.language(spec_name))
        missing = target - self._ready[spec_name].qsize() - self._starting[spec_name]
        for _ in range(max(0, missing)):
            self._starting[spec_name] += 1
            self._spawn(self._fill_one(spec_name))

    async def _fill_one(self, spec_name: str) -> None:
        try:
            # Back off after repeated failures, so a broken spec does not spin the CPU.
            failures = self._failures.get(spec_name, 0)
            if failures:
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            kernel = await self.start_kernel(spec_name)
        except Exception as exc:
            self._failures[spec_name] = self._failures.get(spec_name, 0) + 1
            log.warning("could not pre-start a %s kernel: %s", spec_name, exc)
            return
        finally:
            self._starting[spec_name] -= 1
        self._failures.pop(spec_name, None)
        if self._closed:
            await self._dispose(kernel)
        else:
            self._ready[spec_name].put_nowait(kernel)

    async def start_kernel(self, spec_name: str) -> WarmKernel:
        """Start one ready kernel outside any pool; the caller disposes it."""
        spec = self.catalog.get_spec(spec_name)
        workdir = Path(tempfile.mkdtemp(prefix="kernel-", dir=self.scratch_dir))
        token = uuid.uuid4().hex[:12]
        manager = ForkingKernelManager(
            fork_servers=self.fork_servers,
            kernel_name=spec_name,
            kernel_spec_manager=self.catalog.manager,
            transport="ipc",
            ip=str(self.scratch_dir / f"ipc-{token}"),
            connection_file=str(self.scratch_dir / f"kernel-{token}.json"),
            context=self._context,
        )
        env = {**self.kernel_env, "COCALC_JUPYTER_KERNELNAME": spec_name}
        async with self._start_slots:
            try:
                await manager.start_kernel(cwd=str(workdir), env=env)
            except Exception as exc:
                await shutdown_kernel(manager, workdir, spec_name)
                raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
            client = manager.client(context=self._context)
            kernel = WarmKernel(spec_name, spec.language, manager, client, workdir)
            self._live.add(kernel)
            try:
                client.start_channels()
                await kernel.wait_ready(self._start_timeout)
                await _warm_up(kernel, self._start_timeout)
            except Exception as exc:
                await self._dispose(kernel)
                raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
        return kernel

    async def _dispose(self, kernel: WarmKernel) -> None:
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
