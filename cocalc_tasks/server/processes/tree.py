"""The host's process tree, read from ``/proc``: which pids are below a given pid.

Job samplers (``exec/commands.py``) and the spawners (``spawners.py``) both ask it, so
it lives below both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["descendants"]


class _ProcessTable:
    """Who is whose child, read from ``/proc`` at most once per ``ttl`` seconds and shared by
    every job's sampler (jobs sample on whole seconds, so one read serves them all)."""

    def __init__(self, ttl: float = 0.5) -> None:
        self.ttl = ttl
        self._read_at = -1.0
        self._children: dict[int, list[int]] = {}

    def descendants(self, pid: int) -> list[int]:
        now = time.monotonic()
        if now - self._read_at > self.ttl:
            self._children = _children_map()
            self._read_at = now
        found: list[int] = []
        queue = [pid]
        while queue:
            for child in self._children.get(queue.pop(), ()):
                found.append(child)
                queue.append(child)
        return found


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


_TABLE = _ProcessTable()


def descendants(pid: int) -> list[int]:
    """The host pids below ``pid`` (from a process table at most half a second old)."""
    return _TABLE.descendants(pid)
