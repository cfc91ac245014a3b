"""``LocalServer`` under its earlier documented path; defined in
:mod:`cocalc_tasks.server.local_server`, and exported by :mod:`cocalc_tasks.testing`."""

from __future__ import annotations

from cocalc_tasks.server.local_server import DATA_DIR_PREFIX, LocalServer

__all__ = ["DATA_DIR_PREFIX", "LocalServer"]
