"""Keys, projects and path isolation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from cocalc_tasks import CocalcAuthError, CocalcClient, CocalcError, CocalcPermissionError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import OTHER_PROJECT, PROJECT_ID, PROJECT_KEY, start_server


def test_bad_key_for_a_project_is_not_signed_in(server: LocalServer) -> None:
    with CocalcClient("sk-wrong", server.url) as c, pytest.raises(CocalcAuthError) as info:
        c.execute("1", "python3", project_id=PROJECT_ID)
    assert info.value.server_message == (
        "account_id must be specified -- make sure you are signed in"
    )


def test_bad_key_in_the_global_pool_is_anonymous_like_cocalc(server: LocalServer) -> None:
    with CocalcClient("sk-wrong", server.url) as c:
        assert c.execute("print(1)", "python3", no_cache=True).stdout == "1\n"


def test_project_key_works_in_its_project_only(server: LocalServer) -> None:
    with CocalcClient(PROJECT_KEY, server.url) as c:
        result = c.execute(
            "import os; print(os.getcwd())",
            "python3",
            project_id=PROJECT_ID,
            path=".",
            no_cache=True,
        )
        assert result.stdout.strip().endswith(PROJECT_ID)
        with pytest.raises(CocalcPermissionError):
            c.execute("1", "python3", project_id=OTHER_PROJECT)
        with pytest.raises(CocalcPermissionError):
            c.kernels(project_id=OTHER_PROJECT)
        assert c.kernels(project_id=PROJECT_ID)


def test_account_key_reaches_any_project_and_files_persist(client: CocalcClient) -> None:
    client.execute(
        "open('note.txt', 'w').write('kept')",
        "python3",
        project_id=OTHER_PROJECT,
        path=".",
        no_cache=True,
    )
    again = client.execute(
        "print(open('note.txt').read())",
        "python3",
        project_id=OTHER_PROJECT,
        path=".",
        no_cache=True,
    )
    assert again.stdout == "kept\n"


def test_path_in_project_and_bash_cd(client: CocalcClient, server: LocalServer) -> None:
    client.execute(
        "import os; os.makedirs('work/sub', exist_ok=True)",
        "python3",
        project_id=PROJECT_ID,
        path=".",
        no_cache=True,
    )
    result = client.execute("pwd", "bash", project_id=PROJECT_ID, path="work/sub", no_cache=True)
    assert result.stdout.strip().endswith(f"{PROJECT_ID}/work/sub")


@pytest.mark.parametrize("path", ["..", "../..", "/etc", "work/../../x"])
def test_path_escape_is_refused(client: CocalcClient, path: str) -> None:
    with pytest.raises(CocalcError, match="outside the project directory"):
        client.execute("1", "python3", project_id=PROJECT_ID, path=path)


def test_symlink_escape_is_refused(client: CocalcClient, server: LocalServer) -> None:
    client.execute(
        f"import os; os.path.islink('out') or os.symlink({os.sep!r}, 'out')",
        "python3",
        project_id=PROJECT_ID,
        path=".",
        no_cache=True,
    )
    with pytest.raises(CocalcError, match="outside the project directory"):
        client.execute("1", "python3", project_id=PROJECT_ID, path="out/etc")


def test_missing_directory_is_a_clear_error(client: CocalcClient) -> None:
    with pytest.raises(CocalcError, match="not a directory"):
        client.execute("1", "python3", project_id=PROJECT_ID, path="no/such/dir")


def test_bearer_auth(server: LocalServer) -> None:
    body = {"input": "print(7)", "kernel": "python3", "project_id": PROJECT_ID, "noCache": True}
    ok = requests.post(
        server.url + "/api/v2/jupyter/execute",
        json=body,
        headers={"Authorization": f"Bearer {PROJECT_KEY}"},
        timeout=30,
    ).json()
    assert ok["output"] == [{"name": "stdout", "text": "7\n"}]
    digest = requests.post(
        server.url + "/api/v2/jupyter/execute",
        json=body,
        headers={"Authorization": "Digest abc"},
        timeout=30,
    ).json()
    assert digest == {"error": "account_id must be specified -- make sure you are signed in"}


def test_anonymous_off(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--no-anonymous", "--pool-size", "1", "--kernels", "python3")
    try:
        with CocalcClient(host=srv.url) as anon, pytest.raises(CocalcAuthError):
            anon.execute("1", "python3")
        with CocalcClient(host=srv.url) as anon, pytest.raises(CocalcAuthError):
            anon.kernels()
        with CocalcClient(SECRET_KEY, srv.url) as signed:
            result = signed.execute("print(3)", "python3")
            assert result.stdout == "3\n"
            assert signed.cached(result.hash) is not None
        # a hash-only lookup no longer answers before the auth check
        with CocalcClient(host=srv.url) as anon, pytest.raises(CocalcAuthError):
            anon.cached(result.hash)
    finally:
        srv.stop()


def test_a_projects_cached_result_is_only_a_hit_for_its_callers(server: LocalServer) -> None:
    """Anyone who can compute a hash (input + kernel + project id) must not read the output."""
    code = f"print('private {time.time()}')"
    with CocalcClient(SECRET_KEY, server.url) as owner:
        computed = owner.execute(code, "python3", project_id=PROJECT_ID)
        assert owner.cached(computed.hash) is not None
    with CocalcClient(host=server.url) as anon:
        assert anon.cached(computed.hash) is None
        # nor through a normal request naming no project... (a different hash anyway)
        assert anon.execute(code, "python3").hash != computed.hash
    with (
        CocalcClient(PROJECT_KEY, server.url) as own_key,
        CocalcClient("sk-not-a-key", server.url) as stranger,
    ):
        hit = own_key.cached(computed.hash)
        assert hit is not None and hit.stdout == computed.stdout
        assert stranger.cached(computed.hash) is None


@pytest.mark.parametrize(
    ("kernel", "code"),
    [
        ("python3", "import os\nfor k, v in sorted(os.environ.items()): print(k, v)"),
        ("bash", "env"),
    ],
)
def test_kernels_do_not_see_the_servers_keys(
    anonymous: CocalcClient, kernel: str, code: str
) -> None:
    # The fixture server gets its keys as COCALC_SERVER_API_KEYS / _PROJECT_KEYS (LocalServer
    # keeps them out of argv): anyone may run code, so none of that reaches a kernel.
    listing = anonymous.execute(code, kernel, no_cache=True).stdout
    assert "COCALC_JUPYTER_KERNELNAME" in listing  # the listing is real
    assert "COCALC_SERVER_" not in listing
    assert SECRET_KEY not in listing and PROJECT_KEY not in listing
