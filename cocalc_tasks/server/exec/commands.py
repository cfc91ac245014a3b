"""Run one shell command the way CoCalc's exec engine does, and watch it.

- Bash mode (asked for, or automatic: no ``args`` and whitespace in ``command``) writes the
  script to ``<tmp>/cocalc-XXXXXX/a.sh``, preceded by ``ulimit -t <ceil(timeout)>``, and runs
  ``bash`` on it; ``bash`` with ``args`` shell-quotes them into the command line.
- Every command leads its own process group (its own session) with stdin from ``/dev/null``.
  On timeout or cancel the whole group gets SIGKILL, so background children die too.
- stdout and stderr are decoded incrementally (a character split across reads stays whole)
  and each is kept up to ``max_output`` characters; the rest is read and dropped, so a flood
  neither blocks the command nor fills the server's memory.
- CPU and memory of the process tree are sampled with psutil on CoCalc's schedule (after
  about 1 s, then every ``min(max(1, elapsed/6), 60)`` s, the newest 100 kept).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cocalc_tasks.server.processes.spawners import Spawner
from cocalc_tasks.server.processes.tree import descendants
from cocalc_tasks.server.sandbox.users import Owner

__all__ = ["CommandSpec", "RunningCommand", "build_spec", "truncation_marker"]

log = logging.getLogger("cocalc_tasks.server.exec.commands")

_READ_CHUNK = 65536
_STATS_MAX = 100


def truncation_marker(limit: int) -> str:
    return f" (truncated at {limit} characters)"


@dataclass(frozen=True)
class CommandSpec:
    """What to spawn, resolved from a request."""

    argv: list[str]
    cwd: Path
    env: Mapping[str, str]
    #: Seconds; 0 means no limit.
    timeout: float
    max_output: int | None
    #: The original command, as CoCalc quotes it in "exited with nonzero code" messages.
    described: str
    #: The command after the bash rewrite, as CoCalc quotes it in "killed command".
    spawned: str
    script_dir: Path | None = None
    #: What is really run: ``argv`` inside a sandbox (None: ``argv`` itself).
    launch: list[str] | None = None
    #: Runs in the child before ``exec`` (limits).
    preexec: Callable[[], None] | None = None


def build_spec(
    command: str,
    args: Sequence[str],
    *,
    bash: bool,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    max_output: int | None,
    tmp_root: str | None = None,
    owner: Owner | None = None,
) -> CommandSpec:
    """Apply CoCalc's bash rules and write the script file (``owner``'s) when there is one."""
    bash = bash or (not args and any(c.isspace() for c in command))
    if bash and args:
        command = shlex.join([command, *args])
        args = ()
    if not bash:
        described = f"'{command}' (args={' '.join(args)})"
        argv = [command, *args]
        return CommandSpec(
            argv, cwd, env, timeout, max_output, described, " ".join(argv), script_dir=None
        )
    script_dir = Path(tempfile.mkdtemp(prefix="cocalc-", dir=tmp_root))
    script = script_dir / "a.sh"
    prefix = f"ulimit -t {math.ceil(timeout)}\n" if timeout else ""
    script.write_text(prefix + command, encoding="utf-8")
    script.chmod(0o700)
    if owner is not None:  # the area's user runs it
        owner.chown_tree(script_dir)
    argv = ["bash", str(script)]
    return CommandSpec(
        argv, cwd, env, timeout, max_output, command, " ".join(argv), script_dir=script_dir
    )


class _Stream:
    """One output stream: decoded incrementally, kept up to ``limit`` characters."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self.length = 0
        self.dropped = False

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        if not text:
            return
        if self.limit is not None:
            room = self.limit - self.length
            if room <= 0:
                self.dropped = True
                return
            if len(text) > room:
                text = text[:room]
                self.dropped = True
        self._parts.append(text)
        self.length += len(text)

    def note(self, text: str) -> None:
        """Add the server's own line (past the limit too: it says why the output ends)."""
        self._parts.append(text)
        self.length += len(text)

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def final_text(self) -> str:
        """The text with CoCalc's marker when the limit was reached (even exactly)."""
        if self.limit is not None and self.length >= self.limit:
            return self.text + truncation_marker(self.limit)
        return self.text


class _PipeReader(asyncio.Protocol):
    """Feeds one of the command's pipes into its :class:`_Stream`."""

    def __init__(
        self, stream: _Stream, notify: Callable[[], None], closed: asyncio.Future[None]
    ) -> None:
        self.stream = stream
        self.notify = notify
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        before = self.stream.length
        self.stream.feed(data)
        if self.stream.length != before:
            self.notify()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _missing_program(program: str, cwd: Path, path: str) -> OSError | None:
    """The error ``exec`` would give for ``program``, or None when it can be run."""
    if "/" in program:
        target = cwd / program
        if not target.exists():
            return FileNotFoundError(2, "No such file or directory", program)
        return None if os.access(target, os.X_OK) else PermissionError(13, "Permission denied")
    if shutil.which(program, path=path) is None:
        return FileNotFoundError(2, "No such file or directory", program)
    return None


def _exit_future(
    loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    """Resolves when the process exits: a pidfd on the loop (Linux 5.3+), else a thread."""
    future: asyncio.Future[None] = loop.create_future()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        waiting = loop.run_in_executor(None, popen.wait)

        def waited(_: object) -> None:
            if not future.done():
                future.set_result(None)

        waiting.add_done_callback(waited)
        return future

    def exited() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(pidfd, exited)
    return future


@dataclass
class RunningCommand:
    """A spawned command: its output so far, its end, and how it ended."""

    spec: CommandSpec
    #: Called (with no arguments) whenever new output was kept; for persistence.
    on_output: Callable[[], None] | None = None
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    pid: int | None = None
    exit_code: int | None = None
    #: None, "timeout" or "cancel".
    killed: str | None = None
    spawn_error: dict[str, Any] | None = None
    elapsed_s: float | None = None
    stats: list[dict[str, float]] = field(default_factory=list)
    #: Starts the command inside its project's sandbox (None: Popen here).
    spawner: Spawner | None = None
    #: The rlimits a spawner sets (Popen's children get them from ``spec.preexec``).
    limits: Sequence[tuple[int, int]] = ()

    def __post_init__(self) -> None:
        self.stdout = _Stream(self.spec.max_output)
        self.stderr = _Stream(self.spec.max_output)
        self.done = asyncio.Event()
        self._popen: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Future[Any] | None = None
        self._code: asyncio.Future[int] | None = None
        self._pipes: list[tuple[asyncio.ReadTransport, _PipeReader]] = []
        self._started = time.monotonic()

    async def start(self) -> None:
        """Spawn the command; afterwards ``pid`` is set, or ``spawn_error`` and ``done``.

        ``subprocess.Popen`` plus a pidfd and two read pipes on the event loop: no helper
        thread per child, and about half the cost of ``asyncio.create_subprocess_exec`` under
        uvloop (``make bench``)."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        if self.spawner is not None:
            await self._start_in_sandbox(loop)
            return
        if spec.launch is not None and spec.script_dir is None:
            # Behind a sandbox launcher a missing program would be the launcher's failure:
            # report it as CoCalc does, from a spawn error.
            missing = _missing_program(spec.argv[0], spec.cwd, spec.env.get("PATH", ""))
            if missing is not None:
                self._spawn_failed(missing)
                self._finish()
                return
        try:
            popen = subprocess.Popen(
                spec.launch or spec.argv,
                cwd=str(spec.cwd),
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=spec.preexec,  # only setrlimit runs there (sandbox.child_setup)
            )
        except OSError as exc:
            self._spawn_failed(exc)
            self._finish()
            return
        self._popen = popen
        self.pid = popen.pid
        self._exited = _exit_future(loop, popen)
        for pipe, stream in ((popen.stdout, self.stdout), (popen.stderr, self.stderr)):
            assert pipe is not None
            reader = _PipeReader(stream, self._notify, loop.create_future())
            transport, _ = await loop.connect_read_pipe(lambda r=reader: r, pipe)  # type: ignore[misc]
            self._pipes.append((transport, reader))

    async def _start_in_sandbox(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.spawner is not None
        spec = self.spec
        try:
            pid, out, err = await self.spawner.spawn(
                spec.argv, dict(spec.env), spec.cwd, self.limits
            )
        except OSError as exc:
            self._spawn_failed(exc)
            self._finish()
            return
        self.pid = pid
        self._code = self.spawner.exited(pid)
        self._exited = self._code
        for fd, stream in ((out, self.stdout), (err, self.stderr)):
            reader = _PipeReader(stream, self._notify, loop.create_future())
            pipe = os.fdopen(fd, "rb", buffering=0)
            transport, _ = await loop.connect_read_pipe(lambda r=reader: r, pipe)  # type: ignore[misc]
            self._pipes.append((transport, reader))

    async def finish(self) -> None:
        """Collect output until the command ends (or its timeout kills it); never raises
        for the command's own failures."""
        popen, exited = self._popen, self._exited
        if exited is None:
            return
        spec = self.spec
        sampler = asyncio.ensure_future(self._sample())
        # As Node's 'close' event: the command ends when it has exited *and* its pipes are
        # closed (a background child holding them keeps it running).
        waiters = [exited, *(reader.closed for _, reader in self._pipes)]
        try:
            _, pending = await asyncio.wait(waiters, timeout=spec.timeout or None)
            if pending:
                self.killed = self.killed or "timeout"
                self.kill_group()
                await asyncio.wait([exited], timeout=5)
        finally:
            for transport, _ in self._pipes:
                transport.close()  # a process that left the group may still hold a pipe
            sampler.cancel()
            with contextlib.suppress(BaseException):
                await sampler
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=1)
                code = popen.returncode
            else:
                code = self._code.result() if self._code is not None and self._code.done() else None
            # Node reports a signalled process as exit code null, which CoCalc turns into 0.
            self.exit_code = code if code is not None and code >= 0 else 0
            self.stdout.feed(b"", final=True)
            self.stderr.feed(b"", final=True)
            self._finish()

    def _notify(self) -> None:
        if self.on_output is not None:
            self.on_output()

    def _finish(self) -> None:
        self.elapsed_s = round(time.monotonic() - self._started, 3)
        if self.spec.script_dir is not None:
            shutil.rmtree(self.spec.script_dir, ignore_errors=True)
        self.done.set()

    def _spawn_failed(self, exc: OSError) -> None:
        program = self.spec.argv[0]
        code = {2: "ENOENT", 13: "EACCES", 20: "ENOTDIR"}.get(exc.errno or 0, "EIO")
        self.spawn_error = {
            "errno": -(exc.errno or 5),
            "code": code,
            "syscall": f"spawn {program}",
            "path": program,
            "spawnargs": self.spec.argv[1:],
        }
        self.exit_code = 1
        self.stderr.feed(json.dumps(self.spawn_error, separators=(",", ":")).encode())

    def kill_group(self) -> None:
        """SIGKILL the command's whole process group (it is the group leader)."""
        if self.pid is None:
            return
        if self.spawner is not None:  # the pid is the sandbox's
            self.spawner.signal(self.pid, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def cancel(self) -> None:
        self.killed = "cancel"
        self.kill_group()

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    async def _sample(self) -> None:
        """CoCalc's ``async_stats`` samples of the process tree."""
        if self.pid is None:
            return
        await asyncio.sleep(1.0)
        # A command started in a sandbox has the sandbox's pid: find it on the host.
        host = self.pid if self.spawner is None else self.spawner.host_pid(self.pid)
        try:
            root = psutil.Process(host) if host is not None else None
        except psutil.Error:
            return
        if root is None:
            return
        last: tuple[float, float] | None = None
        while True:
            if not root.is_running():
                return
            procs = [root]
            for child in descendants(root.pid):
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(child))
            rss = cpu = 0.0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system
            now = time.monotonic()
            pct = 0.0 if last is None else 100.0 * (cpu - last[1]) / max(1e-6, now - last[0])
            last = (now, cpu)
            self.stats.append(
                {
                    "timestamp": int(time.time() * 1000),
                    "mem_rss": round(rss / 1048576, 2),
                    "cpu_pct": round(max(0.0, pct), 1),
                    "cpu_secs": round(cpu, 2),
                }
            )
            del self.stats[:-_STATS_MAX]
            elapsed = now - self._started
            interval = min(max(1, math.floor(elapsed / 6)), 60)
            # Wake on a whole second, with every other job, to share one process table read.
            await asyncio.sleep(interval - time.time() % 1)
