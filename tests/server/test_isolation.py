"""Projects isolated as CoCalc isolates them, against the real thing: every process of a project
runs as the project's own unprivileged uid, in a network of its own, under memory and process
caps enforced by cgroups for the whole project. Each attempt prints what it got, and the test
reads that.

The server runs as root here (as CI does); tests/server/test_sandbox.py holds the file-system
corpus (other projects, the server's data and processes).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cocalc_tasks import CocalcClient, CocalcKernelDiedError
from cocalc_tasks.notebooks import run_notebook
from cocalc_tasks.server.local_server import LocalServer
from cocalc_tasks.server.sandbox.cgroups import _own_cgroups
from cocalc_tasks.server.sandbox.users import ProjectUsers
from tests.conftest import SECRET_KEY
from tests.notebooks.builders import notebook

pytestmark = pytest.mark.server

A = "aaaaaaaa-1111-4000-8000-00000000000a"  # capped: memory=512M processes=64
B = "bbbbbbbb-1111-4000-8000-00000000000b"  # the default caps
C = "cccccccc-1111-4000-8000-00000000000c"  # --project-network-for C=host
KEYS = {"sk-iso-a-000000000000": A, "sk-iso-b-000000000000": B, "sk-iso-c-000000000000": C}
KEY = {project: key for key, project in KEYS.items()}

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.fail("these tests need root: the server switches users only as root")


def _cgroup_base(controller: str, server_pid: int) -> Path:
    """Where a server started by this process makes its cgroups in one v1 hierarchy."""
    own = _own_cgroups()[controller]
    return Path("/sys/fs/cgroup", controller, own.lstrip("/"), f"cocalc-tasks-{server_pid}")


#: Starts 200 sleeping processes, prints how many started and how many were refused, and
#: stops those that started.
SPAWN_200 = (
    "import subprocess\nprocs, refused = [], 0\n"
    "for _ in range(200):\n"
    "    try:\n        procs.append(subprocess.Popen(['sleep', '600']))\n"
    "    except OSError:\n        refused += 1\n"
    "print(len(procs), refused)\n"
    "for p in procs:\n    p.kill(); p.wait()"
)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback that counts who got through."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append("x")
            conn.sendall(b"HOST-SERVICE\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(
        data_dir=tmp_path_factory.mktemp("isolation"),
        api_keys=[SECRET_KEY],
        project_keys=KEYS,
        args=[
            "--sandbox",
            "bwrap",
            "--pool-size",
            "1",
            "--project-limits-for",
            f"{A}=memory=512M processes=64",
            "--project-network-for",
            f"{C}=host",
            "--cell-timeout",
            "20",
            "--project-cell-timeout",
            "20",
        ],
    ) as srv:
        yield srv


def _client(server: LocalServer, project: str) -> CocalcClient:
    return CocalcClient(KEY[project], server.url, project_id=project, timeout=(5, 120))


def _kernel(server: LocalServer, project: str, code: str) -> str:
    with _client(server, project) as c:
        return c.execute(code, "python3").stdout


def _job(server: LocalServer, project: str, command: str) -> str:
    with _client(server, project) as c:
        done = c.exec(command, err_on_exit=False, timeout=60)
    return done.stdout + done.stderr


SHADOW = (
    "try:\n    open('/etc/shadow').read(); print('READ')\n"
    "except OSError as e:\n    print(type(e).__name__)"
)


def test_etc_shadow_is_closed_to_kernels_jobs_and_notebook_runs(server: LocalServer) -> None:
    assert Path("/etc/shadow").read_text()  # the server (root) can read it
    assert _kernel(server, A, SHADOW).strip() == "PermissionError"
    assert "Permission denied" in _job(server, A, "cat /etc/shadow")
    with _client(server, A) as c:
        ran = run_notebook(notebook([(SHADOW, [])]), client=c, timeout=120)
    assert ran.ok and ran.cells[0].value == "PermissionError"


def _connect(port: int) -> str:
    return (
        "import socket\ns = socket.socket(); s.settimeout(3)\n"
        f"try:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED', s.recv(20))\n"
        "except OSError as e:\n    print(type(e).__name__)"
    )


def test_a_project_reaches_nothing_on_the_hosts_loopback(
    server: LocalServer, listener: int
) -> None:
    server_port = int(server.url.rsplit(":", 1)[1])
    for port in (listener, server_port):
        assert _kernel(server, A, _connect(port)).strip() == "ConnectionRefusedError"
        got = _job(server, B, f"{sys.executable} -c {shlex.quote(_connect(port))}")
        assert "ConnectionRefusedError" in got or "Connection refused" in got, got
    # the global pool too
    with CocalcClient(SECRET_KEY, server.url) as c:
        assert c.execute(_connect(listener), "python3").stdout.strip() == "ConnectionRefusedError"


def test_host_mode_reaches_the_listener(server: LocalServer, listener: int) -> None:
    assert _kernel(server, C, _connect(listener)).strip() == "CONNECTED b'HOST-SERVICE\\n'"


def test_files_a_kernel_writes_belong_to_the_projects_own_user(server: LocalServer) -> None:
    users = ProjectUsers()
    owner_a, owner_b = users.owner(A), users.owner(B)
    assert owner_a is not None and owner_b is not None and owner_a.uid != owner_b.uid
    printed = _kernel(
        server,
        A,
        "import os\nopen(os.path.expanduser('~/mine.txt'), 'w').write('x')\nprint(os.getuid())",
    )
    assert int(printed) == owner_a.uid
    written = server.data_dir / "projects" / A / "mine.txt"
    assert (written.stat().st_uid, written.stat().st_gid) == (owner_a.uid, owner_a.gid)
    assert _job(server, B, "id -u").strip() == str(owner_b.uid)
    with CocalcClient(SECRET_KEY, server.url) as c:  # the global pool has a uid of its own
        pool_uid = int(c.execute("import os; print(os.getuid())", "python3").stdout)
    assert pool_uid == users.start and pool_uid not in (0, owner_a.uid, owner_b.uid)


def test_200_sleeping_processes_under_a_cap_of_64(server: LocalServer) -> None:
    assert server.process is not None
    pids_max = _cgroup_base("pids", server.process.pid) / A / "pids.max"
    assert pids_max.read_text().strip() == "64"
    started, refused = map(int, _kernel(server, A, SPAWN_200).split())
    assert started + refused == 200
    assert 0 < started < 64 and refused > 136
    assert _kernel(server, B, "print(6 * 7)").strip() == "42"  # another project is unharmed
    assert _kernel(server, A, "print(6 * 7)").strip() == "42"  # and A works again


def test_800_mb_under_a_cap_of_512m_kills_the_kernel_and_b_answers_throughout(
    server: LocalServer,
) -> None:
    assert server.process is not None
    limit = _cgroup_base("memory", server.process.pid) / A / "memory.limit_in_bytes"
    assert int(limit.read_text()) == 512 << 20
    answers: list[str] = []
    stop = threading.Event()

    def b_answers() -> None:
        with _client(server, B) as c:
            while not stop.is_set():
                answers.append(c.execute("print(1 + 1)", "python3").stdout.strip())

    thread = threading.Thread(target=b_answers)
    thread.start()
    try:
        with pytest.raises(CocalcKernelDiedError, match=r"memory cap: memory=512M"):
            _kernel(server, A, "big = b'x' * (800 << 20)\nprint(len(big))")
        killed = _job(server, A, f"{sys.executable} -c \"b = b'x' * (800 << 20); print(len(b))\"")
        assert "the project reached its memory cap (memory=512M processes=64)" in killed
        assert str(800 << 20) not in killed
    finally:
        stop.set()
        thread.join()
    assert answers and set(answers) == {"2"}
    assert _kernel(server, A, "print(6 * 7)").strip() == "42"  # the next call works
    # /metrics counts both kills.
    metrics = requests.get(server.url + "/metrics", auth=(SECRET_KEY, ""), timeout=30).text
    assert 'cocalc_tasks_memory_kills_total{what="kernel"} 1.0' in metrics
    assert 'cocalc_tasks_memory_kills_total{what="job"} 1.0' in metrics


def test_cgroups_go_when_an_area_is_reaped_and_when_the_server_stops(
    tmp_path: Path,
) -> None:
    project = "dddddddd-1111-4000-8000-00000000000d"
    server = LocalServer(
        data_dir=tmp_path,
        api_keys=[SECRET_KEY],
        args=["--sandbox", "bwrap", "--pool-size", "0", "--area-idle-seconds", "2"],
    ).start()
    try:
        assert server.process is not None
        memory = _cgroup_base("memory", server.process.pid)
        pids = _cgroup_base("pids", server.process.pid)
        with CocalcClient(SECRET_KEY, server.url, project_id=project) as c:
            assert c.execute("print(3)", "python3").stdout.strip() == "3"
        assert (memory / project).is_dir() and (pids / project).is_dir()
        deadline = time.monotonic() + 30
        while (memory / project).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (memory / project).exists() and not (pids / project).exists()
        with CocalcClient(SECRET_KEY, server.url, project_id=project) as c:  # back again
            assert c.execute("print(4)", "python3").stdout.strip() == "4"
        assert (memory / project).is_dir()
        assert memory.exists() and pids.exists()
    finally:
        server.stop()
    assert not memory.exists() and not pids.exists()


def _start(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``serve`` that stops at start-up (or is stopped once it listens); its output as
    ``stderr``."""
    command = [
        sys.executable, "-m", "cocalc_tasks", "serve", "--port", "0", "--pool-size", "0",
        "--kernels", "", "--data-dir", str(tmp_path / "data"), *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "listening on" in line:
            process.terminate()
    process.wait(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, "", "".join(lines))


def test_no_sandbox_with_project_keys_is_a_start_up_error_unless_asked_for(
    tmp_path: Path,
) -> None:
    no_bwrap = {"PATH": str(tmp_path)}  # nothing there: no bwrap
    keys = ["--project-key", f"sk-iso-x-000000000000={A}"]
    refused = _start(tmp_path, *keys, env=no_bwrap)
    assert refused.returncode == 2
    assert "refusing to serve project keys" in refused.stderr
    assert "bwrap is not installed" in refused.stderr and "--sandbox none" in refused.stderr
    several = _start(
        tmp_path, "--api-key", "sk-one-000000000000", "--api-key", "sk-two-0000000", env=no_bwrap
    )
    assert several.returncode == 2 and "refusing" in several.stderr
    explicit = _start(tmp_path, *keys, "--sandbox", "none", env=no_bwrap)
    assert "listening on" in explicit.stderr and "refusing" not in explicit.stderr
    single = _start(tmp_path, "--api-key", "sk-one-000000000000", env=no_bwrap)
    assert "listening on" in single.stderr and "projects are NOT isolated" in single.stderr


def test_sandbox_bwrap_without_user_namespaces_says_why(tmp_path: Path) -> None:
    """In a user namespace of our own that allows no nested ones (root mapped alone)."""
    script = (
        "echo 0 > /proc/sys/user/max_user_namespaces && exec "
        + " ".join(
            [sys.executable, "-m", "cocalc_tasks", "serve", "--port", "0", "--sandbox", "bwrap"]
        )
        + f" --kernels '' --pool-size 0 --data-dir {tmp_path / 'data'}"
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        "--sandbox bwrap: bubblewrap cannot run here: user namespaces are unavailable"
        in done.stderr
    )
    assert "max_user_namespaces is 0" in done.stderr


class _NoCgroups(LocalServer):
    """A server in a mount namespace of its own where the cgroup hierarchies are read-only."""

    def command(self) -> list[str]:
        remount = " && ".join(
            f"mount -o remount,bind,ro /sys/fs/cgroup/{name}" for name in ("memory", "pids")
        )
        script = f'{remount} && exec "$@"'
        unshare = ["unshare", "--mount", "--propagation", "private"]
        return [*unshare, "sh", "-c", script, "sh", *super().command()]


def test_without_a_writable_cgroup_processes_are_capped_per_project_uid(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with (
        _NoCgroups(
            data_dir=tmp_path / "data",
            api_keys=[SECRET_KEY],
            args=["--sandbox", "bwrap", "--pool-size", "0", "--project-limits", "processes=64"],
            log_file=log,
        ) as server,
        CocalcClient(SECRET_KEY, server.url, project_id=A) as c,
    ):
        started, refused = map(int, c.execute(SPAWN_200, "python3").stdout.split())
        assert 0 < started < 64 and started + refused == 200
        assert c.execute("print(6 * 7)", "python3").stdout.strip() == "42"
    text = log.read_text()
    assert text.count("no cgroup can be written here") == 1
    assert "memory is capped per process only" in text and "RLIMIT_NPROC" in text
