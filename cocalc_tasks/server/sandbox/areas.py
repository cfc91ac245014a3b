"""Areas: where one project (or the global pool) lives on disk.

Every project is an *area*: its own directory (writable), a scratch directory (kernels' IPC
files and working directories, command scripts) and a state directory (IPython, Sage and
matplotlib state). The global pool is one more area, ``anonymous``, shared by every caller
without a project. :meth:`~cocalc_tasks.server.sandbox.bwrap.Sandbox.area` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cocalc_tasks.server.sandbox.users import Owner

__all__ = ["ANONYMOUS", "Area"]

#: The global pool's area name.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Area:
    """One project's (or the global pool's) place on disk."""

    name: str
    home: Path
    scratch: Path
    state: Path
    #: The host user its processes run as and its files belong to; None: the server's own.
    owner: Owner | None = None

    @property
    def is_project(self) -> bool:
        return self.name != ANONYMOUS
