"""Per-project isolation: areas on disk, the bubblewrap sandbox around them, the user, network
and caps of each, and the limits of every process started in them.

- :mod:`~cocalc_tasks.server.sandbox.areas`: where a project lives (``Area``);
- :mod:`~cocalc_tasks.server.sandbox.bwrap`: the sandbox (``Sandbox``, ``Isolation``);
- :mod:`~cocalc_tasks.server.sandbox.users`: the host user of each area (``ProjectUsers``);
- :mod:`~cocalc_tasks.server.sandbox.caps`: memory and process caps per area (``Caps``);
- :mod:`~cocalc_tasks.server.sandbox.cgroups`: the cgroups that enforce them (``Cgroups``);
- :mod:`~cocalc_tasks.server.sandbox.limits`: per-process limits (``Limits``);
- :mod:`~cocalc_tasks.server.sandbox.child`: what a child does before ``exec``.
"""

from __future__ import annotations

from cocalc_tasks.server.sandbox.areas import ANONYMOUS, Area
from cocalc_tasks.server.sandbox.bwrap import (
    Isolation,
    Sandbox,
    SandboxUnavailable,
    kernel_prefixes,
)
from cocalc_tasks.server.sandbox.caps import Caps
from cocalc_tasks.server.sandbox.child import child_setup
from cocalc_tasks.server.sandbox.limits import Limits, apply_rlimits

__all__ = [
    "ANONYMOUS",
    "Area",
    "Caps",
    "Isolation",
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "apply_rlimits",
    "child_setup",
    "kernel_prefixes",
]
