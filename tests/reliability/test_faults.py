"""Faults: dying kernels, runaway cells, floods, kernels that never start, flaky endpoints.

Each gives a typed error or a recovery, never a hang, and the pool returns to its size.
"""

from __future__ import annotations

import time

import pytest

from cocalc_tasks import (
    CocalcClient,
    CocalcConnectionError,
    CocalcKernelDiedError,
    CocalcServerError,
    CocalcTimeoutError,
    CocalcUnknownKernelError,
)
from cocalc_tasks.server.local_server import LocalServer
from tests.reliability.conftest import CELL_TIMEOUT, assert_healthy
from tests.support.flaky_server import Reply, closed_port, flaky_server


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "terminated by signal SIGKILL"),
        ("import os; os._exit(3)", "exited with code 3"),
        ("import ctypes; ctypes.string_at(0)", "terminated by signal SIGSEGV"),
    ],
)
def test_kernel_dying_mid_call(
    client: CocalcClient, server: LocalServer, code: str, fragment: str
) -> None:
    with pytest.raises(CocalcKernelDiedError, match=fragment):
        client.execute("print('before', flush=True)\n" + code, "python3", no_cache=True)
    assert_healthy(server)


def test_endless_loop_is_interrupted(client: CocalcClient, server: LocalServer) -> None:
    result = client.execute("while True: pass", "python3", no_cache=True)
    assert result.timed_out and result.error is not None and result.error.is_interrupt
    assert_healthy(server)


def test_loop_ignoring_sigint_is_killed(client: CocalcClient, server: LocalServer) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    started = time.monotonic()
    with pytest.raises(CocalcKernelDiedError, match="ignored interrupts"):
        client.execute(code, "python3", no_cache=True)
    assert time.monotonic() - started < CELL_TIMEOUT + 10
    assert_healthy(server)


def test_output_flood_of_100_mb(client: CocalcClient, server: LocalServer) -> None:
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)"
    result = client.execute(code, "python3", no_cache=True)
    assert result.truncated
    assert len(result.stdout) <= 500_000 + 10_000
    assert_healthy(server)


@pytest.mark.parametrize("kernel", ["broken", "mute"])
def test_kernel_that_fails_to_start(client: CocalcClient, server: LocalServer, kernel: str) -> None:
    started = time.monotonic()
    with pytest.raises(CocalcUnknownKernelError, match="Unable to Spawn"):
        client.execute("1", kernel, no_cache=True)
    assert time.monotonic() - started < 30
    assert_healthy(server)


@pytest.mark.parametrize(
    ("reply", "error", "fragment"),
    [
        (
            Reply(fault="reset", body=b'{"output": [], "created": "2025-01-01T00:00:00Z"}' * 50),
            CocalcConnectionError,
            "was cut off",
        ),
        (
            Reply(fault="short", body=b'{"output": [{"name": "stdout", "text": "x"}]}' * 20),
            CocalcConnectionError,
            "was cut off",
        ),
        (
            Reply(
                status=502,
                body=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                headers={"Content-Type": "text/html"},
            ),
            CocalcServerError,
            "502 Bad Gateway",
        ),
        (Reply(body=b'{"output": [{"name": "stdout", "te'), CocalcServerError, "not JSON"),
        (Reply(delay=3), CocalcTimeoutError, "read timeout"),
    ],
    ids=["reset-mid-body", "truncated-body", "html-502", "truncated-json", "slow"],
)
def test_client_facing_a_flaky_endpoint(
    reply: Reply, error: type[Exception], fragment: str
) -> None:
    with flaky_server(reply) as (url, _):
        started = time.monotonic()
        with pytest.raises(error, match=fragment):
            CocalcClient(host=url, timeout=(2, 1), retries=0).execute("1", "python3")
        assert time.monotonic() - started < 5


def test_client_facing_connection_refused() -> None:
    with pytest.raises(CocalcConnectionError):
        CocalcClient(host=f"http://127.0.0.1:{closed_port()}", retries=1).kernels()
