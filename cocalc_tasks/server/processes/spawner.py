"""A spawner that lives inside a project's sandbox (stdlib only; run as a script).

Starting ``bwrap`` costs about 5 ms per command; this process pays it once per project and
then forks each command inside the sandbox it already is in. It talks over a ``SOCK_SEQPACKET``
socket (its file descriptor is ``argv[1]``); each message is one JSON object.

Requests, the first with two file descriptors (the command's stdout and stderr)::

    {"id": 1, "argv": [...], "env": {...}, "cwd": "...", "limits": [[resource, value], ...]}
    {"signal": 7, "signum": 9}          signal a command's process group

Answers::

    {"ready": true}
    {"id": 1, "pid": 7}                 started (the pid is the sandbox's)
    {"id": 1, "errno": 2}               exec failed (the program is missing, say)
    {"exited": 7, "code": 0}            a command ended; code as ``Popen.returncode``

Each command gets its own session (process group), stdin from ``/dev/null``, and its limits
before ``exec``. When the socket closes, every command still running is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
from typing import Any, NoReturn

_children: set[int] = set()


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _child(request: dict[str, Any], out: int, err: int, status: int) -> NoReturn:
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(request["cwd"])
        for which, value in request.get("limits") or ():
            resource.setrlimit(which, (value, value))
        argv = request["argv"]
        os.execvpe(argv[0], argv, request["env"])  # noqa: S606 - argv as CoCalc's spawn runs it
    except OSError as exc:
        os.write(status, str(exc.errno or 5).encode())
    finally:
        os._exit(127)


def _start(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    out, err = fds
    read_status, write_status = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(read_status)
        sock.close()
        _child(request, out, err, write_status)
    os.close(write_status)
    os.close(out)
    os.close(err)
    with os.fdopen(read_status, "rb") as status:
        failure = status.read()  # empty: exec succeeded (the pipe closed on exec)
    if failure:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _send(sock, {"id": request["id"], "errno": int(failure)})
        return
    _children.add(pid)
    _send(sock, {"id": request["id"], "pid": pid})


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _children:
            _children.discard(pid)
            _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def main(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "requests")
    selector.register(wake_read, selectors.EVENT_READ, "signals")
    _send(sock, {"ready": True})
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "signals":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    _reap(sock)
                    continue
                data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 2)
                if not data:
                    return 0
                request = json.loads(data)
                if "signal" in request:
                    if request["signal"] in _children:
                        with contextlib.suppress(OSError):
                            os.killpg(request["signal"], request["signum"])
                    continue
                if len(fds) != 2:
                    for extra in fds:
                        os.close(extra)
                    _send(sock, {"id": request.get("id"), "errno": 9})
                    continue
                _start(sock, request, fds)
    finally:
        for pid in list(_children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
