"""The seed's examples and CoCalc's output semantics, on real kernels."""

from __future__ import annotations

import base64
import struct
import time
import zlib

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.server.conftest import CELL_TIMEOUT


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def test_seed_print(client: CocalcClient) -> None:
    assert client.execute("print(2+3)", "python3", no_cache=True).outputs == [
        {"name": "stdout", "text": "5\n"}
    ]


def test_seed_execute_result(client: CocalcClient) -> None:
    assert client.execute("2+3", "python3", no_cache=True).outputs == [
        {"data": {"text/plain": "5"}}
    ]


def test_seed_history(client: CocalcClient) -> None:
    result = client.execute("print(a+b)", "python3", history=["a=2", "b=3"], no_cache=True)
    assert result.outputs == [{"name": "stdout", "text": "5\n"}]


def test_history_output_is_discarded(client: CocalcClient) -> None:
    result = client.execute(
        "print('input')", "python3", history=["print('history')", "1/0"], no_cache=True
    )
    assert result.stdout == "input\n"
    assert result.ok


def test_kernels_listing(client: CocalcClient, anonymous: CocalcClient) -> None:
    kernels = anonymous.kernels()
    names = [k.name for k in kernels]
    assert {"python3", "bash"} <= set(names)
    assert [k.display_name for k in kernels] == sorted(k.display_name for k in kernels)
    python = next(k for k in kernels if k.name == "python3")
    assert python.language == "python" and python.argv and python.resource_dir


def test_bash_kernel(client: CocalcClient) -> None:
    assert client.execute("echo $((2+3))", "bash", no_cache=True).outputs == [
        {"name": "stdout", "text": "5\n"}
    ]
    result = client.execute("echo $((a+b))", "bash", history=["a=2", "b=3"], no_cache=True)
    assert result.stdout == "5\n"
    failed = client.execute("false", "bash", no_cache=True)
    assert not failed.ok and failed.error is not None and failed.error.evalue == "1"


def test_statelessness(client: CocalcClient) -> None:
    client.execute("x_state = 41\nimport json as json_mod", "python3", no_cache=True)
    for name in ("x_state", "json_mod"):
        result = client.execute(name, "python3", no_cache=True)
        assert result.error is not None and result.error.ename == "NameError", name


def test_image_through_ipython_display(client: CocalcClient) -> None:
    png = tiny_png()
    code = (
        "from IPython.display import Image, display\nimport base64\n"
        f"display(Image(data=base64.b64decode({base64.b64encode(png).decode()!r})))"
    )
    result = client.execute(code, "python3", no_cache=True)
    assert [(i.mime, i.content) for i in result.images] == [("image/png", png)]
    assert "text/plain" in result.data[0]


def test_error_traceback(client: CocalcClient) -> None:
    result = client.execute("def f():\n    return 1/0\nf()", "python3", no_cache=True)
    error = result.error
    assert error is not None and (error.ename, error.evalue) == (
        "ZeroDivisionError",
        "division by zero",
    )
    assert "return 1/0" in error.traceback and "\x1b[" in "".join(error.raw_traceback)
    assert set(result.outputs[0]) == {"ename", "evalue", "traceback"}


def test_clear_output(client: CocalcClient) -> None:
    code = (
        "from IPython.display import clear_output\nprint(1, flush=True)\nclear_output()\nprint(2)"
    )
    assert client.execute(code, "python3", no_cache=True).outputs == [
        {"wait": False},
        {"name": "stdout", "text": "2\n"},
    ]


def test_display_metadata_and_transient(client: CocalcClient) -> None:
    code = (
        "from IPython.display import JSON, display\n"
        "display(JSON({'a': [1, 2]}))\nh = display('a', display_id=True)\nh.update('b')"
    )
    outputs = client.execute(code, "python3", no_cache=True).outputs
    assert outputs[0]["data"]["application/json"] == {"a": [1, 2]}
    assert outputs[0]["metadata"]["application/json"]["expanded"] is False
    assert outputs[1]["transient"]["display_id"] == outputs[2]["transient"]["display_id"]
    assert outputs[2]["data"]["text/plain"] == "'b'"
    assert all("output_type" not in item and "execution_count" not in item for item in outputs)


def test_empty_input(client: CocalcClient) -> None:
    assert client.execute("", "python3", no_cache=True).outputs == []


def test_endless_loop_times_out_and_pool_recovers(
    client: CocalcClient, server: LocalServer
) -> None:
    started = time.monotonic()
    result = client.execute(
        "print('start', flush=True)\nwhile True: pass", "python3", no_cache=True
    )
    took = time.monotonic() - started
    assert result.timed_out and result.stdout == "start\n"
    assert CELL_TIMEOUT <= took < CELL_TIMEOUT + 5
    server.wait_for_pool("python3", 2, timeout=30)
    assert client.execute("print('after')", "python3", no_cache=True).stdout == "after\n"


def test_large_output_is_truncated(client: CocalcClient) -> None:
    result = client.execute("print('x' * 600_000)\nprint('tail')", "python3", no_cache=True)
    assert result.truncated
    notices = [i for i in result.outputs if "output_type" in i]
    assert notices[0]["text"] == [
        "Output truncated since it exceeded the cell output limit of 500000 characters"
    ]
    assert len(result.stdout) < 600_000


def test_traceback_kept_after_truncation(client: CocalcClient) -> None:
    result = client.execute(
        "print('y' * 600_000)\nraise ValueError('late')", "python3", no_cache=True
    )
    assert result.truncated and result.error is not None and result.error.evalue == "late"
