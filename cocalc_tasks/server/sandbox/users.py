"""Which host user a project's processes run as.

A server that runs as root gives every area its own unprivileged uid (and a gid of the same
number), the way CoCalc gives every project its own Linux user: the global pool takes the first
uid of ``--project-uids``, and a project takes one derived from its id, as CoCalc's
``getUid`` does (``src/packages/backend/misc.ts`` in sagemathinc/cocalc: the first 32 bits of
the SHA-512 of the project id). A server that is not root cannot switch users: everything runs
as the server's own uid, as before.

Why a uid per project rather than one shared unprivileged uid (``docs/server/security.md``):

- the kernel's own permission checks keep projects apart even outside the sandbox (a file a
  project leaves world-readable is still not another project's to change, and no project can
  signal another's processes);
- ``RLIMIT_NPROC`` counts processes per uid, so where no cgroup can be written it still caps
  each project on its own, not all of them together;
- every file on the host says which project wrote it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_UID_RANGE", "Owner", "ProjectUsers", "parse_uid_range"]

#: The global pool at 65536, projects above it up to 2^29, as CoCalc's (above ``nobody``).
DEFAULT_UID_RANGE = "65536-536870911"


def parse_uid_range(text: str) -> tuple[int, int]:
    """``"START-END"`` (inclusive), at least two uids, none of them 0."""
    start_text, sep, end_text = text.strip().partition("-")
    try:
        start, end = int(start_text), int(end_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a uid range: use START-END") from None
    if not sep or start < 1 or end <= start or end > 2**32 - 2:
        raise ValueError(f"{text!r}: need 1 <= START < END <= 4294967294")
    return start, end


@dataclass(frozen=True)
class Owner:
    """A host uid and gid."""

    uid: int
    gid: int

    def chown_tree(self, root: Path) -> None:
        """Give ``root`` and everything under it (symlinks themselves, not their targets)."""
        if not root.exists():
            return
        os.lchown(root, self.uid, self.gid)
        for directory, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                os.lchown(os.path.join(directory, name), self.uid, self.gid)


class ProjectUsers:
    """The uid of each area; none at all when the server cannot switch users."""

    def __init__(self, uid_range: str = DEFAULT_UID_RANGE, *, switch: bool | None = None) -> None:
        self.start, self.end = parse_uid_range(uid_range)
        #: Whether processes change user: only a server running as root can, and only where
        #: the range's uids exist (a user namespace that maps root alone has none of them).
        if switch is None:
            switch = os.geteuid() == 0 and _mapped(self.start, self.end)
        self.switch = switch

    def owner(self, project_id: str | None) -> Owner | None:
        """The project's (or, for None, the global pool's) owner; None: the server's own."""
        if not self.switch:
            return None
        if project_id is None:
            return Owner(self.start, self.start)
        digest = hashlib.sha512(project_id.lower().encode()).hexdigest()
        uid = self.start + 1 + int(digest[:8], 16) % (self.end - self.start)
        return Owner(uid, uid)


def _mapped(start: int, end: int) -> bool:
    """Whether uids ``start`` to ``end`` all exist in this process's user namespace."""
    try:
        lines = Path("/proc/self/uid_map").read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        inside, _outside, count = (int(word) for word in line.split())
        if inside <= start and end < inside + count:
            return True
    return False
