"""One started jupyter_client kernel: its manager, its client, its scratch directory, how it
runs a cell's messages, and its disposal. (Prepared kernels, ``prepared.py``, have the same
interface over a lighter wire.)"""

from __future__ import annotations

import logging
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

__all__ = ["KernelDied", "WarmKernel", "describe_exit", "remove_workdir", "shutdown_kernel"]

log = logging.getLogger("cocalc_tasks.server.jupyter.kernel")


class KernelDied(RuntimeError):
    """The kernel died or had to be killed; the message is CoCalc's ``Kernel last ...`` text."""


def describe_exit(code: int | None) -> str:
    """CoCalc's text for a kernel that ended with ``code`` (``Popen.returncode``; None:
    unknown)."""
    if code is None:
        return "Kernel last exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"Kernel last terminated by signal {name}"
    return f"Kernel last exited with code {code}."


def remove_workdir(workdir: Path) -> None:
    """Remove a kernel's scratch directory (usually empty: one ``rmdir``)."""
    try:
        workdir.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)


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
    #: The ``msg_id`` of the cell running now.
    _cell: str = field(default="")
    #: How kernel starts are counted in the metrics: "forked" or "exec" (set at start).
    how: str = field(default="exec")

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

    async def is_alive(self) -> bool:
        return bool(await self.manager.is_alive())

    async def interrupt(self) -> None:
        await self.manager.interrupt_kernel()

    def send_cell(self, code: str, record: bool) -> None:
        """Send ``code`` as an ``execute_request``; ``record=False`` keeps it out of the
        kernel's history and execution count."""
        self._cell = self.client.execute(
            code, store_history=record, allow_stdin=False, stop_on_error=False
        )

    async def next_message(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """The running cell's next IOPub message as ``(msg_type, content)``; once the kernel
        is idle again, its shell reply as ``("execute_reply", content)``. None if nothing of
        this cell came within ``timeout`` s; :class:`KernelDied` if the kernel died."""
        try:
            msg = await self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:  # nothing yet: check that the kernel still lives
            died = await self.exit_description()
            if died is not None:
                raise KernelDied(died) from None
            return None
        if msg.get("parent_header", {}).get("msg_id") != self._cell:
            return None
        msg_type: str = msg["header"]["msg_type"]
        content: dict[str, Any] = dict(msg.get("content", {}))
        if msg_type != "status":
            return msg_type, content
        if content.get("execution_state") != "idle":
            return None
        return "execute_reply", await self._reply()

    async def _reply(self) -> dict[str, Any]:
        """The cell's shell reply (``{}`` if none comes within 5 s)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                reply = await self.client.get_shell_msg(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                break
            if reply.get("parent_header", {}).get("msg_id") == self._cell:
                return dict(reply.get("content", {}))
            # else: bash_kernel sends extra kernel_info replies
        return {}

    async def exit_description(self) -> str | None:
        """None while alive; else CoCalc-style "exited with code N" / "terminated by signal"."""
        if await self.manager.is_alive():
            return None
        provisioner = self.manager.provisioner
        code = await provisioner.poll() if provisioner is not None else None
        if getattr(self.manager, "wrapped", False) and code is not None and 128 < code <= 192:
            code = 128 - code  # bubblewrap's 128 + N: the kernel died of signal N
        return describe_exit(code)

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
    remove_workdir(workdir)
