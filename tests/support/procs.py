"""Find processes by their command line, via /proc (no extra dependency)."""

from __future__ import annotations

import os
from pathlib import Path


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\x00", b" ").decode(errors="replace")


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (e.g. a server's data directory)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and text in _cmdline(pid)]


def kernel_processes(data_dir: str | Path) -> list[int]:
    """Kernel processes of one server: their connection files live under its data dir."""
    return [pid for pid in processes_mentioning(str(data_dir)) if " serve " not in _cmdline(pid)]
