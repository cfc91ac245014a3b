"""An IPython kernel prepared once in a zygote and forked for each call.

Loaded by ``zygote.py`` inside the kernelspec's own interpreter (so it imports ipykernel and
the standard library, never cocalc_tasks). A normal IPython kernel spends most of its start
building its application: reading its configuration, constructing the shell with its magics,
formatters and hooks, loading extensions, opening five ZMQ sockets and starting four threads.
:func:`prepare` does everything of that which is the same for every kernel once, in the zygote,
with ipykernel's own classes (``IPKernelApp.initialize`` minus the sockets, threads and signal
handlers; see :class:`ForkedKernelApp`). Each forked child then only renews what must be its
own (done by the zygote: pid, session, directory, environment, random seeds), connects to the
server and runs the cells it is sent with ipykernel's own ``execute_request``.

Messages leave through :class:`ChannelSession`, a ``jupyter_client`` Session whose ``send``
writes each message's type and content, packed by the session's own packer, to the server.
Nothing else changes: the execute reply, ``execute_result``, ``display_data``, errors and
their tracebacks are built by ipykernel and IPython as in any kernel. Only the streams are
ours (:class:`ChannelStream`): ipykernel's ``OutStream`` needs an IOPub thread with its own
ZMQ context and event loop, which would cost each call more than the rest of its start.

The wire, one Unix stream socket per kernel, frames of a 4-byte big-endian length and a
payload::

    kernel -> server   {"token": "...", "pid": 4242}        first frame, JSON
    server -> kernel   {"code": "...", "store_history": true}   one per cell, JSON
    kernel -> server   b"<msg_type>\\n" + content              each message of the cell; the
                                                            cell's last is "execute_reply"

The kernel exits when the server closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import selectors
import socket
import struct
import sys
import threading
import time
from io import TextIOBase
from types import SimpleNamespace
from typing import Any

from ipykernel.kernelapp import IPKernelApp
from jupyter_client.session import Session, extract_header, new_id

__all__ = ["ChannelSession", "ChannelStream", "ForkedKernelApp", "prepare", "serve"]

_LENGTH = struct.Struct("!I")
#: The kernel classes the zygote can prepare, by the ``python -m`` module that starts them.
_KERNEL_CLASSES = {
    "ipykernel_launcher": ("ipykernel.ipkernel", "IPythonKernel"),
    "sage.repl.ipython_kernel": ("sage.repl.ipython_kernel.kernel", "SageKernel"),
}
_prepared: list[ForkedKernelApp] = []
_prepared_module: list[str] = []
#: Kernels that skip the silent cell in their pool: it saves a Sage call about 2 ms of wait but
#: costs 3.4 ms of CPU, and Sage's many short calls are bound by CPU (python3's cell costs less
#: than the wait it saves).
_NO_POOLED_WARM_UP = frozenset({"sage.repl.ipython_kernel"})
_STD = {1: "stdout", 2: "stderr"}
#: Kernels whose ``python -m`` entry point removes the directory Python put first in
#: ``sys.path`` (ipykernel_launcher.py); ``IPKernelApp.init_path`` adds ``''`` after the
#: standard library instead.
_LAUNCHERS_DROP_CWD = frozenset({"ipykernel_launcher"})
#: Message types a caller never sees (CoCalc's filter leaves nothing of them): not sent.
_UNSENT = frozenset({"execute_input", "status"})


class Channel:
    """The kernel's end of its socket; ``send`` is safe from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        #: The kernel's process: a process it forks (multiprocessing) never writes here.
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._reader = sock.makefile("rb")

    def send(self, payload: bytes) -> None:
        with self._lock:
            self.sock.sendall(_LENGTH.pack(len(payload)) + payload)

    def recv(self) -> bytes | None:
        head = self._reader.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return None
        body = self._reader.read(_LENGTH.unpack(head)[0])
        return body if len(body) == _LENGTH.unpack(head)[0] else None


class ChannelSession(Session):  # type: ignore[misc]
    """A Session whose ``send`` writes the message to the server's channel, whatever
    ``stream`` it is given (ipykernel passes its IOPub or shell socket, which do not exist
    here). It returns the message, as ``Session.send`` does."""

    channel: Channel | None = None

    def send(  # type: ignore[override]
        self,
        stream: Any,
        msg_or_type: dict[str, Any] | str,
        content: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        ident: Any = None,
        buffers: Any = None,
        track: bool = False,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if isinstance(msg_or_type, dict):
            msg = msg_or_type
            msg_type = msg["header"]["msg_type"] if "header" in msg else msg["msg_type"]
        else:
            msg = self.msg(
                msg_or_type, content=content, parent=parent, header=header, metadata=metadata
            )
            msg_type = msg_or_type
        channel = ChannelSession.channel
        if channel is not None and msg_type not in _UNSENT and channel.pid == os.getpid():
            channel.send(msg_type.encode() + b"\n" + self.pack(msg.get("content", {})))
        return msg


class ChannelStream(TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a prepared kernel: ``stream`` messages with the text
    written, flushed 0.2 s after the first write, at 64 KiB, on ``flush()`` and at the end of
    each cell. ``fileno()`` is the original descriptor, as with ipykernel's ``OutStream``."""

    limit = 1 << 16

    def __init__(
        self, session: Session, name: str, descriptor: int, fileno: int, pump: _Pump
    ) -> None:
        super().__init__()
        self.session = session
        self.name = name
        self.parent_header: dict[str, Any] = {}
        self._pid = os.getpid()
        #: What a process forked by the kernel wrote and has not flushed yet.
        self._worker_pid = 0
        self._worker_parts: list[str] = []
        #: 1 or 2, captured by the kernel; ``fileno`` is the original one behind it.
        self._descriptor = descriptor
        self._fileno = fileno
        self._pump = pump
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "UTF-8"

    def set_parent(self, parent: dict[str, Any]) -> None:
        self.parent_header = extract_header(parent)

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fileno

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        if os.getpid() != self._pid:
            # A process the kernel forked (a multiprocessing worker): its text goes through the
            # descriptor, which the kernel captures (ipykernel forwards it too), on flush, so
            # that two workers' lines do not cut into each other.
            if self._worker_pid != os.getpid():  # not what the kernel had buffered at the fork
                self._worker_pid, self._worker_parts = os.getpid(), []
            self._worker_parts.append(text)
            if sum(map(len, self._worker_parts)) >= self.limit:
                self.flush()
            return len(text)
        with self._lock:
            first = not self._parts
            self._parts.append(text)
            self._size += len(text)
            full = self._size >= self.limit
        if full:
            self.flush()
        elif first:
            self._pump.flush_later(self)
        return len(text)

    def flush(self) -> None:
        if os.getpid() != self._pid:
            if self._worker_pid == os.getpid() and self._worker_parts:
                text, self._worker_parts = "".join(self._worker_parts), []
                os.write(self._descriptor, text.encode("utf-8", "replace"))
            return
        if threading.current_thread() is threading.main_thread():
            self._pump.drain()  # what a subprocess wrote comes first
        with self._lock:  # held while sending, so that two flushes keep their order
            if not self._parts:
                return
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            self.session.send(
                None, "stream", {"name": self.name, "text": text}, parent=self.parent_header
            )


class _Pump:
    """The kernel's one helper thread, started before the first cell (so that a cell that
    exhausts its process cap still gets its output). It sends what is written to file
    descriptors 1 and 2 (a C library, ``os.system``) to the streams, as ipykernel does by
    default (``IPKernelApp.capture_fd_output``), and flushes a stream 0.2 s after its first
    unflushed write (ipykernel's ``OutStream.flush_interval``)."""

    interval = 0.2

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._ends: list[int] = []
        self._busy = threading.RLock()  # held from a read until its text is in the stream
        self._due: dict[ChannelStream, float] = {}
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)

    def capture(self, streams: dict[int, ChannelStream]) -> None:
        for fd, stream in streams.items():
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._selector.register(read_end, selectors.EVENT_READ, stream)
            self._ends.append(read_end)
        threading.Thread(target=self._run, name="streams", daemon=True).start()

    def flush_later(self, stream: ChannelStream) -> None:
        with self._busy:
            self._due.setdefault(stream, time.monotonic() + self.interval)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"!")

    def _run(self) -> None:
        while True:
            with self._busy:
                first = min(self._due.values(), default=None)
            timeout = None if first is None else max(0.0, first - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    os.read(key.fd, 4096)
                    continue
                with self._busy:
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        key.data.write(data.decode("utf-8", "replace"))
                    else:
                        self._selector.unregister(key.fd)
            now = time.monotonic()
            with self._busy:
                ready = [stream for stream, at in self._due.items() if at <= now]
                for stream in ready:
                    del self._due[stream]
            for stream in ready:
                stream.flush()

    def drain(self, limit: float = 0.05) -> None:
        """Wait (at most ``limit`` s) until what was written to the descriptors reached the
        streams: the end of a cell must not overtake a subprocess's last line."""
        deadline = time.monotonic() + limit
        while select.select(self._ends, [], [], 0)[0] and time.monotonic() < deadline:
            time.sleep(0.0005)
        with self._busy:
            pass


class ForkedKernelApp(IPKernelApp):  # type: ignore[misc]
    """``IPKernelApp.initialize`` minus what cannot cross a fork: sockets, the heartbeat, the
    parent poller, the IOPub/control/shell-channel threads and the signal handlers. The kernel
    and its shell are built as ipykernel builds them; the child attaches its channel."""

    def init_connection_file(self) -> None:
        self.session = ChannelSession(parent=self)

    def init_poller(self) -> None:
        self.poller = None

    def init_sockets(self) -> None:
        self.shell_socket = self.control_socket = self.stdin_socket = None
        self.debug_shell_socket = self.debugpy_socket = None
        self.iopub_socket = self.iopub_thread = None
        self.control_thread = self.shell_channel_thread = None
        self._ports: dict[str, int] = {}

    def init_heartbeat(self) -> None:
        pass

    def write_connection_file(self, **kwargs: Any) -> None:
        pass

    def log_connection_info(self) -> None:
        pass

    def init_io(self) -> None:
        if self.displayhook_class:
            from traitlets.utils.importstring import import_item

            self.displayhook = import_item(str(self.displayhook_class))(self.session, None)

    def init_signal(self) -> None:
        pass

    def init_kernel(self) -> None:
        kernel = self.kernel_class.instance(  # type: ignore[attr-defined]
            parent=self,
            session=self.session,
            log=self.log,
            profile_dir=self.profile_dir,
            user_ns=self.user_ns,
        )
        self.kernel = kernel
        self.displayhook.get_execution_count = lambda: kernel.execution_count


def prepare(module: str, args: list[str]) -> None:
    """In the zygote: build the application, kernel and shell that ``python -m module args``
    would build. Raises if ``module`` is not a kernel this file knows."""
    import importlib

    where, name = _KERNEL_CLASSES[module]
    kernel_class = getattr(importlib.import_module(where), name)
    app = ForkedKernelApp.instance(kernel_class=kernel_class)
    # History in memory: a history file needs a writer thread, which a fork cannot carry, and
    # one file shared by every call would let a call read the code of the calls before it.
    app.initialize([*args, "--HistoryManager.hist_file=:memory:"])  # type: ignore[no-untyped-call]
    _warm_up(app, _WARM_UP + _LIBRARY_WARM_UP.get(module, ()))
    _prepared.append(app)
    _prepared_module.append(module)


def _warm_up(app: ForkedKernelApp, cells: tuple[str, ...]) -> None:
    """Run once here what every kernel's first cell would otherwise pay for itself: IPython's
    first compile and run, the first formatted result, the first traceback (its formatting
    loads and compiles a lot: about 50 ms), the first event loop. The cells are silent (no
    execution count, history or ``_``), and the traces they leave are removed."""
    shell = app.kernel.shell
    loop = asyncio.new_event_loop()
    try:
        for code in cells:
            cell = shell.run_cell_async(
                code,
                store_history=False,
                silent=True,
                transformed_cell=shell.transform_cell(code),
                preprocessing_exc_tuple=None,
            )
            loop.run_until_complete(cell)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)
    shell._last_traceback = None
    shell.user_ns.pop("_warm_up_error", None)


_WARM_UP = (
    "None",
    "get_ipython().display_formatter.format(0)",
    "def _warm_up_error():\n    1 / 0\n_warm_up_error()",
)
#: What a library builds on first use, for everyone: Sage's first formatted factorization
#: imports two extension modules and builds a number field (process-wide caches that hold no
#: user state), about 9 ms of every Sage kernel's first call.
_LIBRARY_WARM_UP = {
    "sage.repl.ipython_kernel": ("get_ipython().display_formatter.format(factor(10**19 + 7))",)
}


def serve(address: str, token: str) -> int:
    """In the forked child: connect to the server, run cells until it hangs up."""
    app = _prepared[0]
    kernel = app.kernel
    session: ChannelSession = app.session
    session.session = new_id()  # each kernel its own session, as if it had started itself
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    channel = Channel(sock)
    ChannelSession.channel = channel
    originals = {1: os.dup(1), 2: os.dup(2)}
    pump = _Pump()
    streams = {
        fd: ChannelStream(session, name, fd, originals[fd], pump) for fd, name in _STD.items()
    }
    # As ipykernel's OutStream decides: unless configured off, or under pytest (whose own
    # capture it leaves alone).
    capture = app.capture_fd_output and "PYTEST_CURRENT_TEST" not in os.environ
    pump.capture(streams if capture else {})
    sys.stdout, sys.stderr = streams[1], streams[2]
    kernel._stdout, kernel._stderr = sys.stdout, sys.stderr
    # ipykernel sleeps 0.5 ms before each reply so that its IOPub thread catches up; here
    # every message is written before the reply.
    kernel._execute_sleep = 0
    sys.displayhook = app.displayhook
    # ipykernel cancels a top-level ``await`` on SIGINT only for the thread that runs cells.
    kernel.shell_channel_thread = SimpleNamespace(parent_thread=threading.current_thread())
    if _prepared_module[0] in _LAUNCHERS_DROP_CWD and sys.path[:1] == [os.getcwd()]:
        del sys.path[0]  # as the launcher does; init_path put '' in its place (in the zygote)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if _prepared_module[0] not in _NO_POOLED_WARM_UP:
        # One silent cell before the first call: the pages a cell writes are copied from the
        # zygote's now, while the kernel waits in its pool, not while a caller waits for it.
        _execute(loop, kernel, session, {"code": "None", "silent": True, "store_history": False})
    channel.send(json.dumps({"token": token, "pid": os.getpid()}).encode())
    while True:
        try:
            frame = channel.recv()
        except KeyboardInterrupt:  # an interrupt between cells, as in ipykernel: ignored
            continue
        if frame is None:
            return 0
        _execute(loop, kernel, session, json.loads(frame))


def _execute(
    loop: asyncio.AbstractEventLoop, kernel: Any, session: Session, request: dict[str, Any]
) -> None:
    """Run one cell with ipykernel's own ``execute_request``, as a kernel does for a frontend
    that allows no stdin and does not stop on errors."""
    silent = bool(request.get("silent", False))
    parent = session.msg(
        "execute_request",
        content={
            "code": request["code"],
            "silent": silent,
            "store_history": bool(request.get("store_history", not silent)),
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        },
    )
    kernel.set_parent([], parent, "shell")
    sent = ChannelSession.channel
    if silent:  # nothing of a silent cell reaches the server
        ChannelSession.channel = None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            loop.run_until_complete(kernel.execute_request(None, [], parent))
    finally:
        ChannelSession.channel = sent
