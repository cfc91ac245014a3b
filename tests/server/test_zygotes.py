"""Kernels forked from a pre-imported zygote: the protocol, and what a forked kernel sees.

The zygote is driven directly with a throwaway ``python -m`` module (no kernel needed), then
through a running server with real kernels.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.jupyter.kernelspecs import KernelCatalog
from cocalc_tasks.server.local_server import LocalServer
from cocalc_tasks.server.processes.zygotes import (
    FORK_ENV_SWITCH,
    SAGE_KERNEL_MODULE,
    SINGLE_THREADED,
    ForkedProcess,
    ForkingKernelManager,
    ForkingProvisioner,
    Zygote,
    ZygoteError,
    Zygotes,
    thread_env,
)
from tests.conftest import SECRET_KEY
from tests.server.conftest import start_server
from tests.support.procs import _parent, cmdline, kernel_processes, processes_mentioning

PROBE = """\
import json, os, sys
json.dump({"cwd": os.getcwd(), "argv": sys.argv[1:], "env": os.environ.get("PROBE"),
           "path0": sys.path[0], "name": __name__}, open(sys.argv[1], "w"))
sys.exit(int(sys.argv[2]))
"""


def _run(body: Callable[[Zygote], Awaitable[Any]], *modules: str) -> Any:
    async def main() -> Any:
        zygote = Zygote(sys.executable, modules or ("json",), dict(os.environ), label="test")
        await zygote.start(30)
        try:
            return await body(zygote)
        finally:
            await zygote.close()

    return asyncio.run(main())


async def _exit_code(process: ForkedProcess, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (code := process.poll()) is None:
        assert time.monotonic() < deadline, "the forked process did not end"
        await asyncio.sleep(0.02)
    return code


def test_forked_module_gets_argv_cwd_env_and_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "probe_mod.py").write_text(PROBE)
    report = tmp_path / "report.json"

    async def body(zygote: Zygote) -> int:
        argv = [sys.executable, "-m", "probe_mod", str(report), "3"]
        process = await zygote.spawn(argv, {**os.environ, "PROBE": "yes"}, str(tmp_path))
        return await _exit_code(process)

    assert _run(body) == 3
    seen = json.loads(report.read_text())
    assert seen == {
        "cwd": str(tmp_path),
        "argv": [str(report), "3"],
        "env": "yes",
        "path0": str(tmp_path),
        "name": "__main__",
    }


def test_killed_child_reports_the_signal(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")

    async def body(zygote: Zygote) -> tuple[int, int]:
        argv = [sys.executable, "-m", "sleeper"]
        process = await zygote.spawn(argv, dict(os.environ), str(tmp_path))
        await asyncio.sleep(0.2)
        assert process.poll() is None
        process.kill()
        return process.pid, await _exit_code(process)

    pid, code = _run(body)
    assert code == -signal.SIGKILL
    assert not Path(f"/proc/{pid}").exists()


def test_closing_the_zygote_kills_its_children(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")

    async def body(zygote: Zygote) -> int:
        process = await zygote.spawn([sys.executable, "-m", "sleeper"], {}, str(tmp_path))
        await asyncio.sleep(0.2)
        return process.pid

    pid = _run(body)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_unimportable_module_is_a_start_error() -> None:
    with pytest.raises(ZygoteError, match="no_such_module_xyz"):
        _run(lambda z: asyncio.sleep(0), "json", "no_such_module_xyz")


def test_optional_module_may_be_missing() -> None:
    assert _run(lambda z: asyncio.sleep(0, z.alive), "json", "?no_such_module_xyz") is True


def test_module_that_starts_threads_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "threaded_mod.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(ZygoteError, match="forking is not safe"):
        _run(lambda z: asyncio.sleep(0), "threaded_mod")


class _DeadZygote:
    async def spawn(self, *args: Any, **kwargs: Any) -> ForkedProcess:
        raise ZygoteError("zygote exited")


class _ServersWithDeadZygote:
    sage_threads = 1

    async def for_command(self, argv: Any, area: Any = None, env: Any = None) -> _DeadZygote:
        return _DeadZygote()


def test_failed_fork_falls_back_to_exec(tmp_path: Path) -> None:
    async def main() -> tuple[bool, bool]:
        km = ForkingKernelManager(
            zygotes=_ServersWithDeadZygote(),
            kernel_spec_manager=KernelCatalog().manager,
            kernel_name="python3",
            transport="ipc",
            ip=str(tmp_path / "ipc"),
            connection_file=str(tmp_path / "kernel.json"),
        )
        await km.start_kernel(cwd=str(tmp_path))
        try:
            assert isinstance(km.provisioner, ForkingProvisioner)  # chosen by its entry point
            return isinstance(km.provisioner.process, subprocess.Popen), await km.is_alive()
        finally:
            await km.shutdown_kernel(now=True)

    assert asyncio.run(main()) == (True, True)


def test_which_commands_are_forked() -> None:
    """ipykernel, bash and Sage kernels; Sage only with one BLAS thread; never a kernelspec
    whose env says COCALC_TASKS_FORK=0."""
    servers = Zygotes({})
    python, sage = ["python", "-m", "ipykernel_launcher"], ["python3", "-m", SAGE_KERNEL_MODULE]
    assert servers.forkable([*python, "-f", "c.json"]) and servers.forkable(sage)
    assert not servers.forkable(["python", "my_kernel.py"])
    assert not servers.forkable(python, {FORK_ENV_SWITCH: "0"})
    assert servers.forkable(python, {FORK_ENV_SWITCH: "1"})
    assert not Zygotes({}, sage_threads=4).forkable(sage)
    assert Zygotes({}, sage_threads=4).forkable(python)
    assert thread_env(SAGE_KERNEL_MODULE, 1) == SINGLE_THREADED
    assert thread_env(SAGE_KERNEL_MODULE, 4)["OPENBLAS_NUM_THREADS"] == "4"
    assert thread_env(SAGE_KERNEL_MODULE, 0) == {} == thread_env("ipykernel_launcher", 1)


# -- through the server -------------------------------------------------------------------------
def _kernel_parents(data_dir: Path) -> list[str]:
    return [cmdline(_parent(pid)) for pid in kernel_processes(data_dir)]


def test_server_kernels_are_forked(server: LocalServer) -> None:
    parents = _kernel_parents(server.data_dir)
    assert parents and all("zygote.py" in p for p in parents)


def test_no_fork_option_execs_kernels(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--no-fork-kernels", "--kernels", "python3")
    try:
        srv.wait_for_pool("python3", 2)
        parents = _kernel_parents(tmp_path)
        # the server's children (or, in a sandbox, bwrap's): never a zygote's
        assert len(parents) == 2 and all("zygote.py" not in p for p in parents)
        with CocalcClient(SECRET_KEY, srv.url) as c:
            assert c.execute("2+3", "python3", no_cache=True).text == "5"
    finally:
        srv.stop()


def test_forked_kernels_do_not_share_random_state(client: CocalcClient) -> None:
    code = "import random; random.random()"
    values = {client.execute(code, "python3", no_cache=True).text for _ in range(3)}
    assert len(values) == 3


def test_forked_kernel_runs_subprocesses_and_keeps_its_own_environment(
    client: CocalcClient,
) -> None:
    code = (
        "import os, subprocess, sys\n"
        "out = subprocess.run(['sh', '-c', 'echo $COCALC_JUPYTER_KERNELNAME'], "
        "capture_output=True, text=True, check=True).stdout.strip()\n"
        "print(out, sys.argv[0].endswith('ipykernel_launcher.py'))"
    )
    assert client.execute(code, "python3", no_cache=True).stdout == "python3 True\n"


def test_server_survives_a_killed_zygote(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--kernels", "python3")
    try:
        srv.wait_for_pool("python3", 2)
        zygotes = {_parent(pid) for pid in kernel_processes(tmp_path)}
        assert len(zygotes) == 1
        os.kill(zygotes.pop(), signal.SIGKILL)
        time.sleep(1)  # a call at the very instant of the kill may meet a dying kernel
        with CocalcClient(SECRET_KEY, srv.url, timeout=(5, 60)) as c:
            for i in range(4):  # pooled kernels die with their zygote; calls still succeed
                assert c.execute(f"{i} * 7", "python3", no_cache=True).text == str(i * 7)
        srv.wait_for_pool("python3", 2)
        parents = _kernel_parents(tmp_path)
        assert parents and all("zygote.py" in p for p in parents)  # a new zygote took over
    finally:
        srv.stop()


def test_killed_server_leaves_no_kernel(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--kernels", "python3")
    srv.wait_for_pool("python3", 2)
    assert srv.process is not None
    assert len(kernel_processes(tmp_path)) == 2
    srv.process.kill()  # no clean shutdown: the zygote sees its stdin close
    srv.process.wait(10)
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []  # neither kernels nor their zygote
    srv.stop()


# A stand-in zygote: says it is ready, then answers each request with a malformed line and
# (when told to) a real reply.
_FAKE_ZYGOTE = """
import json, os, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    print("{not json", flush=True)
    if sys.argv[1] == "answer":
        print(json.dumps({"id": json.loads(line)["id"], "pid": os.getpid()}), flush=True)
"""


async def _fake_zygote(mode: str) -> Zygote:
    zygote = Zygote(sys.executable, [], dict(os.environ))
    zygote.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FAKE_ZYGOTE,
        mode,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert zygote.process.stdout is not None
    assert json.loads(await zygote.process.stdout.readline()) == {"ready": True}
    zygote._reader = asyncio.ensure_future(zygote._read())
    return zygote


def test_a_zygote_that_never_answers_is_stopped_not_waited_for() -> None:
    async def scenario() -> None:
        zygote = await _fake_zygote("silent")
        started = time.monotonic()
        with pytest.raises(ZygoteError, match=r"did not answer within 0\.5 s"):
            await zygote.spawn([sys.executable, "-m", "ipykernel_launcher"], {}, "/", timeout=0.5)
        assert time.monotonic() - started < 5
        assert not zygote.alive  # replaced on the next start

    asyncio.run(scenario())


def test_a_malformed_line_does_not_end_the_reader() -> None:
    async def scenario() -> None:
        zygote = await _fake_zygote("answer")
        try:
            for _ in range(2):
                forked = await zygote.spawn(
                    [sys.executable, "-m", "ipykernel_launcher"], {}, "/", timeout=5
                )
                assert forked.pid == zygote.process.pid  # type: ignore[union-attr]
            started = time.monotonic()
            with pytest.raises(subprocess.TimeoutExpired):  # still running: wait honours timeout
                forked.wait(timeout=0.2)
            assert 0.2 <= time.monotonic() - started < 2
        finally:
            await zygote.close()

    asyncio.run(scenario())


def test_the_provisioner_is_registered_and_named_only_where_a_spec_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import entry_points

    (found,) = entry_points(group="jupyter_client.kernel_provisioners", name="cocalc-tasks")
    assert found.load() is ForkingProvisioner
    spec_dir = tmp_path / "kernels" / "custom"
    spec_dir.mkdir(parents=True)
    own = {"provisioner_name": "local-provisioner", "config": {}}
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "custom",
                "language": "python",
                "metadata": {"kernel_provisioner": own},
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    manager = KernelCatalog().manager
    assert manager.get_kernel_spec("custom").metadata["kernel_provisioner"] == own
    named = manager.get_kernel_spec("python3").metadata["kernel_provisioner"]
    assert named["provisioner_name"] == "cocalc-tasks"
