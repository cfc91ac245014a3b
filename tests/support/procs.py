"""Find processes by their command line, via /proc (no extra dependency)."""

from __future__ import annotations

import os
from pathlib import Path


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\x00", b" ").decode(errors="replace")


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (e.g. a server's data directory)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and text in cmdline(pid)]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_zygote(pid: int) -> bool:
    """A zygote; the kernels it forked share its command line, not its parent
    (which is the server, or the sandbox it runs in)."""
    if "zygote.py" not in cmdline(pid) or is_sandbox(pid):
        return False
    parent = _parent(pid)
    return "zygote.py" not in cmdline(parent) or is_sandbox(parent)


def is_sandbox(pid: int) -> bool:
    """bubblewrap itself (and its init in the new PID namespace), not what runs in it."""
    return cmdline(pid).split(" ", 1)[0].endswith("/bwrap")


def kernel_processes(data_dir: str | Path) -> list[int]:
    """Kernel processes of one server: their command lines name its data dir (the connection
    file ``kernel-*.json`` of an exec'd kernel, the label of a forked one, which shares its
    zygote's command line). The server, zygotes, the sandboxes around them, spawners and the
    commands they run are not kernels."""
    found = []
    for pid in processes_mentioning(str(data_dir)):
        line = cmdline(pid)
        if " serve " in line or is_zygote(pid) or is_sandbox(pid):
            continue
        if "/kernel-" in line or "zygote.py" in line:
            found.append(pid)
    return found


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as exited)."""
    import time

    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def all_gone(text: str, within: float = 5.0) -> bool:
    """True once no live process's command line contains ``text`` (a sandboxed job's pids are
    its own namespace's, so tests find its processes by a unique argument instead)."""
    import time

    deadline = time.monotonic() + within
    while True:
        if all(gone(pid, within=0) for pid in processes_mentioning(text)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
