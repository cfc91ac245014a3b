"""A scripted HTTP server on loopback for transport tests: real sockets, so urllib3's retry
machinery runs (requests-mock replaces the adapter and would bypass it)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"output": [], "created": "2025-01-01T00:00:00.000Z", "success": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    #: "reset" closes the socket after half the body; "short" lies about Content-Length.
    fault: str | None = None


@dataclass
class Script:
    replies: list[Reply]
    requests: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)

    def next_reply(self) -> Reply:
        return self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.requests.append((self.command, self.path, body, dict(self.headers)))
            reply = script.next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.fault:
                self.send_header("Connection", "close")
            self.end_headers()
            if reply.fault == "reset":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.wfile.flush()
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.connection.close()
                return
            if reply.fault == "short":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.close_connection = True
                return
            self.wfile.write(reply.body)

        def _serve_quietly(self) -> None:
            # the client going away is what the abort and timeout tests expect
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._serve()

        do_POST = _serve_quietly
        do_GET = _serve_quietly

    return Handler


@contextmanager
def flaky_server(*replies: Reply) -> Iterator[tuple[str, Script]]:
    script = Script(list(replies) or [Reply()])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
