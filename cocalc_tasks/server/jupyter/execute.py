"""Run code on one kernel: send ``execute_request``, collect IOPub until idle, enforce limits.

Collection waits for the ``status: idle`` message whose parent is our request, so no output is
lost, and only messages with that parent are kept. On a per-cell timeout the kernel is
interrupted up to three times about a second apart, then killed (docs/cocalc-api.md §8).
"""

from __future__ import annotations

import json
import logging
import queue
import time
from typing import Any

from cocalc_tasks.server.jupyter.kernel import WarmKernel
from cocalc_tasks.server.jupyter.outputs import OutputCollector

__all__ = ["KernelDied", "chdir_code", "run_cell"]

log = logging.getLogger("cocalc_tasks.server.jupyter.execute")

_POLL_SECONDS = 0.5
_INTERRUPTS = 3
_INTERRUPT_GAP = 1.0


class KernelDied(RuntimeError):
    """The kernel died or had to be killed; the message is CoCalc's ``Kernel last ...`` text."""


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
    kernel: WarmKernel,
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
    client = kernel.client
    msg_id = client.execute(code, store_history=record, allow_stdin=False, stop_on_error=False)
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
            await kernel.manager.interrupt_kernel()
            deadline = time.monotonic() + _INTERRUPT_GAP
            continue
        try:
            msg = await client.get_iopub_msg(timeout=min(remaining, _POLL_SECONDS))
        except queue.Empty:  # nothing yet: check that the kernel still lives
            died = await kernel.exit_description()
            if died is not None:
                raise KernelDied(died) from None
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        msg_type = msg["header"]["msg_type"]
        content = msg.get("content", {})
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                break
            continue
        collector.add(msg_type, dict(content))
    await _collect_reply(kernel, msg_id, collector)
    return collector.items


async def _collect_reply(kernel: WarmKernel, msg_id: str, collector: OutputCollector) -> None:
    """Append the shell reply if its status is ok (it filters away, as in CoCalc)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            reply = await kernel.client.get_shell_msg(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue  # bash_kernel sends extra kernel_info replies
        content = reply.get("content", {})
        if content.get("status") == "ok":
            collector.add(reply["header"]["msg_type"], dict(content))
        return
