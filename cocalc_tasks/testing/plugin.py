"""The pytest plugin of :mod:`cocalc_tasks.testing`: ``cocalc_server`` and ``cocalc_client``.

``cocalc_server`` is one local server per test session (python3 kernels, a random key);
``cocalc_client`` is a :class:`~cocalc_tasks.CocalcClient` signed in to it, closed after each
test. Override ``cocalc_server_options`` (a dict of :func:`local_server` arguments) in a
``conftest.py`` to change what the server offers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cocalc_tasks.client import CocalcClient
    from cocalc_tasks.server.local_server import LocalServer


@pytest.fixture(scope="session")
def cocalc_server_options() -> dict[str, Any]:
    """Arguments of :func:`cocalc_tasks.testing.local_server` for ``cocalc_server``."""
    return {}


@pytest.fixture(scope="session")
def cocalc_server(cocalc_server_options: dict[str, Any]) -> Iterator[LocalServer]:
    """A real local CoCalc-compatible server for the whole session."""
    from cocalc_tasks.testing import local_server

    with local_server(**cocalc_server_options) as server:
        yield server


@pytest.fixture
def cocalc_client(cocalc_server: LocalServer) -> Iterator[CocalcClient]:
    """A client of ``cocalc_server``, signed in with its key."""
    with cocalc_server.client() as client:
        yield client
