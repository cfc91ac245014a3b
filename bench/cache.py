"""Cache hits."""

from __future__ import annotations

from typing import Any

from bench.common import (
    KEY,
    N_CLIENT,
    ms,
    timed,
)
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer


# -- 3. cache hits ------------------------------------------------------------------------------
def cache_hits(server: LocalServer) -> dict[str, Any]:
    with CocalcClient(KEY, server.url) as client:
        client.execute("sum(range(100))", "python3")
        for _ in range(20):
            client.execute("sum(range(100))", "python3")
        hits = timed(lambda: client.execute("sum(range(100))", "python3"), N_CLIENT)
    return ms(hits)
