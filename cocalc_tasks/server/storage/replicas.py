"""The servers sharing one database (``replicas``), each with a heartbeat.

A replica writes its heartbeat every fraction of a second. One silent for longer than the
timeout is dead: its running jobs are marked ``error`` by whichever replica notices first.
Replicas compare times from their own clocks, so keep them synchronised (NTP); the timeout
(seconds) dwarfs ordinary skew.
"""

from __future__ import annotations

import os
import socket
import time

from cocalc_tasks.server.storage.database import Database

__all__ = ["ReplicaRegistry"]


class ReplicaRegistry:
    def __init__(self, db: Database, name: str) -> None:
        self.name = name
        self._db = db

    def beat(self) -> None:
        """Register this replica, or renew its heartbeat."""
        now = time.time()
        self._db.execute(
            "INSERT INTO replicas (name, host, pid, started, heartbeat) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET heartbeat = excluded.heartbeat, "
            "host = excluded.host, pid = excluded.pid",
            (self.name, socket.gethostname(), os.getpid(), now, now),
        )

    def silent(self, timeout: float) -> dict[str, float]:
        """Other replicas whose last heartbeat is older than ``timeout`` seconds, with it."""
        rows = self._db.all(
            "SELECT name, heartbeat FROM replicas WHERE heartbeat < ? AND name != ?",
            (time.time() - timeout, self.name),
        )
        return {str(r[0]): float(r[1]) for r in rows}

    def forget(self, name: str | None = None) -> None:
        """Drop a replica's row: this one's on a clean stop, a dead one's once its jobs are
        settled (it registers again if it comes back)."""
        self._db.execute("DELETE FROM replicas WHERE name = ?", (name or self.name,))
