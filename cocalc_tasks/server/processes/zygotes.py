"""Start kernels by forking them from a zygote (``zygote.py``, a pre-imported process) instead
of ``exec``.

An IPython kernel spends about 0.3 s of CPU importing ipykernel and IPython before it can
answer. :class:`Zygotes` keeps one zygote per interpreter that has already done those
imports, and :class:`ForkingProvisioner` (a jupyter_client kernel provisioner) asks it for a
``fork`` whenever the kernelspec's command is ``python -m <module> ...`` for a module listed in
:data:`FORKABLE` (ipykernel, bash_kernel, and Sage's kernel, whose zygote imports ``sage.all``
with single-threaded BLAS and OpenMP: see ``--sage-threads``). Everything else
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
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from cocalc_tasks.server.sandbox import Area, Sandbox, child_setup

__all__ = [
    "FORKABLE",
    "FORK_ENV_SWITCH",
    "PREPARABLE",
    "PROVISIONER_NAME",
    "SAGE_KERNEL_MODULE",
    "SINGLE_THREADED",
    "ForkedProcess",
    "ForkingKernelManager",
    "ForkingProvisioner",
    "Zygote",
    "ZygoteError",
    "Zygotes",
    "app_arguments",
    "thread_env",
]

log = logging.getLogger("cocalc_tasks.server.processes.zygotes")

_ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
#: Loaded by the zygote to build a kernel once and serve calls from forks of it.
_PREPARED_SCRIPT = Path(__file__).with_name("prepared_kernel.py")

_IPYKERNEL = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    # What a kernel imports next while it starts (about 0.1 s more); "?": may be missing.
    "?ipykernel.debugger",
    "?IPython.core.completerlib",
    "?IPython.core.debugger",
    "?IPython.core.oinspect",
    "?IPython.core.logger",
    "?IPython.extensions.storemagic",
    "?sqlite3",
    "?psutil",
)

#: Sage's kernel: the IPython kernel plus ``sage.all`` and Sage's kernel class (about 1.7 s of
#: imports, paid once). Forkable only with single-threaded BLAS and OpenMP: their thread pools
#: start when the libraries load, and a fork copies no thread (see :data:`SINGLE_THREADED`).
_SAGE = (
    *_IPYKERNEL,
    "sage.all",
    "sage.repl.ipython_kernel.kernel",
    # What a Sage kernel imports next while it starts (measured: about 20 modules).
    "?sage.all_cmdline",
    "?sage.repl.interpreter",
    "?sage.repl.ipython_kernel.all_jupyter",
    "?sage.repl.ipython_kernel.interact",
    "?sage.repl.ipython_kernel.widgets",
    "?sage.repl.ipython_kernel.widgets_sagenb",
    "?sage.repl.display.formatter",
    "?sage.repl.interface_magic",
    "?sage.repl.rich_output.backend_ipython",
    "?sage.repl.user_globals",
    "?sage.features.pkg_systems",
    "?ipywidgets",
    "?tornado.platform.asyncio",
)
SAGE_KERNEL_MODULE = "sage.repl.ipython_kernel"

#: ``python -m`` modules that may be forked, and what their zygote imports up front. Only
#: kernels whose start-up leaves a single thread qualify (the zygote checks, and refuses).
FORKABLE: dict[str, tuple[str, ...]] = {
    "ipykernel_launcher": _IPYKERNEL,
    "bash_kernel": (*_IPYKERNEL, "bash_kernel.kernel"),
    SAGE_KERNEL_MODULE: _SAGE,
}

#: The environment that keeps BLAS (OpenBLAS, MKL) and OpenMP from starting thread pools.
SINGLE_THREADED = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: A kernelspec ``env`` entry that keeps its kernels from being forked (``"0"``).
FORK_ENV_SWITCH = "COCALC_TASKS_FORK"

#: ``python -m`` modules whose kernel a zygote can build once and fork ready to run
#: (``prepared_kernel.py``): IPython's kernel and Sage's, both ``IPKernelApp``.
PREPARABLE = frozenset({"ipykernel_launcher", SAGE_KERNEL_MODULE})


def app_arguments(argv: Sequence[str]) -> list[str]:
    """The kernel application's own arguments in a kernelspec's ``python -m module ...``
    command, without the connection file (a prepared kernel has none)."""
    rest = list(argv[3:])
    kept: list[str] = []
    while rest:
        arg = rest.pop(0)
        if arg in ("-f", "--f"):
            if rest:
                rest.pop(0)
            continue
        if arg.startswith(("-f=", "--f=")):
            continue
        kept.append(arg)
    return kept


def thread_env(module: str, sage_threads: int) -> dict[str, str]:
    """Variables a kernel of ``module`` gets for its BLAS and OpenMP threads: Sage's come
    from the ``sage_threads`` setting (0: the libraries' own default); others get none."""
    if module != SAGE_KERNEL_MODULE or sage_threads == 0:
        return {}
    return {name: str(sage_threads) for name in SINGLE_THREADED}


class ZygoteError(RuntimeError):
    """The zygote could not start, or could not fork a kernel."""


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
            if self._zygote.sandboxed:  # the pid is the sandbox's: only the zygote can use it
                self._zygote.signal(self.pid, signum)
                return
            with contextlib.suppress(ProcessLookupError):  # as Popen: it may just have ended
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the kernel's process group: it and whatever it started. Outside a sandbox
        this reaches what the kernel left running even after it ended; inside one the zygote
        signals only a kernel of its own still running (the rest ends with the sandbox)."""
        if self._zygote.sandboxed:  # the pid is the sandbox's: only the zygote can use it
            self._zygote.signal(self.pid, signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)  # the kernel called setsid: its pid is its group

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """One zygote process for one interpreter and set of pre-imported modules."""

    def __init__(
        self,
        python: str,
        modules: Sequence[str],
        env: dict[str, str],
        label: str = "zygote",
        *,
        wrap: Callable[[list[str]], list[str]] | None = None,
        preexec: Callable[[], None] | None = None,
        script: Path | None = None,
        prepare: tuple[str, list[str]] | None = None,
    ) -> None:
        self.python = python
        #: ``(module, application arguments)`` of the kernel to build in the zygote, if any.
        self.prepare = prepare
        #: Whether that worked: the zygote can then fork kernels ready to serve calls.
        self.prepared = False
        self.modules = tuple(modules)
        self.env = env
        self.label = label
        #: Puts the zygote's command into a sandbox (its kernels are forked inside it).
        self.wrap = wrap
        #: Enters the area's cgroup between fork and exec (sandbox/child.py).
        self.preexec = preexec
        self.script = script or _ZYGOTE_SCRIPT
        self.process: asyncio.subprocess.Process | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, int] = {}
        self._exit_waiters: dict[int, list[asyncio.Future[int]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def sandboxed(self) -> bool:
        """Inside a sandbox the kernels' pids are those of its PID namespace."""
        return self.wrap is not None

    def signal(self, pid: int, signum: int) -> None:
        """Ask the zygote to signal one of its kernels' process groups."""
        if self.alive and self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(json.dumps({"signal": pid, "signum": signum}).encode() + b"\n")

    async def start(self, timeout: float) -> None:
        argv = [self.python, str(self.script), "--label", self.label]
        if self.prepare is not None:
            argv += ["--prepare", self.prepare[0], json.dumps(self.prepare[1])]
        argv += self.modules
        if self.wrap is not None:
            argv = self.wrap(argv)
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,  # a terminal's Ctrl-C is the server's to handle, not ours
            preexec_fn=self.preexec,
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            first = json.loads(line) if line else {"error": "exited during start-up"}
        except (TimeoutError, ValueError) as exc:
            first = {"error": f"no ready message ({type(exc).__name__})"}
        if not first.get("ready"):
            await self.close()
            raise ZygoteError(f"zygote for {self.python}: {first.get('error')}")
        self.prepared = bool(first.get("prepared"))
        if self.prepare is not None and not self.prepared:
            log.warning(
                "zygote for %s cannot prepare %s kernels (%s): they start the usual way",
                self.python,
                self.prepare[0],
                first.get("why"),
            )
        self._reader = asyncio.ensure_future(self._read())

    async def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: str,
        timeout: float = 10.0,
        limits: Sequence[tuple[int, int]] = (),
        serve: dict[str, str] | None = None,
    ) -> ForkedProcess:
        """Fork a kernel; with ``serve`` (``{"address", "token"}``), a prepared one that
        connects there instead of running ``argv``. A zygote that does not answer within
        ``timeout`` is stopped (the next start replaces it) and :class:`ZygoteError` tells
        the caller to exec instead."""
        if not self.alive:
            raise ZygoteError("zygote is not running")
        assert self.process is not None and self.process.stdin is not None
        async with self._lock:
            self._next_id += 1
            request_id = self._next_id
            reply = asyncio.get_running_loop().create_future()
            self._replies[request_id] = reply
            request = {
                "id": request_id,
                "argv": list(argv),
                "env": env,
                "cwd": cwd,
                "limits": [list(limit) for limit in limits],
            }
            if serve is not None:
                request["serve"] = serve
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            await self.process.stdin.drain()
        try:
            answer = await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            self._replies.pop(request_id, None)
            log.warning("zygote %s did not answer in %g s: stopping it", self.python, timeout)
            await self.close()
            raise ZygoteError(f"zygote did not answer within {timeout:g} s") from None
        if "pid" not in answer:
            raise ZygoteError(f"zygote: {answer.get('error', 'no pid')}")
        return ForkedProcess(int(answer["pid"]), self)

    def exit_code(self, pid: int) -> int | None:
        """The kernel's exit code once the zygote reported it; None while it runs."""
        if pid in self._exits:
            return self._exits.pop(pid)
        if self.alive:
            return None
        if self.sandboxed:  # the sandbox ended with its zygote, and every kernel in it
            return -signal.SIGKILL
        try:  # the zygote is gone: init reaps its kernels, so ask the OS directly
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        except PermissionError:
            pass
        return None

    async def wait_exit(self, pid: int, timeout: float) -> int | None:
        """The exit code of a kernel of ours once it ended (None: still running after
        ``timeout`` s). Reads the zygote's report without polling."""
        if pid in self._exits or not self.alive:
            return self.exit_code(pid)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._exit_waiters.setdefault(pid, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._exit_waiters.get(pid)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._exit_waiters[pid]

    def forget(self, pid: int) -> None:
        """Drop a reaped kernel's exit code (its owner has read it)."""
        self._exits.pop(pid, None)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:  # keep reading: one bad line must not strand every request
                log.warning("zygote %s wrote a malformed line: %r", self.python, line[:200])
                continue
            if "exited" in message:
                pid, code = int(message["exited"]), int(message["code"])
                self._exits[pid] = code
                for waiter in self._exit_waiters.pop(pid, ()):
                    if not waiter.done():
                        waiter.set_result(code)
            elif (future := self._replies.pop(int(message.get("id", -1)), None)) is not None:
                future.set_result(message)
        await self.process.wait()
        for future in self._replies.values():
            future.set_result({"error": "zygote exited"})
        self._replies.clear()
        for waiters in self._exit_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(-signal.SIGKILL)
        self._exit_waiters.clear()

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


class Zygotes:
    """The zygotes of one server, started on first use: one per area (project) and interpreter
    when the sandbox is on (each runs inside its area's sandbox, and so do its kernels), one per
    interpreter otherwise.

    A zygote that fails to start is not tried again (its kernels are exec'd instead); one that
    crashes later is replaced on the next kernel start.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        label: str = "zygote",
        start_timeout: float = 60.0,
        sandbox: Sandbox | None = None,
        env_for: Callable[[Area], dict[str, str]] | None = None,
        sage_threads: int = 1,
        prepare: bool = True,
    ) -> None:
        self.env = env
        self.label = label
        #: Build IPython and Sage kernels in their zygotes (``prepared_kernel.py``).
        self.prepare = prepare
        #: BLAS/OpenMP threads of Sage kernels; only 1 lets them be forked.
        self.sage_threads = sage_threads
        self.start_timeout = start_timeout
        self.sandbox = sandbox
        self.env_for = env_for
        self._zygotes: dict[tuple[str, str, str], Zygote | None] = {}
        self._lock = asyncio.Lock()
        self._script = _ZYGOTE_SCRIPT
        if sandbox is not None and sandbox.enabled:
            # Sandboxes see the server's tools directory, not its source tree.
            self._script = sandbox.tools / _ZYGOTE_SCRIPT.name
            shutil.copyfile(_ZYGOTE_SCRIPT, self._script)
            shutil.copyfile(_PREPARED_SCRIPT, sandbox.tools / _PREPARED_SCRIPT.name)

    def forkable(self, argv: Sequence[str], env: dict[str, str] | None = None) -> bool:
        """Whether ``argv`` (with its kernelspec's ``env``) may be forked."""
        if len(argv) < 3 or argv[1] != "-m" or argv[2] not in FORKABLE:
            return False
        if env is not None and env.get(FORK_ENV_SWITCH) == "0":
            return False
        return argv[2] != SAGE_KERNEL_MODULE or self.sage_threads == 1

    def _new(self, argv: Sequence[str], area: Area | None) -> Zygote:
        modules = FORKABLE[argv[2]]
        threads = thread_env(argv[2], self.sage_threads)
        prepare = (argv[2], app_arguments(argv)) if self.prepare and argv[2] in PREPARABLE else None
        if area is None:
            return Zygote(argv[0], modules, {**self.env, **threads}, self.label, prepare=prepare)
        env = self.env_for(area) if self.env_for is not None else self.env
        env = {**env, **threads}
        label = str(area.scratch / "kernel-zygote")
        sandbox = self.sandbox
        if sandbox is None or not sandbox.enabled:
            return Zygote(argv[0], modules, env, label, prepare=prepare)
        return Zygote(
            argv[0],
            modules,
            env,
            label,
            wrap=lambda command: sandbox.wrap(command, area, area.scratch),
            preexec=sandbox.setup(area),
            script=self._script,
            prepare=prepare,
        )

    async def for_command(
        self, argv: Sequence[str], area: Area | None = None, env: dict[str, str] | None = None
    ) -> Zygote | None:
        """The zygote that can fork ``argv`` (in ``area``), or None to launch it the usual way."""
        if not self.forkable(argv, env):
            return None
        key = (area.name if area is not None else "", argv[0], argv[2])
        async with self._lock:
            current = self._zygotes.get(key)
            if current is not None and not current.alive:
                log.warning(
                    "zygote for %s exited (%s): starting a new one", key, current.returncode
                )
                del self._zygotes[key]
            if key not in self._zygotes:
                zygote = self._new(argv, area)
                try:
                    await zygote.start(self.start_timeout)
                except (OSError, ZygoteError) as exc:
                    log.warning("kernels of %s start without a zygote: %s", key, exc)
                    self._zygotes[key] = None
                else:
                    self._zygotes[key] = zygote
            found = self._zygotes[key]
        return found if found is not None and found.alive else None

    async def close_area(self, name: str) -> None:
        """Stop the zygotes of one area (an idle project); they kill their kernels."""
        keys = [key for key in self._zygotes if key[0] == name]
        zygotes = [self._zygotes.pop(key) for key in keys]
        await asyncio.gather(*(z.close() for z in zygotes if z is not None))

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
        servers: Zygotes | None = getattr(self.parent, "zygotes", None)
        area: Area | None = getattr(self.parent, "area", None)
        limits: Sequence[tuple[int, int]] = getattr(self.parent, "limits", ())
        if len(cmd) > 2 and cmd[1] == "-m":  # forked or not, Sage gets its thread setting
            threads = thread_env(cmd[2], getattr(self.parent, "sage_threads", 1))
            kwargs["env"] = {**(kwargs.get("env") or os.environ), **threads}
        env_in = kwargs.get("env")
        zygote = await servers.for_command(cmd, area, env_in) if servers is not None else None
        if zygote is not None and getattr(zygote, "prepared", False):
            # Its kernel is built already: a second one cannot start there (``IPKernelApp``
            # is a singleton). Kernels it cannot serve prepared, e.g. a spec of the same
            # interpreter and module with other options, are exec'd.
            zygote = None
        cwd = str(kwargs.get("cwd") or os.getcwd())
        if area is not None and area.owner is not None:  # the kernel reads them as its user
            area.owner.chown_tree(Path(cwd))
            connection_file = getattr(self.parent, "connection_file", None)
            if connection_file:
                area.owner.chown_tree(Path(connection_file))
        if zygote is not None:
            env = dict(kwargs.get("env") or os.environ)
            try:
                process = await zygote.spawn(cmd, env, cwd, limits=limits)
            except (OSError, ZygoteError) as exc:  # e.g. it died a moment ago: exec this one
                log.warning("fork failed (%s): starting the kernel without a zygote", exc)
            else:
                # What LocalProvisioner.launch_kernel records for a Popen; the child is its own
                # session. In a sandbox the pid is the sandbox's: signals go through the zygote.
                if isinstance(self.parent, ForkingKernelManager):
                    self.parent.forked = True
                self.process = process  # type: ignore[assignment]  # the Popen subset it uses
                self.pid = process.pid
                self.pgid = None if zygote.sandboxed else process.pid
                self.cwd = cwd
                return self.connection_info
        sandbox: Sandbox | None = getattr(self.parent, "sandbox", None)
        sandboxed = sandbox is not None and sandbox.enabled and area is not None
        if sandboxed:
            assert sandbox is not None and area is not None
            cmd = sandbox.wrap(cmd, area, cwd)
            # Inside the sandbox the kernel's parent is bwrap's init (pid 1), which ipykernel's
            # parent poller takes for "the parent died"; bwrap --die-with-parent does that job.
            kwargs["env"] = {
                k: v for k, v in (kwargs.get("env") or {}).items() if k != "JPY_PARENT_PID"
            }
        if sandboxed:
            assert sandbox is not None and area is not None
            kwargs["preexec_fn"] = sandbox.setup(area, limits, ignore_sigint=True)
            if isinstance(self.parent, ForkingKernelManager):
                self.parent.wrapped = True
        elif limits:
            kwargs["preexec_fn"] = child_setup(limits, ignore_sigint=False)
        return await super().launch_kernel(cmd, **kwargs)


class ForkingKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` that carries, for its provisioner, the server's zygotes, the
    area (project) the kernel belongs to, the sandbox, the kernel's rlimits, and the BLAS and
    OpenMP threads of a Sage kernel."""

    def __init__(
        self,
        zygotes: Zygotes | None = None,
        *,
        area: Area | None = None,
        sandbox: Sandbox | None = None,
        limits: Sequence[tuple[int, int]] = (),
        sage_threads: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.zygotes = zygotes
        self.area = area
        self.sandbox = sandbox
        self.limits = limits
        self.sage_threads = sage_threads
        #: Whether the kernel was forked from a zygote (set by the provisioner).
        self.forked = False
        #: Whether the process is bubblewrap around the kernel, whose exit status reports a
        #: kernel killed by signal N as 128 + N (set by the provisioner).
        self.wrapped = False


def fork_supported() -> bool:
    """Forking needs POSIX ``fork`` and ``setsid``."""
    return sys.platform != "win32" and hasattr(os, "fork")
