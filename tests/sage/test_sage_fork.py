"""Forked Sage kernels: each is a fork of one pre-imported Sage, and owns what a process owns.

A Sage zygote imports ``sage.all`` once with single-threaded BLAS and OpenMP; each kernel is a
fork of it. These tests check that the children are independent (random seeds, Maxima, state,
temporary directories), that interrupts reach PARI, and that the zygote has one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

pytestmark = pytest.mark.sage

ALIASES = ["--kernel-alias", "sage-9.8=sagemath"]
ZYGOTE = Path(__file__).parents[2] / "cocalc_tasks/server/processes/zygote.py"
#: What a kernel reports about itself: pid, its parent's command line and thread count.
WHO = (
    "import os, json\n"
    "ppid = os.getppid()\n"
    "print(json.dumps({'pid': os.getpid(), 'ppid': ppid,\n"
    "    'parent': open(f'/proc/{ppid}/cmdline').read().replace(chr(0), ' '),\n"
    "    'parent_threads': len(os.listdir(f'/proc/{ppid}/task'))}))"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(
        data_dir=tmp_path_factory.mktemp("data"),
        api_keys=[SECRET_KEY],
        # The default per-cell limit: a fresh kernel's first Maxima call starts Maxima, 4-6 s on
        # a 2-core machine, and the PARI test below is interrupted at this limit anyway.
        args=["--kernels", "sage-9.8", *ALIASES, "--cell-timeout", "15"],
    ) as srv:
        srv.wait_for_pool("sagemath", 1, timeout=180)
        yield srv


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(SECRET_KEY, server.url, timeout=(5, 120)) as c:
        yield c


def run(client: CocalcClient, code: str) -> str:
    """Run ``code`` in a fresh Sage kernel (no cache) and return its text."""
    result = client.execute(f"{code}\n# {uuid.uuid4().hex}", "sage-9.8", no_cache=True)
    assert result.error is None, result.error
    return result.text or result.stdout


def test_sage_kernels_are_forked_from_a_single_threaded_zygote(client: CocalcClient) -> None:
    me = json.loads(run(client, WHO))
    assert "zygote.py" in me["parent"] and "sage.all" in me["parent"]
    assert me["parent_threads"] == 1  # what the zygote forked from: one thread, no BLAS pool
    assert run(client, "factor(2023)") == "7 * 17^2"
    blas = run(client, "import os; os.environ.get('OPENBLAS_NUM_THREADS')")
    assert blas == "'1'"


def test_no_forked_kernel_shells_out_for_sages_package_systems(tmp_path: Path) -> None:
    """Sage fills its package-systems cache lazily, with ``sage-guess-package-system`` and
    ``sage -p``/``sage -pip`` (a bash and a Python start each when Sage's ``bin/`` is on
    ``PATH``). The zygote fills it once: kernels forked after it never run them. Stand-ins for
    the two programs on ``PATH`` log each run."""
    bin_dir, runs = tmp_path / "bin", tmp_path / "runs.log"
    bin_dir.mkdir()
    for name in ("sage", "sage-guess-package-system"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {runs}\nexit 1\n')
        script.chmod(0o755)
    with (
        LocalServer(
            data_dir=tmp_path / "data",
            api_keys=[SECRET_KEY],
            args=["--kernels", "sage-9.8", *ALIASES, "--sandbox", "none", "--pool-size", "1"],
            env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        ) as srv,
        CocalcClient(SECRET_KEY, srv.url, timeout=(5, 120)) as c,
    ):
        srv.wait_for_pool("sagemath", 1, timeout=180)
        at_start = runs.read_text().splitlines()
        assert at_start, "the zygote did not look for package systems"
        for _ in range(3):
            assert run(c, "factor(2023)") == "7 * 17^2"
        assert run(c, "import sage.features as f; len(f._cache_package_systems) >= 0") == "True"
        assert runs.read_text().splitlines() == at_start  # no kernel ran them again


def test_fifty_forked_kernels_are_seeded_apart(client: CocalcClient) -> None:
    code = "import os, json; print(json.dumps([os.getpid(), str(random()), str(ZZ.random_element(10^30))]))"
    rows = [json.loads(run(client, code)) for _ in range(50)]
    pids, floats, integers = zip(*rows, strict=True)
    assert len(set(pids)) == 50  # fifty kernels
    assert len(set(floats)) == 50 and len(set(integers)) == 50


def test_maxima_in_two_concurrent_kernels_and_no_state_carried_over(
    client: CocalcClient,
) -> None:
    code = "y = var('y'); maxima.eval('zz: 42'); integrate(y^{n} * sin(y), y)"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: run(client, code.format(n=n)), (1, 2)))
    assert results == [
        "-y*cos(y) + sin(y)",
        "-(y^2 - 2)*cos(y) + 2*y*sin(y)",
    ]
    after = run(client, "('y' in globals(), maxima.eval('zz'))")
    assert after == "(False, 'zz')"  # neither the variable nor Maxima's state came along
    assert run(client, "a = 5; reset(); 'a' in globals()") == "False"


def test_each_kernel_has_its_own_temporary_directory(client: CocalcClient) -> None:
    code = (
        "import sage.misc.temporary_file as t, os\n"
        "path = t.tmp_filename(); open(path, 'w').write('x')\n"
        "(t.TMP_DIR_FILENAME_BASE.name, os.path.exists(path))"
    )
    first, second = run(client, code), run(client, code)
    assert first != second and first.endswith(", True)") and second.endswith(", True)")


def test_a_long_pari_computation_is_interrupted_and_the_pool_recovers(
    client: CocalcClient,
) -> None:
    result = client.execute(
        f"pari('factor(2^1023 + 1)')  # {uuid.uuid4().hex}", "sage-9.8", no_cache=True
    )
    assert result.error is not None and result.error.ename == "KeyboardInterrupt", result.outputs
    assert run(client, "factor(2023)") == "7 * 17^2"


def test_the_zygote_refuses_to_fork_with_a_blas_pool() -> None:
    """Without single-threaded BLAS, importing Sage leaves OpenBLAS's pool behind: the zygote
    says so and exits, and the server would exec Sage instead."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")} | {
        "OPENBLAS_NUM_THREADS": "2"
    }
    done = subprocess.run(
        [sys.executable, str(ZYGOTE), "sage.all"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    message = json.loads(done.stdout.splitlines()[0])
    assert "threads" in message["error"] and "forking is not safe" in message["error"]


def test_sage_threads_above_one_exec_sage(tmp_path: Path) -> None:
    with LocalServer(
        data_dir=tmp_path,
        api_keys=[SECRET_KEY],
        args=["--kernels", "sage-9.8", *ALIASES, "--sage-threads", "2"],
    ) as srv:
        srv.wait_for_pool("sagemath", 1, timeout=180)
        with CocalcClient(SECRET_KEY, srv.url, timeout=(5, 120)) as c:
            me = json.loads(run(c, WHO))
            threads = run(c, "import os; os.environ.get('OPENBLAS_NUM_THREADS')")
    assert "zygote.py" not in me["parent"] and threads == "'2'"
