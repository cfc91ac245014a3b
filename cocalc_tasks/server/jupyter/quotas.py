"""CoCalc's hourly compute quotas for the global pool, computed from the API log.

As in CoCalc master's ``src/packages/server/jupyter/abuse.ts`` and ``recent-usage.ts``:
usage is the wall time of the caller's computed (not cached) global-pool calls in the last
period, kernel start included; the check is ``usage > quota`` before a run (so the last call
may go over), on a cache miss only; an account key has its own quota, an anonymous caller one
per client address, and all callers together the site's. The messages are CoCalc's, with the
configured numbers. A quota of 0 is no quota.

A caller's usage is read for every computed call (an indexed sum over its own rows). The
site's sum covers every row of the period, so, as CoCalc does with its "medium" query cache,
it is re-read at most every :data:`SITE_USAGE_SECONDS`: the site quota is a guard against a
surge, not an exact meter.
"""

from __future__ import annotations

import threading
import time

from cocalc_tasks.server.auth import Identity
from cocalc_tasks.server.settings import ServerSettings
from cocalc_tasks.server.storage import ApiLog

__all__ = ["NO_IDENTITY", "QuotaExceeded", "Quotas", "caller_ids", "period_text"]

NO_IDENTITY = "at least one of account_id or anonymous_id must be set"
SITE_USAGE_SECONDS = 5.0


class QuotaExceeded(Exception):
    """``str(error)`` is CoCalc's message for the quota that was reached."""


def period_text(seconds: float) -> str:
    """The period as CoCalc's message names it: ``1 hour`` for its own."""
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return f"{seconds:g} seconds"


def caller_ids(identity: Identity) -> tuple[str | None, str | None]:
    """``(account_id, anonymous_id)`` as the log records them: a project key counts as its
    project (CoCalc uses the project id as the account), an anonymous caller by address."""
    if identity.kind == "account":
        return identity.account_id, None
    if identity.kind == "project":
        return identity.project_id, None
    return None, identity.address


class Quotas:
    def __init__(self, log: ApiLog, settings: ServerSettings) -> None:
        self.log = log
        self.anonymous = settings.quota_anonymous
        self.account = settings.quota_account
        self.site = settings.quota_site
        self.period = settings.quota_period
        self._site: tuple[float, float] = (-SITE_USAGE_SECONDS, 0.0)  # (read at, usage)
        self._lock = threading.Lock()

    def site_usage(self) -> float:
        with self._lock:
            read_at, usage = self._site
            if time.monotonic() - read_at >= SITE_USAGE_SECONDS:
                usage = self.log.usage(self.period)
                self._site = (time.monotonic(), usage)
            return usage

    def check(self, identity: Identity) -> None:
        """Raise :class:`QuotaExceeded` (or ``NO_IDENTITY``) if ``identity`` may not compute
        in the global pool now. Blocking: call it from a worker thread."""
        account_id, anonymous_id = caller_ids(identity)
        if account_id is None and anonymous_id is None:
            raise QuotaExceeded(NO_IDENTITY)
        period = period_text(self.period)
        if account_id is not None:
            if self.account and int(self.log.usage(self.period, account_id=account_id)) > (
                self.account
            ):
                raise QuotaExceeded(
                    f"You may use at most {self.account:g} seconds of compute time per "
                    f"{period}. Please try again later or do this computation in a project."
                )
        elif self.anonymous and int(self.log.usage(self.period, anonymous_id=anonymous_id)) > (
            self.anonymous
        ):
            raise QuotaExceeded(
                f"You may use at most {self.anonymous:g} seconds of compute time per {period}. "
                "Sign in to increase your quota."
            )
        if self.site and int(self.site_usage()) > self.site:
            raise QuotaExceeded(
                "There is too much overall usage of code evaluation right now.  Please try "
                "again later or do this computation in a project."
            )
