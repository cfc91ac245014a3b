"""The repository's own ``deploy/nginx.conf``, run for real with the tests' ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nginx.conf"
REQUIRE_ENV = "COCALC_REQUIRE_POSTGRES"  # the replica tests need both, and CI has both


def find_nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


def render(text: str, listen: int, upstreams: Sequence[int]) -> str:
    """The shipped config with this test's ports: the listen port and each upstream's."""
    shipped = ["127.0.0.1:8801", "127.0.0.1:8802"]
    assert all(s in text for s in shipped) and "listen 127.0.0.1:8765;" in text
    text = text.replace("listen 127.0.0.1:8765;", f"listen 127.0.0.1:{listen};")
    for old, port in zip(shipped, upstreams, strict=True):
        text = text.replace(old, f"127.0.0.1:{port}")
    return text.replace("worker_processes auto;", "worker_processes 1;")


class Nginx:
    def __init__(self, prefix: Path, upstreams: Sequence[int]) -> None:
        binary = find_nginx()
        if binary is None:
            message = "nginx is not installed: install Debian's nginx package, or run make test"
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.prefix = prefix
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        prefix.mkdir(parents=True, exist_ok=True)
        self.config = prefix / "nginx.conf"
        self.config.write_text(render(CONFIG.read_text(), self.port, upstreams))
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        argv = [self.binary, "-p", str(self.prefix), "-c", str(self.config)]
        subprocess.run([*argv, "-t", "-q"], check=True, capture_output=True, timeout=30)
        self.process = subprocess.Popen([*argv, "-g", "daemon off;"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port}: see {self.prefix}/error.log")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=15)
