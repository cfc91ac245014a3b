"""``cocalc-tasks serve``: run the app under uvicorn on a socket bound here.

Binding the socket ourselves means ``--port 0`` works and the one start-up line always shows
the real URL. One server owns a data directory (a lock file says which): a second one would
take the first one's running jobs for orphans. SIGINT and SIGTERM stop uvicorn gracefully; the
app's lifespan then shuts every kernel down, so no kernel process outlives the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import os
import socket
import sys
from pathlib import Path
from typing import IO

from cocalc_tasks.server.settings import (
    CONFIG_ENV,
    ServerSettings,
    SettingsError,
    settings_from_args,
)

__all__ = ["serve", "serve_from_args"]


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold ``data_dir/server.lock`` for this process's lifetime; None if another server does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "server.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        print(
            f"cocalc-tasks serve: error: the data directory {data_dir} is in use by another "
            f"server (pid {owner}); give this one its own --data-dir",
            file=sys.stderr,
        )
        return None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def serve(settings: ServerSettings) -> int:
    import uvicorn

    from cocalc_tasks.server.http.app import create_app
    from cocalc_tasks.server.jupyter.kernelspecs import UnknownKernel
    from cocalc_tasks.server.sandbox import SandboxUnavailable
    from cocalc_tasks.server.storage import DatabaseError

    lock = lock_data_dir(settings.data_dir)
    if lock is None:
        return 2
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only then,
    # and without it keep-alive responses stall 40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        print(
            f"cocalc-tasks serve: error: cannot bind {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    host, port = sock.getsockname()[:2]
    settings = dataclasses.replace(settings, port=port)  # the replica's name holds the real one
    try:
        app = create_app(settings)
    except (UnknownKernel, SandboxUnavailable, DatabaseError) as exc:
        print(f"cocalc-tasks serve: error: {exc}", file=sys.stderr)
        sock.close()
        return 2
    sock.listen(128)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"cocalc-tasks server listening on http://{shown}:{port}", flush=True)
    print(app.state.banner, flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0


def serve_from_args(args: argparse.Namespace) -> int:
    if args.config:  # the sandbox hides the config file from kernels; it reads this
        os.environ[CONFIG_ENV] = str(Path(args.config).absolute())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"cocalc-tasks serve: error: {exc}", file=sys.stderr)
        return 2
    return serve(settings)
