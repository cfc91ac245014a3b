"""One started kernel: its manager, its client, its scratch directory, and its disposal."""

from __future__ import annotations

import logging
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

__all__ = ["WarmKernel"]

log = logging.getLogger("cocalc_tasks.server.kernel")


@dataclass(eq=False)
class WarmKernel:
    """A started kernel with its channels open and its own scratch directory."""

    spec_name: str
    language: str
    manager: AsyncKernelManager
    client: Any
    workdir: Path
    disposed: bool = field(default=False)

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
        try:
            await self.manager.shutdown_kernel(now=True)
        except Exception:
            log.warning("kernel %s did not shut down cleanly", self.spec_name, exc_info=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
