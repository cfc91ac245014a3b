"""The bubblewrap sandbox: how a kernel, zygote, spawner or command is put into its area.

With ``--sandbox bwrap`` each of them runs in ``bwrap`` with:

- its area's user: a server running as root drops every process of a project to that
  project's own unprivileged uid (:mod:`~cocalc_tasks.server.sandbox.users`), and bwrap runs in
  a user namespace (``--unshare-user``, no nested ones: ``--disable-userns``);
- its area's network: with ``--project-network none`` (the default) a network namespace of its
  own, with nothing but its own loopback; ``host`` shares the host's;
- its area's caps: memory and processes for all of the area's processes together, in a cgroup
  (:mod:`~cocalc_tasks.server.sandbox.cgroups`), or ``RLIMIT_NPROC`` per uid where no cgroup can
  be written;
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cocalc_tasks.server.sandbox.areas import ANONYMOUS, Area
from cocalc_tasks.server.sandbox.caps import DEFAULT_POOL_CAPS, DEFAULT_PROJECT_CAPS, Caps
from cocalc_tasks.server.sandbox.cgroups import Cgroups
from cocalc_tasks.server.sandbox.child import child_setup
from cocalc_tasks.server.sandbox.users import DEFAULT_UID_RANGE, ProjectUsers

__all__ = ["Isolation", "Sandbox", "SandboxUnavailable", "kernel_prefixes"]

log = logging.getLogger("cocalc_tasks.server.sandbox")

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
_SYSTEM_PATHS = [Path(p) for p in _SYSTEM]

#: The network modes: ``none`` (a private loopback only) or ``host`` (the host's network).
NETWORK_MODES = ("none", "host")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here, and the server must not start without it."""


@dataclass(frozen=True)
class Isolation:
    """What each area gets besides its files: its user, its network and its caps."""

    uid_range: str = DEFAULT_UID_RANGE
    network: str = "none"
    #: Per project id: ``none`` or ``host``.
    network_for: Mapping[str, str] = field(default_factory=dict)
    caps: str = DEFAULT_PROJECT_CAPS
    #: Per project id: a caps text (``memory=2G processes=256``).
    caps_for: Mapping[str, str] = field(default_factory=dict)
    pool_caps: str = DEFAULT_POOL_CAPS
    #: Project keys or several API keys: then no sandbox is a start-up error, unless
    #: ``--sandbox none`` says so explicitly.
    multi_user: bool = False


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
        isolation: Isolation | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.projects_dir = projects_dir
        self.anonymous_home = anonymous_home
        self.isolation = isolation or Isolation()
        self.users = ProjectUsers(self.isolation.uid_range)
        self.tools = data_dir / "tools"
        self.tools.mkdir(parents=True, exist_ok=True)
        self._readonly = _unique([*_interpreter_prefixes(), *readonly])
        self._hidden = [p for p in hidden if p.exists()]
        self._areas: dict[str | None, Area] = {}
        self._owned = True  # areas made while probing get their owner
        self.bwrap = shutil.which("bwrap")
        self.cgroups: Cgroups | None = None
        self.mode = self._choose(mode)
        if not self.enabled:
            self._owned = False
            self._areas.clear()
            return
        cgroups = Cgroups()
        if cgroups.kind is not None:
            self.cgroups = cgroups
        else:
            log.warning(
                "no cgroup can be written here (%s): memory is capped per process only "
                "(--kernel-limits, --exec-limits)%s",
                cgroups.problem,
                ", and processes per project uid (RLIMIT_NPROC)"
                if self.users.switch
                else "; processes are not capped (the server is not root, so all projects "
                "share its uid)",
            )

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"

    # -- start-up --------------------------------------------------------------------------
    def _choose(self, mode: str) -> str:
        if mode == "none":
            return "none"
        problem = self._probe()
        if problem is None:
            return "bwrap"
        if mode == "bwrap":
            raise SandboxUnavailable(f"--sandbox bwrap: bubblewrap cannot run here: {problem}")
        if self.isolation.multi_user:
            raise SandboxUnavailable(
                "refusing to serve project keys (or several API keys) with projects "
                f"unisolated: bubblewrap cannot run here ({problem}). Install bubblewrap "
                "(Debian and Ubuntu: apt install bubblewrap), or pass --sandbox none to serve "
                "every key with access to every project and to the server's files"
            )
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
        setup = self.setup(probe, nproc=False)
        try:
            userns = [self.bwrap, "--unshare-user", "--ro-bind", "/", "/", "true"]
            if probe.owner is not None:  # as the pool's user, as the inner bwrap runs
                uid, gid = probe.owner.uid, probe.owner.gid
                drop = [self._setpriv(), f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
                userns = [*drop, "--", *userns]
            argv = [*self._prefix(probe, probe.scratch), sys.executable, "-c", "pass"]
        except SandboxUnavailable as exc:
            return str(exc)
        failed = _run(userns, setup)
        if failed is not None:
            return f"user namespaces are unavailable: {failed}{_userns_hint()}"
        return _run(argv, setup)

    # -- areas -----------------------------------------------------------------------------
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
        owner = self.users.owner(project_id) if self._owned else None
        area = Area(name, home, base / "s", base / "v", owner)
        for directory in (area.home, area.scratch, area.state):
            directory.mkdir(parents=True, exist_ok=True)
            if owner is not None and directory.stat().st_uid != owner.uid:
                owner.chown_tree(directory)
        self._areas[key] = area
        return area

    def network_for(self, area: Area) -> str:
        return self.isolation.network_for.get(area.name, self.isolation.network)

    def caps_for(self, area: Area) -> Caps:
        if not area.is_project:
            return Caps.parse(self.isolation.pool_caps)
        return Caps.parse(self.isolation.caps_for.get(area.name, self.isolation.caps))

    def setup(
        self,
        area: Area,
        rlimits: Sequence[tuple[int, int]] = (),
        *,
        ignore_sigint: bool = False,
        nproc: bool = True,
    ) -> Callable[[], None]:
        """The ``preexec_fn`` of a process that enters ``area``: its rlimits, and the area's
        cgroup (or process cap)."""
        caps = self.caps_for(area)
        cgroups = self.cgroups.join_files(area.name, caps) if self.cgroups is not None else []
        fallback = caps.processes if nproc and not cgroups and area.owner is not None else None
        return child_setup(rlimits, ignore_sigint=ignore_sigint, cgroups=cgroups, nproc=fallback)

    def oom_kills(self, area: Area) -> int:
        """How often the kernel killed a process of ``area`` for its memory cap."""
        return self.cgroups.oom_kills(area.name) if self.cgroups is not None else 0

    def release(self, name: str) -> bool:
        """The area ``name`` was reaped: remove its cgroup if nothing runs in it any more
        (False: something does, a running job say; a later reaping tries again)."""
        return self.cgroups.release(name) if self.cgroups is not None else True

    def close(self) -> None:
        """The server stops: kill what is left in the areas, remove their cgroups."""
        if self.cgroups is not None:
            self.cgroups.close()

    # -- the command line ------------------------------------------------------------------
    def wrap(self, argv: Sequence[str], area: Area, cwd: Path | str) -> list[str]:
        """``argv`` as run in ``area``'s sandbox (unchanged when the sandbox is off)."""
        if not self.enabled:
            return list(argv)
        return [*self._prefix(area, cwd), *argv]

    def _prefix(self, area: Area, cwd: Path | str) -> list[str]:
        assert self.bwrap is not None
        spaces = [self.bwrap, "--die-with-parent", "--unshare-user", "--disable-userns"]
        spaces += ["--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
        if self.network_for(area) == "none":
            spaces.append("--unshare-net")
        # jupyter_client names the server as the kernel's parent; inside, the parent is bwrap's
        # init (pid 1), which ipykernel's parent poller would take for "the parent died". Pid 1
        # turns the poller off (bwrap's --die-with-parent does its job) and keeps the kernel
        # from printing its connection banner.
        tail = ["--setenv", "JPY_PARENT_PID", "1", "--chdir", str(cwd), "--"]
        if area.owner is None:  # the server's own user: one bwrap does it all
            return [*spaces, *self._mounts(area, "--proc"), *tail]
        # As root: an outer bwrap builds the file system as root (it can reach the data
        # directory and the Python environments wherever they are, /root included), setpriv
        # drops to the area's user for good, and an inner bwrap, unprivileged, adds the user,
        # PID, IPC and network namespaces on top of that view.
        outer = [self.bwrap, "--die-with-parent", "--cap-drop", "ALL"]
        outer += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        # The host's /proc, whole: the inner bwrap may mount a new one only where a proc is
        # fully visible, and bwrap's own --proc (as root) covers parts of it.
        # (Without CAP_DAC_OVERRIDE the outer one cannot enter the area's own directories.)
        outer += [*self._mounts(area, "--bind"), "--chdir", "/", "--"]
        drop = [self._setpriv(), f"--reuid={area.owner.uid}", f"--regid={area.owner.gid}"]
        drop += ["--clear-groups", "--inh-caps=-all", "--"]
        inner = ["--bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        return [*outer, *drop, *spaces, *inner, *tail]

    def _setpriv(self) -> str:
        found = shutil.which("setpriv")
        if found is None:
            raise SandboxUnavailable("setpriv (util-linux) is not installed")
        return found

    def _mounts(self, area: Area, proc: str) -> list[str]:
        """The file system an area's processes see (``proc``: how /proc comes in)."""
        args: list[str] = []
        made: set[Path] = set()

        def way(target: Path) -> None:
            """The directories on the way to ``target``: searchable by the area's user (bwrap
            would make them 0700 as root), unless a system path brings them."""
            for parent in reversed(target.parents):
                if parent in made or str(parent) == "/" or _under_any(parent, _SYSTEM_PATHS):
                    continue
                made.add(parent)
                args.extend(["--perms", "0755", "--dir", str(parent)])

        for system in _SYSTEM:
            args += ["--ro-bind-try", system, system]
        # A private, empty /tmp inside the sandbox (not the host's); before the environments
        # below, which may live under /tmp (a checkout there, say).
        args += [proc, *(["/proc"] if proc != "--proc" else []), "/proc"]
        args += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
        made.add(Path("/tmp"))  # noqa: S108
        for readonly in self._readonly:
            way(readonly)
            args += ["--ro-bind-try", str(readonly), str(readonly)]
        # The data dir and the projects root are empty inside (whatever they sit under), apart
        # from this area's own directories; then they and the root turn read-only, so nothing
        # can be written outside the area (not even into the sandbox's own scaffolding).
        private = _unique_paths([self.data_dir, self.projects_dir])
        for path in private:
            way(path)
            args += ["--perms", "0755", "--tmpfs", str(path)]
            made.add(path)
        for hidden in self._hidden:
            if _under_any(hidden, [*_SYSTEM_PATHS, *self._readonly]):
                args += ["--ro-bind", "/dev/null", str(hidden)]
        way(self.tools)
        args += ["--ro-bind", str(self.tools), str(self.tools)]
        for own in (area.home, area.scratch, area.state):
            way(own)
            args += ["--bind", str(own), str(own)]
        for path in private:
            args += ["--remount-ro", str(path)]
        args += ["--remount-ro", "/"]
        return args


def _run(argv: Sequence[str], setup: Callable[[], None]) -> str | None:
    """None when ``argv`` succeeds; else the last line it printed, or why it did not run."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
            preexec_fn=setup,  # system calls only (sandbox/child.py)
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def _userns_hint() -> str:
    """What keeps user namespaces off, from the sysctls that do."""
    for path, off, fix in (
        ("/proc/sys/user/max_user_namespaces", "0", "sysctl user.max_user_namespaces=15000"),
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0",
            "sysctl kernel.unprivileged_userns_clone=1",
        ),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "an AppArmor profile for bwrap, or sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value == off:
            return f" ({path} is {off}; fix: {fix})"
    return ""


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
