"""Per-project isolation: areas on disk, the bubblewrap sandbox around them, and the limits
of every process started in them.

- :mod:`~cocalc_tasks.server.sandbox.areas`: where a project lives (``Area``);
- :mod:`~cocalc_tasks.server.sandbox.bwrap`: the sandbox (``Sandbox``);
- :mod:`~cocalc_tasks.server.sandbox.limits`: per-process limits (``Limits``).
"""

from __future__ import annotations

from cocalc_tasks.server.sandbox.areas import ANONYMOUS, Area
from cocalc_tasks.server.sandbox.bwrap import Sandbox, SandboxUnavailable, kernel_prefixes
from cocalc_tasks.server.sandbox.limits import Limits, apply_rlimits, child_setup

__all__ = [
    "ANONYMOUS",
    "Area",
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "apply_rlimits",
    "child_setup",
    "kernel_prefixes",
]
