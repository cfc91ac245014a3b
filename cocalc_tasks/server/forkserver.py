"""Start kernels by forking a pre-imported template process (``zygote.py``) instead of ``exec``.

An IPython kernel spends about 0.3 s of CPU importing ipykernel and IPython before it can
answer. :class:`ForkServers` keeps one zygote per interpreter that has already done those
imports, and :class:`ForkingProvisioner` (a jupyter_client kernel provisioner) asks it for a
``fork`` whenever the kernelspec's command is ``python -m <module> ...`` for a module listed in
:data:`FORKABLE`. Everything else
(other modules, custom provisioners, a zygote that failed to start) is launched by
jupyter_client as usual. A forked kernel is the same program with the same argv, environment
and working directory; it is only started sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

__all__ = [
    "FORKABLE",
    "PROVISIONER_NAME",
    "ForkServers",
    "ForkedProcess",
    "ForkingKernelManager",
    "ForkingProvisioner",
    "Zygote",
]

log = logging.getLogger("cocalc_tasks.server.forkserver")

_ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")

_IPYKERNEL = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    # What a kernel imports next while it starts (about 0.1 s more); "?": may be missing.
    "?ipykernel.debugger",
    "?IPython.core.completerlib",
    "?IPython.core.debugger",
    "?IPython.core.oinspect",
    "?IPython.extensions.storemagic",
    "?sqlite3",
    "?psutil",
)

#: ``python -m`` modules that may be forked, and what their zygote imports up front. Only
#: kernels whose start-up is plain Python import work qualify: a library that starts threads
#: at import time (BLAS pools, as Sage's would) must not be forked, so Sage is not listed.
FORKABLE: dict[str, tuple[str, ...]] = {
    "ipykernel_launcher": _IPYKERNEL,
    "bash_kernel": (*_IPYKERNEL, "bash_kernel.kernel"),
}


class ZygoteError(RuntimeError):
    """The fork server could not start, or could not fork a kernel."""


class ForkedProcess:
    """The ``Popen`` subset that jupyter_client's ``LocalProvisioner`` uses, for a forked kernel.

    The kernel is the zygote's child, so its exit status comes from the zygote's reports. If
    the zygote itself is gone, liveness falls back to signal 0.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self._zygote = zygote
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """As ``Popen.wait``: block until the kernel ends, at most ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            time.sleep(0.01)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # as Popen: it may just have ended
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """One fork server process for one interpreter and set of pre-imported modules."""

    def __init__(
        self, python: str, modules: Sequence[str], env: dict[str, str], label: str = "zygote"
    ) -> None:
        self.python = python
        self.modules = tuple(modules)
        self.env = env
        self.label = label
        self.process: asyncio.subprocess.Process | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, int] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def start(self, timeout: float) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.python,
            str(_ZYGOTE_SCRIPT),
            "--label",
            self.label,
            *self.modules,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,  # a terminal's Ctrl-C is the server's to handle, not ours
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            first = json.loads(line) if line else {"error": "exited during start-up"}
        except (TimeoutError, ValueError) as exc:
            first = {"error": f"no ready message ({type(exc).__name__})"}
        if not first.get("ready"):
            await self.close()
            raise ZygoteError(f"fork server for {self.python}: {first.get('error')}")
        self._reader = asyncio.ensure_future(self._read())

    async def spawn(
        self, argv: Sequence[str], env: dict[str, str], cwd: str, timeout: float = 10.0
    ) -> ForkedProcess:
        """Fork a kernel. A zygote that does not answer within ``timeout`` is stopped (the
        next start replaces it) and :class:`ZygoteError` tells the caller to exec instead."""
        if not self.alive:
            raise ZygoteError("fork server is not running")
        assert self.process is not None and self.process.stdin is not None
        async with self._lock:
            self._next_id += 1
            request_id = self._next_id
            reply = asyncio.get_running_loop().create_future()
            self._replies[request_id] = reply
            request = {"id": request_id, "argv": list(argv), "env": env, "cwd": cwd}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            await self.process.stdin.drain()
        try:
            answer = await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            self._replies.pop(request_id, None)
            log.warning("fork server %s did not answer in %g s: stopping it", self.python, timeout)
            await self.close()
            raise ZygoteError(f"fork server did not answer within {timeout:g} s") from None
        if "pid" not in answer:
            raise ZygoteError(f"fork server: {answer.get('error', 'no pid')}")
        return ForkedProcess(int(answer["pid"]), self)

    def exit_code(self, pid: int) -> int | None:
        """The kernel's exit code once the zygote reported it; None while it runs."""
        if pid in self._exits:
            return self._exits.pop(pid)
        if self.alive:
            return None
        try:  # the zygote is gone: init reaps its kernels, so ask the OS directly
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        except PermissionError:
            pass
        return None

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:  # keep reading: one bad line must not strand every request
                log.warning("fork server %s wrote a malformed line: %r", self.python, line[:200])
                continue
            if "exited" in message:
                self._exits[int(message["exited"])] = int(message["code"])
            elif (future := self._replies.pop(int(message.get("id", -1)), None)) is not None:
                future.set_result(message)
        await self.process.wait()
        for future in self._replies.values():
            future.set_result({"error": "fork server exited"})
        self._replies.clear()

    async def close(self) -> None:
        """Stop the zygote; it kills any kernel it still has."""
        if self.process is None:
            return
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class ForkServers:
    """The zygotes of one server, started on first use.

    A zygote that fails to start is not tried again (its kernels are exec'd instead); one that
    crashes later is replaced on the next kernel start.
    """

    def __init__(
        self, env: dict[str, str], *, label: str = "zygote", start_timeout: float = 60.0
    ) -> None:
        self.env = env
        self.label = label
        self.start_timeout = start_timeout
        self._zygotes: dict[tuple[str, str], Zygote | None] = {}
        self._lock = asyncio.Lock()

    async def for_command(self, argv: Sequence[str]) -> Zygote | None:
        """The zygote that can fork ``argv``, or None to launch it the usual way."""
        if len(argv) < 3 or argv[1] != "-m" or argv[2] not in FORKABLE:
            return None
        key = (argv[0], argv[2])
        async with self._lock:
            current = self._zygotes.get(key)
            if current is not None and not current.alive:
                log.warning(
                    "fork server for %s exited (%s): starting a new one", key, current.returncode
                )
                del self._zygotes[key]
            if key not in self._zygotes:
                zygote = Zygote(argv[0], FORKABLE[argv[2]], self.env, self.label)
                try:
                    await zygote.start(self.start_timeout)
                except (OSError, ZygoteError) as exc:
                    log.warning("kernels of %s start without a fork server: %s", key, exc)
                    self._zygotes[key] = None
                else:
                    self._zygotes[key] = zygote
            found = self._zygotes[key]
        return found if found is not None and found.alive else None

    async def close(self) -> None:
        await asyncio.gather(*(z.close() for z in self._zygotes.values() if z is not None))
        self._zygotes.clear()


#: The name under which :class:`ForkingProvisioner` is registered (``pyproject.toml``).
PROVISIONER_NAME = "cocalc-tasks"


class ForkingProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the kernel forked by a zygote when one can.

    Registered under the ``jupyter_client.kernel_provisioners`` entry point as
    :data:`PROVISIONER_NAME`; the server's kernelspec manager names it in every spec that does
    not name a provisioner of its own. The zygotes come from the kernel manager
    (:class:`ForkingKernelManager`); without one, or when a fork fails, the kernel is launched
    exactly as ``LocalProvisioner`` launches it.
    """

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        servers: ForkServers | None = getattr(self.parent, "fork_servers", None)
        zygote = await servers.for_command(cmd) if servers is not None else None
        if zygote is None:
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = dict(kwargs.get("env") or os.environ)
        try:
            process = await zygote.spawn(cmd, env, cwd)
        except (OSError, ZygoteError) as exc:  # e.g. it died a moment ago: exec this one
            log.warning("fork failed (%s): starting the kernel without the fork server", exc)
            return await super().launch_kernel(cmd, **kwargs)
        # What LocalProvisioner.launch_kernel records for a Popen; the child is its own session.
        self.process = process  # type: ignore[assignment]  # the Popen subset it uses
        self.pid = self.pgid = process.pid
        self.cwd = cwd
        return self.connection_info


class ForkingKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` that carries the server's zygotes for its provisioner."""

    def __init__(self, fork_servers: ForkServers | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fork_servers = fork_servers


def fork_supported() -> bool:
    """Forking needs POSIX ``fork`` and ``setsid``."""
    return sys.platform != "win32" and hasattr(os, "fork")
