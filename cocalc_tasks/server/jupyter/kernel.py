"""One started kernel: its manager, its client, its scratch directory, and its disposal."""

from __future__ import annotations

import logging
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

__all__ = ["WarmKernel", "shutdown_kernel"]

log = logging.getLogger("cocalc_tasks.server.jupyter.kernel")


@dataclass(eq=False)
class WarmKernel:
    """A started kernel with its channels open and its own scratch directory."""

    spec_name: str
    language: str
    manager: AsyncKernelManager
    client: AsyncKernelClient
    workdir: Path
    #: The area (project, or the global pool) whose pools it belongs to.
    area_name: str = "anonymous"
    disposed: bool = field(default=False)

    @property
    def pid(self) -> int | None:
        """The kernel's process id (exec'd or forked)."""
        pid = getattr(self.manager.provisioner, "pid", None)
        return pid if isinstance(pid, int) else None

    @property
    def connection_file(self) -> str:
        return str(self.manager.connection_file)

    async def wait_ready(self, timeout: float) -> None:
        """Return once the kernel answers on shell *and* our IOPub subscription is live.

        Like jupyter_client's ``wait_for_ready``, minus its fixed 1 s and 0.2 s waits: IOPub
        counts as live on the first message there (ipykernel's ``iopub_welcome``, or the
        status of a ``kernel_info`` request, re-sent every 0.1 s until one shows up). Only then
        can no output of the first cell be lost.
        """
        deadline = time.monotonic() + timeout
        replied = subscribed = False
        sent = time.monotonic()
        self.client.kernel_info()
        while not (replied and subscribed):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel did not answer within {timeout:g} s")
            try:
                reply = await self.client.get_shell_msg(timeout=0.05)
            except queue.Empty:
                died = await self.exit_description()
                if died is not None:
                    raise RuntimeError(f"the kernel died while starting ({died})") from None
            else:
                replied = replied or reply["msg_type"] == "kernel_info_reply"
            while not subscribed:
                try:
                    await self.client.get_iopub_msg(timeout=0)
                except queue.Empty:
                    break
                subscribed = True
            if replied and not subscribed and time.monotonic() - sent > 0.1:
                self.client.kernel_info()
                sent = time.monotonic()

    async def exit_description(self) -> str | None:
        """None while alive; else CoCalc-style "exited with code N" / "terminated by signal"."""
        if await self.manager.is_alive():
            return None
        code = None
        provisioner = self.manager.provisioner
        if provisioner is not None:
            code = await provisioner.poll()
        if code is None:
            return "Kernel last exited"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"Kernel last terminated by signal {name}"
        return f"Kernel last exited with code {code}."

    async def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        try:
            self.client.stop_channels()
        except Exception:  # pragma: no cover - best effort on teardown
            log.debug("stop_channels failed", exc_info=True)
        await shutdown_kernel(self.manager, self.workdir, self.spec_name)


async def shutdown_kernel(manager: AsyncKernelManager, workdir: Path, spec_name: str) -> None:
    """Stop a kernel process (started or half-started) and remove its working directory."""
    try:
        await manager.shutdown_kernel(now=True)
    except Exception:
        log.warning("kernel %s did not shut down cleanly", spec_name, exc_info=True)
    shutil.rmtree(workdir, ignore_errors=True)
