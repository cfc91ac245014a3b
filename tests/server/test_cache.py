"""Result cache: hits, noCache, hash-only lookup, exceptions cached, errors not, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocalc_tasks import CocalcClient, CocalcUnknownKernelError, compute_hash
from tests.conftest import SECRET_KEY
from tests.server.conftest import start_server

RANDOM = "import uuid; print(uuid.uuid4())"


def test_hit_returns_id_and_original_output(client: CocalcClient) -> None:
    code = RANDOM + "  # cache-hit"
    first = client.execute(code, "python3", no_cache=True)
    second = client.execute(code, "python3")
    assert not first.from_cache
    assert second.from_cache and second.cache_id is not None
    assert second.stdout == first.stdout and second.created == first.created


def test_no_cache_recomputes_and_replaces(client: CocalcClient) -> None:
    code = RANDOM + "  # no-cache"
    first = client.execute(code, "python3", no_cache=True)
    second = client.execute(code, "python3", no_cache=True)
    assert second.stdout != first.stdout and not second.from_cache
    assert client.execute(code, "python3").stdout == second.stdout


def test_hash_only_lookup(client: CocalcClient, anonymous: CocalcClient) -> None:
    code = RANDOM + "  # lookup"
    computed = client.execute(code, "python3", history=["import os"], no_cache=True)
    digest = compute_hash(code, "python3", ["import os"])
    assert computed.hash == digest
    hit = anonymous.cached(digest)  # needs no key, as on CoCalc
    assert hit is not None and hit.stdout == computed.stdout and hit.cache_id is not None
    assert anonymous.cached("0" * 40) is None


def test_kernel_name_case_and_spaces_share_the_hash(client: CocalcClient) -> None:
    code = RANDOM + "  # case"
    first = client.execute(code, "python3", no_cache=True)
    assert client.execute(code, " Python3 ").stdout == first.stdout


def test_user_exceptions_are_cached_errors_are_not(client: CocalcClient) -> None:
    code = "import uuid; raise ValueError(str(uuid.uuid4()))"
    first = client.execute(code, "python3", no_cache=True)
    again = client.execute(code, "python3")
    assert again.from_cache and again.error == first.error
    with pytest.raises(CocalcUnknownKernelError):
        client.execute("1", "no-such-kernel")
    assert client.cached(compute_hash("1", "no-such-kernel")) is None


def test_cache_survives_restart(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--pool-size", "1", "--kernels", "python3")
    try:
        with CocalcClient(SECRET_KEY, srv.url) as c:
            before = c.execute(RANDOM, "python3", no_cache=True)
    finally:
        srv.stop()
    srv = start_server(tmp_path, "--pool-size", "1", "--kernels", "python3")
    try:
        with CocalcClient(SECRET_KEY, srv.url) as c:
            after = c.execute(RANDOM, "python3")
            looked_up = c.cached(compute_hash(RANDOM, "python3"))
    finally:
        srv.stop()
    assert after.from_cache and after.stdout == before.stdout
    assert looked_up is not None and looked_up.stdout == before.stdout
