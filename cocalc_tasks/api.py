"""The functional surface: ``execute_code`` and ``list_kernels``.

They are thin wrappers over :class:`~cocalc_tasks.client.CocalcClient`, in the manner of
``requests.get`` over ``requests.Session``. Pass ``client=`` to reuse a connection; otherwise
a client is built from ``api_key``/``host`` (or the ``COCALC_*`` environment) and closed after
the call. These are the functions the CLI, Airflow and Prefect layers call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Unpack

from cocalc_tasks.client import CocalcClient
from cocalc_tasks.models import ExecutionResult, KernelSpec
from cocalc_tasks.request import ExecuteOptions

__all__ = ["execute_code", "list_kernels"]


@contextmanager
def _client_for(
    client: CocalcClient | None, api_key: str | None, host: str | None
) -> Iterator[CocalcClient]:
    if client is not None:
        yield client
        return
    with CocalcClient(api_key=api_key, host=host) as own:
        yield own


def execute_code(
    input: str,
    kernel: str,
    *,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
    **options: Unpack[ExecuteOptions],
) -> ExecutionResult:
    """Run code on a CoCalc kernel and return its outputs.

    ``options``: ``history``, ``project_id``, ``path``, ``no_cache``, ``tag``
    (see :class:`~cocalc_tasks.request.ExecuteOptions`).

    >>> execute_code("print(2+3)", kernel="python3").stdout  # doctest: +SKIP
    '5\\n'
    """
    with _client_for(client, api_key, host) as c:
        return c.execute(input, kernel, **options)


def list_kernels(
    project_id: str | None = None,
    *,
    api_key: str | None = None,
    host: str | None = None,
    client: CocalcClient | None = None,
) -> list[KernelSpec]:
    """List the kernels of the global pool, or of ``project_id``."""
    with _client_for(client, api_key, host) as c:
        return c.kernels(project_id)
