"""Kernels forked ready to run from a zygote that built them once (``prepared_kernel.py``),
spoken to over one Unix socket each.

This is the short way to a fresh kernel per call. A jupyter_client kernel needs a connection
file, five ZMQ sockets, a heartbeat, ``kernel_info`` round trips, a full ``IPKernelApp`` start
in the child and a ``KernelManager`` with its client in the server. A prepared kernel costs a
``fork``, one ``connect`` and one ``accept``; its cells are JSON frames and its messages come
back as ``(msg_type, content)`` frames, built by ipykernel itself.

:class:`KernelChannels` listens on one socket per area (in the area's scratch directory, which
its sandbox shares); each forked kernel connects and says its token first.
:class:`PreparedKernel` is one such kernel for one call, with the interface of
:class:`~cocalc_tasks.server.jupyter.kernel.WarmKernel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import struct
from collections import deque
from pathlib import Path
from typing import Any

from cocalc_tasks.server.jupyter.kernel import KernelDied, describe_exit, remove_workdir
from cocalc_tasks.server.processes.zygotes import ForkedProcess, Zygote
from cocalc_tasks.server.sandbox import Area

__all__ = ["KernelChannels", "KernelConnection", "PreparedKernel"]

_LENGTH = struct.Struct("!I")
#: The socket's name in an area's scratch directory.
SOCKET_NAME = "kernels.sock"


class KernelConnection(asyncio.Protocol):
    """The server's end of one kernel's socket: frames in, frames out."""

    def __init__(self, channels: KernelChannels) -> None:
        self._channels = channels
        self._buffer = bytearray()
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.frames: deque[bytes] = deque()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < _LENGTH.size + size:
                break
            frame = bytes(self._buffer[_LENGTH.size : _LENGTH.size + size])
            del self._buffer[: _LENGTH.size + size]
            if not self._greeted:
                self._greeted = True
                if not self._channels.greeted(self, frame):
                    self.close()
                    return
                continue
            self.frames.append(frame)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_frame(self, timeout: float) -> bytes | None:
        """The next frame; None if none came within ``timeout`` s or the socket closed."""
        if not self.frames and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._waiter, timeout)
            self._waiter = None
        return self.frames.popleft() if self.frames else None

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_LENGTH.pack(len(payload)) + payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class KernelChannels:
    """The server's listening sockets for prepared kernels, one per area, opened on first use."""

    def __init__(self) -> None:
        self._servers: dict[Path, asyncio.AbstractServer] = {}
        self._waiting: dict[str, asyncio.Future[KernelConnection]] = {}

    async def address(self, area: Area) -> str:
        """The socket the kernels of ``area`` connect to."""
        scratch = area.scratch
        path = scratch / SOCKET_NAME
        if scratch not in self._servers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            loop = asyncio.get_running_loop()
            self._servers[scratch] = await loop.create_unix_server(
                lambda: KernelConnection(self), str(path)
            )
            if area.owner is not None:  # the area's kernels run as the project's own user
                area.owner.chown_tree(path)
        return str(path)

    def expect(self) -> tuple[str, asyncio.Future[KernelConnection]]:
        """A new token, and the future its kernel's connection resolves."""
        token = secrets.token_hex(16)
        future: asyncio.Future[KernelConnection] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return token, future

    def forget(self, token: str) -> None:
        self._waiting.pop(token, None)

    def greeted(self, connection: KernelConnection, frame: bytes) -> bool:
        """A kernel said hello: hand its connection to whoever expects that token."""
        try:
            token = json.loads(frame)["token"]
        except (ValueError, KeyError, TypeError):
            return False
        future = self._waiting.pop(token, None) if isinstance(token, str) else None
        if future is None or future.done():
            return False
        future.set_result(connection)
        return True

    async def close_area(self, scratch: Path) -> None:
        server = self._servers.pop(scratch, None)
        if server is not None:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                (scratch / SOCKET_NAME).unlink()

    async def close(self) -> None:
        for scratch in list(self._servers):
            await self.close_area(scratch)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()


class PreparedKernel:
    """A kernel forked ready from its zygote, connected, waiting for its first cell."""

    #: How kernel starts are counted in the metrics.
    how = "prepared"

    def __init__(
        self,
        spec_name: str,
        language: str,
        process: ForkedProcess,
        zygote: Zygote,
        connection: KernelConnection,
        workdir: Path,
        area_name: str,
        address: str,
    ) -> None:
        self.spec_name = spec_name
        self.language = language
        self.process = process
        self.zygote = zygote
        self.connection = connection
        self.workdir = workdir
        self.area_name = area_name
        self.address = address
        self.disposed = False
        self._described: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def connection_file(self) -> str:
        """A file that says how to reach this kernel, as a jupyter_client kernel's connection
        file does (the project bridge lists it). Written only when asked for."""
        if self._described is None:
            described = self.workdir.parent / f"kernel-{self.pid}-{id(self):x}.json"
            info = {"transport": "cocalc-tasks-prepared", "address": self.address}
            described.write_text(json.dumps({**info, "pid": self.pid}))
            self._described = described
        return str(self._described)

    async def is_alive(self) -> bool:
        return not self.connection.closed and self.process.poll() is None

    def send_cell(self, code: str, record: bool) -> None:
        self.connection.send(json.dumps({"code": code, "store_history": record}).encode())

    async def next_message(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """The cell's next message, or None if none came within ``timeout``; raises
        :class:`~cocalc_tasks.server.jupyter.kernel.KernelDied` with CoCalc's text if the
        kernel died."""
        frame = await self.connection.next_frame(timeout)
        if frame is not None:
            msg_type, _, content = frame.partition(b"\n")
            return msg_type.decode(), json.loads(content)
        if self.connection.closed:
            # The socket closed: the kernel ended. Its exit code follows from the zygote.
            raise KernelDied(describe_exit(await self._exit_code(2.0)))
        return None

    async def interrupt(self) -> None:
        self.process.signal_group(signal.SIGINT)

    async def _exit_code(self, timeout: float) -> int | None:
        code = self.process.poll()
        if code is None:
            code = await self.zygote.wait_exit(self.pid, timeout)
            self.process.returncode = code
        return code

    async def dispose(self) -> None:
        """Hang up: the kernel exits by itself (running its clean-ups); anything it left
        running in its process group is killed."""
        if self.disposed:
            return
        self.disposed = True
        self.connection.close()
        await self._exit_code(2.0)
        self.process.signal_group(signal.SIGKILL)
        self.zygote.forget(self.pid)
        remove_workdir(self.workdir)
        if self._described is not None:
            self._described.unlink(missing_ok=True)
