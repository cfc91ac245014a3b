"""The per-project sandbox: an escape corpus run from a project-A kernel and from an A job.

Each attempt must fail with nothing read or written: B's secret, the server's environment and
its data never show up in A's output, and nothing appears on disk outside A.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.support.procs import gone, is_sandbox, processes_mentioning

pytestmark = pytest.mark.server

A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
KEY_A = "sk-project-a-key-000000000000"
KEY_B = "sk-project-b-key-000000000000"
B_SECRET = "B-SECRET-" + secrets.token_hex(8)
SERVER_MARKER = "SERVER-ONLY-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("sandbox")
    config = root / "server-config.json"
    config.write_text(json.dumps({"CELL_TIMEOUT": 10}))
    server = LocalServer(
        data_dir=root / "data",
        api_keys=[SECRET_KEY],
        project_keys={KEY_A: A, KEY_B: B},
        args=["--sandbox", "bwrap", "--pool-size", "1", "--config", str(config)],
        env={"COCALC_SERVER_ESCAPE_MARKER": SERVER_MARKER},
    ).start()
    assert server.status()["sandbox"] == "bwrap"
    with CocalcClient(KEY_B, server.url, project_id=B) as b:
        b.exec(f"echo {B_SECRET} > secret.txt; mkdir -p sub; echo {B_SECRET} > sub/deep.txt")
        # B has a live kernel too, whose pid A will try to signal
        b.execute("1", "python3")
    a_home = server.data_dir / "projects" / A
    a_home.mkdir(parents=True, exist_ok=True)
    b_file = server.data_dir / "projects" / B / "secret.txt"
    (a_home / "planted-link").symlink_to(b_file)  # a symlink planted in A, pointing to B
    (a_home / "planted-dir").symlink_to(b_file.parent)
    assert server.process is not None
    short = hashlib.sha256(B.encode()).hexdigest()[:12]

    def b_processes() -> set[int]:  # host pids of B's zygote and of the kernels it forked
        found = processes_mentioning(f"/p/{short}/s/kernel-")
        return {pid for pid in found if not is_sandbox(pid) and not gone(pid, within=0)}

    # The kernel B just used is shutting down: wait until B's processes stay the same.
    b_kernels, deadline = b_processes(), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = b_processes()
        if now == b_kernels and len(now) >= 2:
            break
        b_kernels = now
    assert len(b_kernels) >= 2  # the zygote and its pooled kernel
    yield {
        "server": server,
        "data": server.data_dir,
        "b_file": b_file,
        "config": config,
        "server_pid": server.process.pid,
        "b_kernels": sorted(b_kernels),
    }
    server.stop()


def _attempts(e: dict[str, object]) -> list[tuple[str, str, str]]:
    """(name, Python code for a kernel, shell code for a job); each prints what it got."""
    data, b_file, config, pid = e["data"], e["b_file"], e["config"], e["server_pid"]
    b_kernels = e["b_kernels"]
    b_dir = Path(str(b_file)).parent
    return [
        ("read-b-absolute", f"print(open({str(b_file)!r}).read())", f"cat {b_file}"),
        ("read-b-dotdot", f"print(open('../{B}/secret.txt').read())", f"cat ../{B}/secret.txt"),
        (
            "read-b-deep-dotdot",
            f"print(open('../../projects/{B}/sub/deep.txt').read())",
            f"cat ../../projects/{B}/sub/deep.txt",
        ),
        ("symlink-to-b-file", "print(open('planted-link').read())", "cat planted-link"),
        (
            "symlink-to-b-dir",
            "print(open('planted-dir/sub/deep.txt').read())",
            "cat planted-dir/sub/deep.txt",
        ),
        (
            "list-projects",
            f"import os; print(os.listdir({str(b_dir.parent)!r}))",
            f"ls {b_dir.parent}",
        ),
        (
            "server-environ",
            f"print(open('/proc/{pid}/environ').read())",
            f"cat /proc/{pid}/environ",
        ),
        (
            "server-cmdline",
            f"print(open('/proc/{pid}/cmdline').read())",
            f"cat /proc/{pid}/cmdline",
        ),
        (
            "proc-cwds",
            "import glob, os\nfor p in glob.glob('/proc/[0-9]*/cwd'):\n"
            "    try: print(os.readlink(p))\n    except OSError: pass",
            "for p in /proc/[0-9]*/cwd; do readlink $p; done",
        ),
        (
            "proc-environs",
            "import glob\nfor p in glob.glob('/proc/[0-9]*/environ'):\n"
            "    try: print(open(p, 'rb').read())\n    except OSError: pass",
            "cat /proc/[0-9]*/environ",
        ),
        (
            "state-sqlite",
            f"print(open({str(data)!r} + '/state.sqlite3', 'rb').read())",
            f"cat {data}/state.sqlite3",
        ),
        ("server-config", f"print(open({str(config)!r}).read())", f"cat {config}"),
        (
            "b-scratch-and-state",
            f"import os; print(os.listdir({str(data)!r} + '/p'))",
            f"ls {data}/p",
        ),
        (
            "write-outside",
            "import os\nfor p in ['/usr/escaped', '/etc/escaped', "
            f"{str(data)!r} + '/escaped', {str(b_dir)!r} + '/escaped', "
            f"{str(data)!r} + '/projects/escaped']:\n"
            "    try: open(p, 'w').write('x'); print('WRO' + 'TE-OK', p)\n    except OSError as e: print(e)",
            f"for p in /usr/escaped /etc/escaped {data}/escaped {b_dir}/escaped ../escaped "
            f"{data}/projects/escaped; do "
            "echo x > $p && echo WRO''TE-OK $p; done",
        ),
        (
            "hard-link-to-b",
            f"import os; os.link({str(b_file)!r}, 'hard'); print(open('hard').read())",
            f"ln {b_file} hard && cat hard",
        ),
        (
            "signal-server",
            f"import os, signal; os.kill({pid}, signal.SIGTERM); print('SIG' + 'NAL-OK')",
            f"kill -TERM {pid} && echo SIG''NAL-OK",
        ),
        (
            "signal-b-kernels",
            f"import os\nfor p in {b_kernels!r}:\n"
            "    try: os.kill(p, 9); print('SIG' + 'NAL-OK')\n    except OSError as e: print(e)",
            f"for p in {' '.join(map(str, b_kernels))}; do kill -9 $p && echo SIG''NAL-OK; done",
        ),
        (
            "mount-tmpfs",
            "import subprocess; print(subprocess.run(['mount', '-t', 'tmpfs', 'x', "
            "'/mnt'], capture_output=True, text=True))",
            "mount -t tmpfs x /mnt && echo MOUN''TED-OK",
        ),
    ]


def _names() -> list[str]:
    fake = {"data": "", "b_file": "/x", "config": "", "server_pid": 0, "b_kernels": [0]}
    return [name for name, _, _ in _attempts(fake)]


def _assert_nothing_leaked(text: str, e: dict[str, object]) -> None:
    assert B_SECRET not in text
    assert SERVER_MARKER not in text
    assert SECRET_KEY not in text and KEY_B not in text
    assert B not in text.replace(f"../{B}", "").replace(f"projects/{B}", "")  # B's id only as typed
    assert "WROTE-OK" not in text and "SIGNAL-OK" not in text and "MOUNTED-OK" not in text


def _assert_nothing_written(e: dict[str, object]) -> None:
    data, b_file = Path(str(e["data"])), Path(str(e["b_file"]))
    for path in [
        Path("/usr/escaped"),
        Path("/etc/escaped"),
        data / "escaped",
        b_file.parent / "escaped",
        data / "projects" / "escaped",
    ]:
        assert not path.exists(), path
    assert not (data / "projects" / A / "hard").exists()
    assert b_file.read_text().strip() == B_SECRET
    server = e["server"]
    assert isinstance(server, LocalServer) and server.process is not None
    assert server.process.poll() is None  # not signalled
    assert not any(gone(pid, within=0) for pid in e["b_kernels"])  # type: ignore[attr-defined]


def test_the_corpus_is_large_enough() -> None:
    assert len(_names()) >= 15


@pytest.mark.parametrize("name", _names())
def test_escape_from_a_kernel_fails(env: dict[str, object], name: str) -> None:
    code = {n: c for n, c, _ in _attempts(env)}[name]
    server = env["server"]
    assert isinstance(server, LocalServer)
    with CocalcClient(KEY_A, server.url, project_id=A, timeout=(5, 60)) as a:
        result = a.execute(code, "python3", no_cache=True)
    text = json.dumps(result.outputs)
    _assert_nothing_leaked(text, env)
    _assert_nothing_written(env)


@pytest.mark.parametrize("name", _names())
def test_escape_from_a_job_fails(env: dict[str, object], name: str) -> None:
    script = {n: s for n, _, s in _attempts(env)}[name]
    server = env["server"]
    assert isinstance(server, LocalServer)
    with CocalcClient(KEY_A, server.url, project_id=A, timeout=(5, 60)) as a:
        result = a.wait(a.submit(script, bash=True, timeout=30))
    _assert_nothing_leaked(result.stdout + result.stderr, env)
    _assert_nothing_written(env)


def test_inside_a_project_still_works(env: dict[str, object]) -> None:
    """The sandbox is not a wall around the project itself."""
    server = env["server"]
    assert isinstance(server, LocalServer)
    with CocalcClient(KEY_A, server.url, project_id=A, timeout=(5, 60)) as a:
        a.exec("mkdir -p work && echo 42 > work/answer.txt")
        assert (
            a.execute("print(open('answer.txt').read().strip())", "python3", path="work").stdout
            == "42\n"
        )
        assert a.run_script("import os; print(os.getcwd())").stdout.strip().endswith(A)
        home = a.exec("echo $HOME; ls /usr/bin/env; python3 -c 'print(1)'").stdout.split()
    assert home[0].endswith(f"projects/{A}") and home[-1] == "1"
    assert (Path(str(env["data"])) / "projects" / A / "work" / "answer.txt").read_text() == "42\n"
