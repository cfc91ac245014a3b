"""Real SageMath (passagemath) through the local server: the `sage` extra, in .venv-sage."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient, CocalcUnknownKernelError, compute_hash
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY

pytestmark = pytest.mark.sage

ALIASES = [
    "--kernel-alias",
    "sage-9.8=sagemath",
    "--kernel-alias",
    "sage-10.4=sagemath",
    "--kernel-alias",
    "sage=sagemath",
]


def _sage_installed() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return "sagemath" in KernelSpecManager().find_kernel_specs()


if not _sage_installed():
    pytest.skip("the sagemath kernelspec is not installed (make sage-env)", allow_module_level=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module", params=["forked", "exec"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, home: Path
) -> Iterator[LocalServer]:
    """Every check runs on forked Sage kernels (the default) and on exec'd ones."""
    marker = home / ".marker"
    marker.touch()
    mode = [] if request.param == "forked" else ["--no-fork-kernels"]
    with LocalServer(
        data_dir=tmp_path_factory.mktemp("data"),
        api_keys=[SECRET_KEY],
        args=["--kernels", "sage-10.4", *ALIASES, *mode],
        env={"HOME": str(home)},
    ) as srv:
        srv.wait_for_pool("sagemath", 1, timeout=180)
        yield srv


@pytest.fixture
def client(server: LocalServer) -> Iterator[CocalcClient]:
    with CocalcClient(SECRET_KEY, server.url, timeout=(5, 120)) as c:
        yield c


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("factor(2023)", "7 * 17^2"),
        ("var('x'); integrate(x^2, x)", "1/3*x^3"),
        ("EllipticCurve([0,0,1,-1,0]).rank()", "1"),
        ("matrix(QQ,[[1,2],[3,4]]).det()", "-2"),
    ],
)
def test_the_four_sage_checks(client: CocalcClient, code: str, expected: str) -> None:
    result = client.execute(code, "sage-9.8", no_cache=True)
    assert result.outputs == [{"data": {"text/plain": expected}}]


def test_aliases_resolve_and_are_listed(client: CocalcClient) -> None:
    assert client.execute("factor(2023)", "sage", no_cache=True).text == "7 * 17^2"
    kernels = {k.name: k for k in client.kernels()}
    for alias in ("sage-9.8", "sage-10.4", "sage"):
        assert kernels[alias].language == "sage"
        assert kernels[alias].metadata is not None
        assert kernels[alias].metadata["alias_of"] == "sagemath"
    assert kernels["sagemath"].display_name.startswith("passagemath")
    with pytest.raises(CocalcUnknownKernelError):
        client.execute("1", "sage-0.1")


def test_cache_uses_the_callers_kernel_name(client: CocalcClient) -> None:
    code = "set_random_seed(); ZZ.random_element(10^30)"
    first = client.execute(code, "sage-10.4", no_cache=True)
    assert first.hash == compute_hash(code, "sage-10.4")
    again = client.execute(code, "sage-10.4")
    assert again.from_cache and again.text == first.text
    hit = client.cached(compute_hash(code, "sage-10.4"))
    assert hit is not None and hit.text == first.text
    assert client.cached(compute_hash(code, "sagemath")) is None
    fresh = client.execute(code, "sage-10.4", no_cache=True)
    assert fresh.text != first.text and not fresh.from_cache


def test_sage_history_and_errors(client: CocalcClient) -> None:
    result = client.execute("print(R(5) / 3)", "sage-10.4", history=["R = QQ"], no_cache=True)
    assert result.stdout == "5/3\n"
    error = client.execute("1/0", "sage-10.4", no_cache=True).error
    assert error is not None and error.ename == "ZeroDivisionError"


def test_nothing_written_to_home(client: CocalcClient, home: Path) -> None:
    client.execute("var('y'); integrate(y^3, y)", "sage-10.4", no_cache=True)
    assert [p.name for p in home.iterdir()] == [".marker"]


def test_cocalcs_sage_names_are_served_without_any_alias_option(tmp_path: Path) -> None:
    with (
        LocalServer(data_dir=tmp_path, args=["--kernels", "python3", "--pool-size", "0"]) as srv,
        CocalcClient(host=srv.url, timeout=(5, 120)) as c,
    ):
        listed = {spec.name: spec for spec in c.kernels()}
        for name in ("sage-9.8", "sage-10.4"):
            assert (listed[name].metadata or {}).get("alias_of") == "sagemath"
        assert c.execute("factor(2023)", "sage-9.8").text == "7 * 17^2"


def test_unknown_alias_target_is_a_startup_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cocalc_tasks",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--kernel-alias",
            "sage-10.4=sagemath-9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "sage-10.4=sagemath-9" in done.stderr and "sagemath" in done.stderr


PROJECT = "6e75dbf1-0342-4249-9dce-6b21648656e9"


def test_run_script_with_sage_prints_what_sage_prints(client: CocalcClient) -> None:
    """The flagship long-job path: a Sage script through the exec API, no cell limit."""
    from sage.all import factor  # the same computation in this process, for the expected text

    result = client.run_script("factor(2^255-1)", interpreter="sage", project_id=PROJECT)
    assert result.ok and result.stdout == f"{factor(2**255 - 1)}\n"
    assert result.stdout.startswith("7 * 31 * 103 * 151")


def test_sage_script_as_a_job_streams_its_output(client: CocalcClient) -> None:
    code = "for n in [2023, 2024, 2025]:\n    print(n, factor(n), flush=True)\n"
    job = client.submit_script(code, "sage", project_id=PROJECT, timeout=120)
    lines: list[str] = []
    result = client.wait(job, on_output=lambda s, t: lines.append(t), poll_interval=0.2)
    assert result.ok
    assert result.stdout == "2023 7 * 17^2\n2024 2^3 * 11 * 23\n2025 3^4 * 5^2\n"
    assert "".join(lines) == result.stdout
