"""One cgroup per area, so that a project's caps hold for all of its processes together.

The server makes ``cocalc-tasks-<its pid>`` inside its own cgroup (so whatever caps the
server itself also caps its projects), and one child per area in it. A process joins its
area's cgroup between ``fork`` and ``exec`` (:meth:`Cgroups.join_files`), before it drops to
the area's user, so every kernel, zygote, spawner and command a project starts is counted, and
so is everything they fork.

- cgroup v1: the ``memory`` and ``pids`` hierarchies (``memory.limit_in_bytes``, ``pids.max``);
- cgroup v2: ``memory.max`` and ``pids.max``. The server's own cgroup must be able to hand
  both controllers down: it moves itself into a leaf first (the "no internal processes" rule),
  which works when the server has its cgroup to itself (a systemd unit with ``Delegate=yes``).

Where neither can be written, :attr:`Cgroups.problem` says why, and the sandbox falls back to
``RLIMIT_NPROC`` per uid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from cocalc_tasks.server.sandbox.caps import Caps

__all__ = ["Cgroups"]

log = logging.getLogger("cocalc_tasks.server.sandbox")

ROOT = Path("/sys/fs/cgroup")
_PREFIX = "cocalc-tasks-"


class Cgroups:
    """This server's area cgroups."""

    def __init__(self, root: Path = ROOT, *, pid: int | None = None) -> None:
        self.root = root
        self.pid = os.getpid() if pid is None else pid
        #: ``"v1"``, ``"v2"``, or None (then :attr:`problem` says why).
        self.kind: str | None = None
        self.problem: str | None = None
        #: The server's directory in each hierarchy (one for v2; memory and pids for v1).
        self.bases: list[Path] = []
        self._made: set[str] = set()
        try:
            self._setup()
        except OSError as exc:
            self.problem = f"{exc.filename or 'cgroup'}: {exc.strerror}"
            self.kind, self.bases = None, []

    # -- set-up ----------------------------------------------------------------------------
    def _setup(self) -> None:
        own = _own_cgroups()
        controllers = self.root / "cgroup.controllers"
        if controllers.exists() and {"memory", "pids"} <= set(controllers.read_text().split()):
            self.kind, self.bases = "v2", [self._v2_base(own.get("", "/"))]
        elif (self.root / "memory").is_dir() and (self.root / "pids").is_dir():
            self.kind = "v1"
            self.bases = [
                self._base(self.root / name / own.get(name, "/").lstrip("/"))
                for name in ("memory", "pids")
            ]
        else:
            self.problem = f"no cgroup v2 with memory and pids, nor v1 hierarchies, at {self.root}"

    def _base(self, own: Path) -> Path:
        _remove_stale(own)
        base = own / f"{_PREFIX}{self.pid}"
        base.mkdir(exist_ok=True)
        return base

    def _v2_base(self, own_path: str) -> Path:
        own = self.root / own_path.lstrip("/")
        if "memory" not in (own / "cgroup.controllers").read_text().split():
            raise OSError(0, "memory and pids are not delegated to the server's cgroup", str(own))
        leaf = own / f"{_PREFIX}server-{self.pid}"
        leaf.mkdir(exist_ok=True)
        for pid in (own / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # e.g. it exited meanwhile
                (leaf / "cgroup.procs").write_text(pid)
        (own / "cgroup.subtree_control").write_text("+memory +pids")
        base = self._base(own)
        (base / "cgroup.subtree_control").write_text("+memory +pids")
        return base

    # -- areas -----------------------------------------------------------------------------
    def join_files(self, area: str, caps: Caps) -> list[str]:
        """The ``cgroup.procs`` files a process of ``area`` writes its pid to (made, with
        ``caps`` set, on first use)."""
        if self.kind is None:
            return []
        dirs = [base / area for base in self.bases]
        if area not in self._made:
            for directory in dirs:
                directory.mkdir(exist_ok=True)
            self._set(dirs, caps)
            self._made.add(area)
        return [str(d / "cgroup.procs") for d in dirs]

    def _set(self, dirs: list[Path], caps: Caps) -> None:
        memory = str(caps.memory) if caps.memory is not None else None
        processes = str(caps.processes) if caps.processes is not None else None
        if self.kind == "v2":
            _write(dirs[0] / "memory.max", memory or "max")
            _write(dirs[0] / "memory.swap.max", "0" if memory else "max", optional=True)
            _write(dirs[0] / "pids.max", processes or "max")
            return
        mem, pids = dirs
        _write(mem / "memory.limit_in_bytes", memory or "-1")
        # With swap accounting, swap is no way around the cap.
        _write(mem / "memory.memsw.limit_in_bytes", memory or "-1", optional=True)
        _write(pids / "pids.max", processes or "max")

    def oom_kills(self, area: str) -> int:
        """How many of the area's processes the kernel killed for its memory cap so far."""
        if self.kind is None:
            return 0
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        try:
            text = (self.bases[0] / area / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def processes(self, area: str) -> list[int]:
        found: set[int] = set()
        for base in self.bases:
            with contextlib.suppress(OSError):
                found.update(map(int, (base / area / "cgroup.procs").read_text().split()))
        return sorted(found)

    def release(self, area: str, *, kill: bool = False, wait: float = 2.0) -> bool:
        """Remove the area's cgroup once its processes are gone (``kill``: kill them first).
        False when processes are left (a running job, say): the cgroup stays."""
        if area not in self._made:
            return True
        dirs = [base / area for base in self.bases]
        if not _empty(dirs, kill=kill, wait=wait):
            return False
        for directory in dirs:
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()
        self._made.discard(area)
        return True

    def close(self) -> None:
        """Kill what is left in every area, and remove all of this server's cgroups."""
        for area in list(self._made):
            if not self.release(area, kill=True, wait=5.0):
                log.warning("cgroup of %s still has processes: %s", area, self.processes(area))
        for base in self.bases:
            with contextlib.suppress(OSError):
                base.rmdir()
        if self.kind == "v2" and self.bases:
            with contextlib.suppress(OSError):
                (self.bases[0].parent / f"{_PREFIX}server-{self.pid}").rmdir()


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and v2's under ``""``."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            found[name] = path
    return found


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    if optional and not path.exists():
        return
    path.write_text(value)


def _empty(dirs: Iterable[Path], *, kill: bool, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        pids: set[int] = set()
        for directory in dirs:
            with contextlib.suppress(OSError):
                pids.update(map(int, (directory / "cgroup.procs").read_text().split()))
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        if kill:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _remove_stale(own: Path) -> None:
    """Cgroups left by a server of ours that died without cleaning up (its pid is gone)."""
    for stale in own.glob(f"{_PREFIX}[0-9]*"):
        pid = int(stale.name.removeprefix(_PREFIX))
        if psutil.pid_exists(pid):
            continue
        areas = [d for d in stale.iterdir() if d.is_dir()]
        if _empty(areas, kill=True, wait=5.0):
            for directory in [*areas, stale]:
                with contextlib.suppress(OSError):
                    directory.rmdir()
