"""What a child process does between ``fork`` and ``exec`` to enter its area.

While it is still the server's user: set its rlimits, join its area's cgroups, cap the
processes of its uid (where there is no cgroup), and ignore SIGINT (in front of bwrap). It
becomes the area's user later, inside the sandbox (``setpriv`` in
:meth:`~cocalc_tasks.server.sandbox.bwrap.Sandbox.wrap`). Only system calls run here: no
imports, no allocation beyond the calls themselves (``preexec_fn`` runs in the forked child of
a threaded server).
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable, Sequence

__all__ = ["child_setup"]


def child_setup(
    rlimits: Sequence[tuple[int, int]],
    *,
    ignore_sigint: bool,
    cgroups: Sequence[str] = (),
    nproc: int | None = None,
) -> Callable[[], None]:
    """A ``preexec_fn``.

    ``cgroups``: ``cgroup.procs`` files to write the child's pid to; ``nproc``: an
    ``RLIMIT_NPROC``, which holds once the child is the area's user. An ignored SIGINT is
    inherited by bwrap, which would otherwise die of a kernel interrupt sent to the group;
    IPython kernels ignore it anyway until they run a cell, when they install their own.
    """
    prepared = list(rlimits)
    if nproc is not None:
        prepared.append((resource.RLIMIT_NPROC, nproc))
    files = [path.encode() for path in cgroups]
    setrlimit, set_signal = resource.setrlimit, signal.signal
    sig_ign, sigint = signal.SIG_IGN, signal.SIGINT
    open_, write, close, getpid = os.open, os.write, os.close, os.getpid

    def setup() -> None:
        for which, value in prepared:
            setrlimit(which, (value, value))
        pid = str(getpid()).encode()
        for path in files:
            fd = open_(path, os.O_WRONLY)
            try:
                write(fd, pid)
            finally:
                close(fd)
        if ignore_sigint:
            set_signal(sigint, sig_ign)

    return setup
