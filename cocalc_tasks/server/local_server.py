"""``LocalServer``: run ``cocalc-tasks serve`` in a child process, for demos, tests and benchmarks.

>>> with LocalServer(api_keys=["sk-demo"]) as server:      # doctest: +SKIP
...     execute_code("2+3", "python3", host=server.url, api_key="sk-demo").text
'5'
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from cocalc_tasks.client.client import CocalcClient

__all__ = ["DATA_DIR_PREFIX", "LocalServer"]

#: Name prefix of the temporary data directory of a server started without ``data_dir``.
DATA_DIR_PREFIX = "cocalc-tasks-server-"


class LocalServer:
    """Start the server on a free loopback port; stop it (and its kernels) on exit."""

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        api_keys: Sequence[str] = (),
        project_keys: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        start_timeout: float = 60.0,
        log_file: str | Path | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=DATA_DIR_PREFIX)
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.api_keys = list(api_keys)
        self.project_keys = dict(project_keys or {})
        self.args = list(args)
        self.env = dict(env or {})
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        #: Where the server's stderr (its log) goes; inherited when None.
        self.log_file = Path(log_file) if log_file is not None else None
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "cocalc_tasks",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]

    def start(self) -> LocalServer:
        if self.process is not None:
            raise RuntimeError(f"this server is already running at {self.url}")
        env = {**os.environ, **self.env}
        # Started from a pytest run, the server's kernels would inherit pytest's marker, and
        # ipykernel then stops capturing what is written to file descriptors 1 and 2: they
        # behave as outside a test run instead.
        env.pop("PYTEST_CURRENT_TEST", None)
        # Keys go through the environment, not argv, so `ps` does not show them.
        if self.api_keys:
            env["COCALC_SERVER_API_KEYS"] = ",".join(self.api_keys)
        if self.project_keys:
            env["COCALC_SERVER_PROJECT_KEYS"] = ",".join(
                f"{k}={v}" for k, v in self.project_keys.items()
            )
        stderr = self.log_file.open("ab") if self.log_file is not None else None
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
            )
        finally:
            if stderr is not None:
                stderr.close()
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "http://" not in line:
            code = self.process.wait(timeout=30)
            raise RuntimeError(f"the server did not start (exit code {code}): {line.strip()}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                response = requests.get(self.url + "/cocalc-tasks/status", timeout=2)
                if response.ok:
                    return
            except requests.RequestException:
                pass
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"the server at {self.url} was not ready in {self.start_timeout} s")

    @property
    def api_key(self) -> str | None:
        """The first account key the server accepts (None when it accepts none)."""
        return self.api_keys[0] if self.api_keys else None

    def client(self, **kwargs: Any) -> CocalcClient:
        """A client of this server, signed in with :attr:`api_key` (close it when done)."""
        from cocalc_tasks.client.client import CocalcClient

        return CocalcClient(api_key=self.api_key, host=self.url, **kwargs)

    def status(self) -> dict[str, object]:
        result: dict[str, object] = requests.get(
            self.url + "/cocalc-tasks/status", timeout=5
        ).json()
        return result

    def wait_for_pool(self, kernel: str = "python3", size: int = 1, timeout: float = 60) -> None:
        """Block until the pool of ``kernel`` holds ``size`` ready kernels."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pools = self.status().get("pools", {})
            if isinstance(pools, dict) and pools.get(kernel, 0) >= size:
                return
            time.sleep(0.05)
        raise TimeoutError(f"pool {kernel} did not reach {size} in {timeout} s")

    def stop(self, timeout: float = 20.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
