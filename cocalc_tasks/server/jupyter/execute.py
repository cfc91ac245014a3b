"""Run code on one kernel: send the cell, collect its messages until its reply, enforce limits.

Both kinds of kernel (:class:`~cocalc_tasks.server.jupyter.kernel.WarmKernel` over
jupyter_client, :class:`~cocalc_tasks.server.jupyter.prepared.PreparedKernel` over its own
socket) give the cell's messages in order and end with its ``execute_reply``, so no output is
lost. On a per-cell timeout the kernel is interrupted up to three times about a second apart,
then killed (docs/cocalc-api.md §8).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from cocalc_tasks.server.jupyter.kernel import KernelDied
from cocalc_tasks.server.jupyter.outputs import OutputCollector

__all__ = ["Kernel", "KernelDied", "chdir_code", "run_cell"]

log = logging.getLogger("cocalc_tasks.server.jupyter.execute")

_POLL_SECONDS = 0.5
_INTERRUPTS = 3
_INTERRUPT_GAP = 1.0


class Kernel(Protocol):
    """What running a cell needs of a kernel (both kinds have it)."""

    spec_name: str
    language: str
    area_name: str
    disposed: bool

    @property
    def pid(self) -> int | None: ...

    def send_cell(self, code: str, record: bool) -> None: ...

    async def next_message(self, timeout: float) -> tuple[str, dict[str, Any]] | None: ...

    async def interrupt(self) -> None: ...

    async def is_alive(self) -> bool: ...

    async def dispose(self) -> None: ...


def chdir_code(language: str, directory: str) -> str | None:
    """Code that changes the kernel's working directory, or None if the language is unknown."""
    quoted = json.dumps(directory)
    lang = language.lower()
    if lang in {"python", "sage", "python3"}:
        return f"__import__('os').chdir({quoted})"
    if lang == "bash":
        return "cd " + "'" + directory.replace("'", "'\\''") + "'"
    if lang == "r":
        return f"setwd({quoted})"
    if lang == "julia":
        return f"cd({quoted})"
    return None


async def run_cell(
    kernel: Kernel,
    code: str,
    collector: OutputCollector,
    timeout: float,
    *,
    record: bool = True,
) -> list[dict[str, Any]]:
    """Execute one cell; return the filtered outputs collected into ``collector``.

    On the time limit the kernel's ``KeyboardInterrupt`` ends up in the outputs, as in CoCalc.
    ``record=False`` keeps the cell out of the kernel's history and execution count.
    """
    kernel.send_cell(code, record)
    deadline = time.monotonic() + timeout
    interrupts = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if interrupts >= _INTERRUPTS:
                await kernel.dispose()  # release() later finds it disposed
                raise KernelDied(
                    "Kernel last terminated by signal SIGKILL "
                    f"(the cell ran past its {timeout:g} s limit and ignored interrupts)"
                )
            interrupts += 1
            log.info("cell over its %.1f s limit: interrupt %d", timeout, interrupts)
            await kernel.interrupt()
            deadline = time.monotonic() + _INTERRUPT_GAP
            continue
        message = await kernel.next_message(min(remaining, _POLL_SECONDS))
        if message is None:
            continue
        msg_type, content = message
        if msg_type == "execute_reply":
            if content.get("status") == "ok":  # it filters away, as in CoCalc
                collector.add(msg_type, content)
            return collector.items
        collector.add(msg_type, content)
