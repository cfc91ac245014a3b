"""Where one execute call spends its time: wall and CPU per phase, for ``/metrics``.

A :class:`PhaseClock` is started when a call arrives and ``lap``-ed at each boundary: the
request's parsing and checks, the cache lookup, the quota check, taking a kernel, running the
cell and collecting its outputs, releasing the kernel, and the store writes. CPU is this
thread's (the event loop's) CPU time, so it is exact for one call at a time and shared out
among overlapping calls under load; the kernels' own CPU is in their processes, not here.
"""

from __future__ import annotations

import time

__all__ = ["PHASES", "PhaseClock"]

#: The phases, in the order a computed call goes through them.
PHASES = (
    "checks",
    "cache_lookup",
    "quota",
    "kernel_take",
    "execute",
    "release",
    "store_writes",
)


class PhaseClock:
    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to ``phase``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        self.wall[phase] = self.wall.get(phase, 0.0) + wall - self._wall
        self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu - self._cpu
        self._wall, self._cpu = wall, cpu
