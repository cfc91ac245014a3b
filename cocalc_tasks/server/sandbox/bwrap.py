"""The bubblewrap sandbox: how a kernel, zygote, spawner or command is put into its area.

With ``--sandbox bwrap`` each of them runs in ``bwrap`` with:

- system paths (``/usr``, ``/etc``, ``/lib``..., the Python environments of the kernels)
  mounted read-only;
- its area's three directories mounted read-write at their own paths, so files, IPC sockets
  and messages mean the same inside and out;
- nothing else of the server's data directory or the projects root (other projects, the
  result cache and job store, the server's config): not there at all;
- a private ``/tmp``, a new ``/proc`` and PID namespace (the server and other projects'
  processes are invisible and cannot be signalled), a new IPC namespace, and no capabilities.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from cocalc_tasks.server.sandbox.areas import ANONYMOUS, Area

__all__ = ["Sandbox", "SandboxUnavailable", "kernel_prefixes"]

log = logging.getLogger("cocalc_tasks.server.sandbox")

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")


class SandboxUnavailable(RuntimeError):
    """``--sandbox bwrap`` was asked for, and bubblewrap cannot run here."""


class Sandbox:
    """Where areas live, and how a command is put into one."""

    def __init__(
        self,
        mode: str,
        *,
        data_dir: Path,
        projects_dir: Path,
        anonymous_home: Path,
        readonly: Iterable[Path] = (),
        hidden: Iterable[Path] = (),
    ) -> None:
        self.data_dir = data_dir
        self.projects_dir = projects_dir
        self.anonymous_home = anonymous_home
        self.tools = data_dir / "tools"
        self.tools.mkdir(parents=True, exist_ok=True)
        self._readonly = _unique([*_interpreter_prefixes(), *readonly])
        self._hidden = [p for p in hidden if p.exists()]
        self._areas: dict[str | None, Area] = {}
        self.bwrap = shutil.which("bwrap")
        self.mode = self._choose(mode)

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"

    def _choose(self, mode: str) -> str:
        if mode == "none":
            return "none"
        problem = self._probe()
        if problem is None:
            return "bwrap"
        if mode == "bwrap":
            raise SandboxUnavailable(f"--sandbox bwrap: bubblewrap cannot run here: {problem}")
        log.warning(
            "projects are NOT isolated: bubblewrap cannot run here (%s); every kernel and "
            "command can read and write all projects and the server's data directory. Install "
            "Debian's bubblewrap package, or pass --sandbox none to silence this warning",
            problem,
        )
        return "none"

    def _probe(self) -> str | None:
        if self.bwrap is None:
            return "bwrap is not installed"
        probe = self.area(None)
        try:
            done = subprocess.run(
                [*self._prefix(probe, probe.scratch), "true"],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        return None

    def area(self, project_id: str | None) -> Area:
        """The area of a project (or of the global pool), its directories created once."""
        key = project_id.lower() if project_id is not None else None
        if (known := self._areas.get(key)) is not None:
            return known
        if project_id is None:
            name, home, short = ANONYMOUS, self.anonymous_home, "anon"
        else:
            name, home = project_id.lower(), self.projects_dir / project_id.lower()
            short = hashlib.sha256(name.encode()).hexdigest()[:12]
        # Short names: kernels' IPC sockets live in scratch, and a socket path has 107 bytes.
        base = self.data_dir / "p" / short
        area = Area(name, home, base / "s", base / "v")
        for directory in (area.home, area.scratch, area.state):
            directory.mkdir(parents=True, exist_ok=True)
        self._areas[key] = area
        return area

    def wrap(self, argv: Sequence[str], area: Area, cwd: Path | str) -> list[str]:
        """``argv`` as run in ``area``'s sandbox (unchanged when the sandbox is off)."""
        if not self.enabled:
            return list(argv)
        return [*self._prefix(area, cwd), *argv]

    def _prefix(self, area: Area, cwd: Path | str) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
        args += ["--cap-drop", "ALL"]
        for system in _SYSTEM:
            args += ["--ro-bind-try", system, system]
        # A private, empty /tmp inside the sandbox (not the host's); before the environments
        # below, which may live under /tmp (a checkout there, say).
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
        for readonly in self._readonly:
            args += ["--ro-bind-try", str(readonly), str(readonly)]
        # The data dir and the projects root are empty inside (whatever they sit under), apart
        # from this area's own directories; then they and the root turn read-only, so nothing
        # can be written outside the area (not even into the sandbox's own scaffolding).
        private = _unique_paths([self.data_dir, self.projects_dir])
        for path in private:
            args += ["--tmpfs", str(path)]
        for hidden in self._hidden:
            if _under_any(hidden, [*map(Path, _SYSTEM), *self._readonly]):
                args += ["--ro-bind", "/dev/null", str(hidden)]
        args += ["--ro-bind", str(self.tools), str(self.tools)]
        for own in (area.home, area.scratch, area.state):
            args += ["--bind", str(own), str(own)]
        for path in private:
            args += ["--remount-ro", str(path)]
        args += ["--remount-ro", "/"]
        # jupyter_client names the server as the kernel's parent; inside, the parent is bwrap's
        # init (pid 1), which ipykernel's parent poller would take for "the parent died". Pid 1
        # turns the poller off (bwrap's --die-with-parent does its job) and keeps the kernel
        # from printing its connection banner.
        args += ["--setenv", "JPY_PARENT_PID", "1", "--chdir", str(cwd), "--"]
        return args


def _interpreter_prefixes() -> list[Path]:
    """The server's Python installation and environment (kernels and commands use them)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(p for p in paths if str(p) != "/")


def kernel_prefixes(argvs: Iterable[Sequence[str]]) -> list[Path]:
    """The installations the kernelspecs' programs live in (e.g. another venv for Sage)."""
    found: set[Path] = set()
    for argv in argvs:
        if not argv or not os.path.isabs(argv[0]):
            continue
        for program in (Path(argv[0]), Path(os.path.realpath(argv[0]))):
            if program.parent.name == "bin" and str(program.parent.parent) != "/":
                found.add(program.parent.parent)
    return sorted(found)


def _under_any(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _unique_paths(paths: Iterable[Path]) -> list[Path]:
    """Without duplicates, and without paths inside another one of the list."""
    ordered = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not _under_any(path, kept):
            kept.append(path)
    return kept


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path.exists() and path not in seen:
            seen.append(path)
    return seen
