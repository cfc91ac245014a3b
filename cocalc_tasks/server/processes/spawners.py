"""The server's side of ``spawner.py``: one spawner per project, inside its sandbox.

``bwrap`` costs about 5 ms per start; a spawner pays that once per project and forks each
command inside the sandbox it is already in (``make bench``, row 7). The command's stdout and
stderr are pipes the server made, passed over the socket, so output flows exactly as for a
command the server started itself. Pids are the sandbox's: signals go through the spawner, and
:meth:`Spawner.host_pid` finds a command's pid on the host for ``async_stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cocalc_tasks.server.processes.tree import descendants
from cocalc_tasks.server.sandbox import Area, Sandbox

__all__ = ["Spawner", "Spawners"]

log = logging.getLogger("cocalc_tasks.server.spawners")

_SCRIPT = Path(__file__).with_name("spawner.py")


class SpawnerError(RuntimeError):
    """The spawner could not start, or stopped answering."""


class Spawner:
    """One ``spawner.py`` process in one area's sandbox."""

    def __init__(self, sandbox: Sandbox, area: Area, script: Path) -> None:
        self.sandbox = sandbox
        self.area = area
        self.script = script
        self.process: subprocess.Popen[bytes] | None = None
        self.used = time.monotonic()
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._next = 0

    @property
    def alive(self) -> bool:
        return self._sock is not None and self.process is not None and self.process.poll() is None

    async def start(self, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, str(self.script), str(theirs.fileno())]
        try:
            self.process = subprocess.Popen(
                self.sandbox.wrap(argv, self.area, self.area.scratch),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                start_new_session=True,
                preexec_fn=self.sandbox.setup(self.area),  # its cgroup; its user inside
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_message)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except (TimeoutError, SpawnerError) as exc:
            await self.close()
            raise SpawnerError(f"the spawner did not start: {exc}") from None

    def _on_message(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        message = json.loads(data)
        if message.get("ready") and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif "exited" in message:
            self._exit(int(message["exited"])).set_result(int(message["code"]))
        elif (reply := self._replies.pop(int(message.get("id", -1)), None)) is not None:
            reply.set_result(message)

    def _exit(self, pid: int) -> asyncio.Future[int]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    def _lost(self) -> None:
        """The spawner ended: so did every command in its sandbox (its PID namespace)."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(SpawnerError("exited during start-up"))
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result({"errno": 5})
        for exit_code in self._exits.values():
            if not exit_code.done():
                exit_code.set_result(-9)

    async def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        limits: Sequence[tuple[int, int]],
    ) -> tuple[int, int, int]:
        """Start a command: ``(pid, stdout read fd, stderr read fd)``; ``OSError`` as exec's."""
        if not self.alive or self._sock is None:
            raise SpawnerError("the spawner is not running")
        self.used = time.monotonic()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        self._next += 1
        request_id = self._next
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        request = {
            "id": request_id,
            "argv": list(argv),
            "env": env,
            "cwd": str(cwd),
            "limits": [list(limit) for limit in limits],
        }
        try:
            socket.send_fds(self._sock, [json.dumps(request).encode()], [out_write, err_write])
        finally:
            os.close(out_write)
            os.close(err_write)
        try:
            answer = await asyncio.wait_for(reply, 10)
        except TimeoutError:
            self._replies.pop(request_id, None)
            raise SpawnerError("the spawner did not answer") from None
        if "pid" not in answer:
            os.close(out_read)
            os.close(err_read)
            errno = int(answer.get("errno", 5))
            raise OSError(errno, os.strerror(errno), argv[0])
        return int(answer["pid"]), out_read, err_read

    def exited(self, pid: int) -> asyncio.Future[int]:
        """Resolves to the command's exit code (as ``Popen.returncode``)."""
        return self._exit(pid)

    def signal(self, pid: int, signum: int) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.send(json.dumps({"signal": pid, "signum": signum}).encode())

    def host_pid(self, pid: int) -> int | None:
        """The host's pid of the sandbox's ``pid`` (a descendant whose ``NSpid`` ends in it)."""
        if self.process is None:
            return None

        for candidate in descendants(self.process.pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{candidate}/status").read_text()
                line = next(x for x in status.splitlines() if x.startswith("NSpid:"))
                if int(line.split()[-1]) == pid and len(line.split()) > 2:
                    return candidate
        return None

    async def close(self) -> None:
        """Stop the spawner; it kills what it still runs."""
        if self._sock is not None:
            self._lost()
        if self.process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.process.wait), 5)
            except TimeoutError:
                self.process.kill()


class Spawners:
    """The spawners of one server, one per area, started on first use."""

    def __init__(self, sandbox: Sandbox, idle_seconds: float) -> None:
        self.sandbox = sandbox
        self.idle_seconds = idle_seconds
        self._spawners: dict[str, Spawner] = {}
        self._failed: set[str] = set()
        self._lock = asyncio.Lock()
        self._script = sandbox.tools / _SCRIPT.name
        shutil.copyfile(_SCRIPT, self._script)

    async def for_area(self, area: Area) -> Spawner | None:
        """The area's spawner, or None (then commands start through bwrap one by one)."""
        async with self._lock:
            current = self._spawners.get(area.name)
            if current is not None and current.alive:
                return current
            if area.name in self._failed:
                return None
            spawner = Spawner(self.sandbox, area, self._script)
            try:
                await spawner.start()
            except (OSError, SpawnerError) as exc:
                log.warning("commands of %s start one sandbox each: %s", area.name, exc)
                self._failed.add(area.name)
                return None
            self._spawners[area.name] = spawner
            return spawner

    async def close_idle(self, busy: set[str]) -> None:
        now = time.monotonic()
        for name, spawner in list(self._spawners.items()):
            if name not in busy and now - spawner.used > self.idle_seconds:
                del self._spawners[name]
                await spawner.close()
                await asyncio.to_thread(self.sandbox.release, name)

    async def close(self) -> None:
        spawners, self._spawners = list(self._spawners.values()), {}
        await asyncio.gather(*(s.close() for s in spawners))
