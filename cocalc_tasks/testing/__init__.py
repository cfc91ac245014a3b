"""Test your own DAGs and flows offline, against a real local server with real kernels.

>>> from cocalc_tasks.testing import local_server
>>> with local_server() as server:                                   # doctest: +SKIP
...     with server.client() as client:
...         client.execute("factor(2023)", "python3").text

With pytest, the ``cocalc_server`` and ``cocalc_client`` fixtures come from this package's
plugin (registered as a ``pytest11`` entry point, so nothing needs importing); point Airflow or
Prefect at the server with :func:`cocalc_tasks.testing.airflow.connection_env` and
:func:`cocalc_tasks.testing.prefect.credentials`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from cocalc_tasks.server.local_server import LocalServer

__all__ = ["LocalServer", "local_server"]


@contextmanager
def local_server(
    *,
    kernels: Sequence[str] = ("python3",),
    pool_size: int = 1,
    api_key: str | None = None,
    project_keys: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    data_dir: str | Path | None = None,
    python: str | None = None,
) -> Iterator[LocalServer]:
    """Start ``cocalc-tasks serve`` on a free loopback port with its own temporary data (unless
    ``data_dir`` is given); stop it and all its kernels on exit.

    ``api_key`` is the one account key the server accepts (a random one when omitted), as
    ``server.api_key``; ``args`` are extra ``serve`` options, e.g.
    ``["--kernel-alias", "sage-10.4=sagemath"]``.
    """
    key = api_key or f"sk-test-{secrets.token_hex(12)}"
    server = LocalServer(
        data_dir=data_dir,
        api_keys=[key],
        project_keys=project_keys,
        args=["--kernels", ",".join(kernels), "--pool-size", str(pool_size), *args],
        python=python,
    )
    with server:
        yield server
