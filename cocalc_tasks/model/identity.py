"""``Whoami``: what a server takes an API key for.

CoCalc treats a key it does not know as no key at all (the caller is anonymous), so a wrong key
still runs code in the global pool. :meth:`~cocalc_tasks.client.client.CocalcClient.whoami`
asks the server with calls that need a real key, and answers with this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Whoami"]


@dataclass(frozen=True)
class Whoami:
    """``kind``: ``account`` (an account key), ``project`` (a project key) or ``anonymous``
    (no key was given)."""

    kind: str
    host: str
    #: Where the key came from (an option, ``COCALC_API_KEY``, a connection); None: no key.
    key_source: str | None = None
    account_id: str | None = None
    #: A project key's project, when the caller named it (the server does not say).
    project_id: str | None = None

    def describe(self) -> str:
        """One line for a person: what the key is, and which server said so."""
        if self.kind == "account":
            who = "an account key" + (f" (account {self.account_id})" if self.account_id else "")
        elif self.kind == "project":
            who = "a project key" + (
                f" for project {self.project_id}" if self.project_id else " (for one project)"
            )
        else:
            return f"anonymous: no API key was given; {self.host} serves its global pool only"
        return f"{who}, from {self.key_source}, accepted by {self.host}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "host": self.host,
            "key_source": self.key_source,
            "account_id": self.account_id,
            "project_id": self.project_id,
        }
