"""The API log and CoCalc's hourly quotas, through a real server with real kernels.

The server here has tiny quotas (2 s of compute per 4 s) so that a test reaches them in a few
seconds; the defaults' exact messages are checked by filling the log of a default server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.errors import CocalcQuotaError
from cocalc_tasks.server.jupyter.quotas import SITE_USAGE_SECONDS
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY, load_fixture
from tests.server.conftest import PROJECT_ID

OTHER_KEY = "sk-OTHERACCOUNTkey4567890"
PERIOD = 4.0
ARGS = [
    "--kernels",
    "python3",
    "--pool-size",
    "2",
    "--quota-anonymous",
    "1",
    "--quota-account",
    "2",
    "--quota-site",
    "0",
    "--quota-period",
    str(PERIOD),
]


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "state.sqlite3") as db:
        return db.execute(sql, params).fetchall()


@pytest.fixture
def quota_server(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(
        data_dir=tmp_path / "data", api_keys=[SECRET_KEY, OTHER_KEY], args=ARGS
    ) as server:
        server.wait_for_pool("python3", 2)
        yield server


def test_an_anonymous_address_over_its_quota_gets_cocalcs_message_and_cache_hits_stay_free(
    quota_server: LocalServer,
) -> None:
    with CocalcClient(host=quota_server.url, retries=0) as anonymous:
        first = anonymous.execute("import time; time.sleep(2.1); print('slow')", "python3")
        assert first.stdout == "slow\n"
        with pytest.raises(CocalcQuotaError) as info:
            anonymous.execute("print('refused')", "python3")
        assert str(info.value).startswith(
            "You may use at most 1 seconds of compute time per 4 seconds. "
            "Sign in to increase your quota."
        )
        assert info.value.transient
        again = anonymous.execute("import time; time.sleep(2.1); print('slow')", "python3")
        assert again.from_cache and again.stdout == "slow\n"  # a hit costs nothing
        # A key has its own quota, untouched by the anonymous address's usage.
        with CocalcClient(host=quota_server.url, api_key=SECRET_KEY) as signed_in:
            assert signed_in.execute("print(6 * 7)", "python3").stdout == "42\n"
        time.sleep(PERIOD)  # the window rolls on
        assert anonymous.execute("print('later')", "python3").stdout == "later\n"


def test_each_key_has_its_own_quota_and_projects_have_none(quota_server: LocalServer) -> None:
    with (
        CocalcClient(host=quota_server.url, api_key=SECRET_KEY, retries=0) as a,
        CocalcClient(host=quota_server.url, api_key=OTHER_KEY, retries=0) as b,
    ):
        a.execute("import time; time.sleep(3.1)", "python3")
        with pytest.raises(CocalcQuotaError, match="at most 2 seconds of compute time per 4 sec"):
            a.execute("print(1)", "python3")
        with pytest.raises(CocalcQuotaError) as info:
            a.execute("print(2)", "python3")
        assert "Please try again later or do this computation in a project." in str(info.value)
        assert b.execute("print(3)", "python3").stdout == "3\n"  # another key: its own
        # In a project there is no quota, as on CoCalc.
        assert a.execute("print(4)", "python3", project_id=PROJECT_ID).stdout == "4\n"


def test_the_log_has_every_call_with_the_callers_identity_and_never_the_key(
    quota_server: LocalServer,
) -> None:
    data = quota_server.data_dir
    with CocalcClient(host=quota_server.url, api_key=SECRET_KEY) as c:
        c.execute("print('logged')", "python3", tag="nightly-report")
        c.execute("print('logged')", "python3", tag="nightly-report")  # a cache hit
        c.execute("print('p')", "python3", project_id=PROJECT_ID, path=".")
        with pytest.raises(Exception, match="Unable to Spawn"):
            c.execute("1", "no-such-kernel")
    with CocalcClient(host=quota_server.url, api_key=SECRET_KEY, api="hub") as hub:
        assert hub.execute("print('hub')", "python3").stdout == "hub\n"
    requests.post(quota_server.url + "/api/v2/jupyter/execute", json={"hash": "0" * 40}, timeout=30)
    deadline = time.monotonic() + 10  # rows are written just after each answer
    while len(rows(data, "SELECT id FROM jupyter_api_log")) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = rows(
        data,
        "SELECT route, account_id, anonymous_id, project_id, path, kernel, tag, cached, "
        "total_time_s, error, replica FROM jupyter_api_log ORDER BY id",
    )
    assert [(r[0], r[7]) for r in logged] == [
        ("v2", 0),
        ("v2", 1),
        ("v2", 0),
        ("v2", 0),
        ("hub", 0),
        ("v2", 0),  # the anonymous hash lookup that missed
    ]
    account = logged[0][1]
    assert account and account != SECRET_KEY and {r[1] for r in logged[:5]} == {account}
    assert logged[5][1:3] == (None, "127.0.0.1")
    assert logged[0][6] == "nightly-report" and logged[2][3:5] == (PROJECT_ID, ".")
    assert logged[3][5] == "no-such-kernel" and "Unable to Spawn" in logged[3][9]
    assert all(r[8] >= 0 for r in logged) and logged[0][8] > logged[1][8]
    assert {r[10] for r in logged} == {f"{_hostname()}:{quota_server.url.rsplit(':', 1)[1]}"}
    # The key itself is in no row of any table.
    dump = "\n".join(
        repr(row)
        for (table,) in rows(data, "SELECT name FROM sqlite_master WHERE type = 'table'")
        for row in rows(data, f"SELECT * FROM {table}")  # noqa: S608 - the file's own tables
    )
    assert SECRET_KEY not in dump and "sk-" not in dump


def _hostname() -> str:
    import socket

    return socket.gethostname()


def test_cocalcs_default_quotas_and_exact_messages(tmp_path: Path) -> None:
    """Defaults: 180 s per anonymous address, 900 s per key, 18000 s for the site, per hour.
    The log is filled as if the callers had used that much."""
    data = tmp_path / "data"
    keys = [SECRET_KEY, OTHER_KEY]
    with LocalServer(data_dir=data, api_keys=keys, args=["--kernels", "python3"]) as srv:
        with CocalcClient(host=srv.url, api_key=SECRET_KEY) as c:
            c.execute("print(1)", "python3")  # its row names the key's account id
        deadline = time.monotonic() + 10  # written just after the answer
        while not (logged := rows(data, "SELECT account_id FROM jupyter_api_log")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        account = logged[0][0]

        def use(seconds: float, account_id: str | None, anonymous_id: str | None) -> None:
            now = time.time()
            rows(
                data,
                "INSERT INTO jupyter_api_log (created, expire, replica, route, account_id, "
                "anonymous_id, cached, total_time_s) VALUES (?, ?, 'x', 'v2', ?, ?, 0, ?)",
                (now, now + 3600, account_id, anonymous_id, seconds),
            )

        def refusal(key: str | None) -> Any:
            body = requests.post(
                srv.url + "/api/v2/jupyter/execute",
                json={"input": "print(2)", "kernel": "python3", "noCache": True},
                auth=(key, "") if key else None,
                timeout=60,
            ).json()
            return body

        use(180.0, None, "127.0.0.1")  # exactly the quota: the check is usage > quota
        assert refusal(None).get("output") is not None
        use(1.0, None, "127.0.0.1")
        assert refusal(None) == load_fixture("error_quota_anonymous.json")
        use(899.5, account, None)
        assert refusal(SECRET_KEY).get("output") is not None
        use(2.0, account, None)  # 901 and a bit
        assert refusal(SECRET_KEY) == load_fixture("error_quota_account.json")
        use(18_000.0, None, "10.1.2.3")
        time.sleep(SITE_USAGE_SECONDS)  # the site's sum is re-read at most this often
        with (
            CocalcClient(host=srv.url, api_key=OTHER_KEY, retries=0) as other,
            pytest.raises(CocalcQuotaError) as info,
        ):
            other.execute("print(3)", "python3", no_cache=True)
        assert str(info.value).startswith(
            "There is too much overall usage of code evaluation right now.  Please try again "
            "later or do this computation in a project."
        )
