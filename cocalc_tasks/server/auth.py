"""Who is calling, and where they may run code.

Keys arrive as HTTP Basic (the key is the username) or ``Bearer``. As on CoCalc's
``/api/v2``, an unknown key is not an error by itself: the caller is simply anonymous, and the
endpoint decides (the global pool may allow anonymous use; a project never does). Key
comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "V2_KEY_PREFIX",
    "Identity",
    "KeyRing",
    "auth_scheme",
]

_ACCOUNT_NAMESPACE = uuid.UUID("6f1c2f1e-3c1b-4d8e-9a55-2f0d6c1f7a10")


#: The key format of CoCalc's rewrite (cocalc.ai): ``sk-cc-v2.<id>.<secret>``.
V2_KEY_PREFIX = "sk-cc-v2."


@dataclass(frozen=True)
class Identity:
    """``kind`` is ``account``, ``project`` (a project key) or ``anonymous``."""

    kind: str
    project_id: str | None = None
    #: A stable id for an account key (derived from a digest of the key, never the key).
    account_id: str | None = None
    #: The client's address (behind a proxy, the one it forwarded): an anonymous caller's id.
    address: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.kind != "anonymous"

    def may_use_project(self, project_id: str) -> bool:
        if self.kind == "account":
            return True
        return self.kind == "project" and self.project_id == project_id


ANONYMOUS = Identity("anonymous")


def auth_scheme(header: str | None) -> str | None:
    """The scheme of an ``Authorization`` header (``None`` when there is no header)."""
    if not header or not header.strip():
        return None
    return header.strip().partition(" ")[0]


def key_from_header(header: str | None) -> str | None:
    """The key in an ``Authorization`` header, or None if there is none or it is malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return decoded.partition(":")[0] or None
    return None


class KeyRing:
    def __init__(self, account_keys: Sequence[str], project_keys: Mapping[str, str]) -> None:
        self._accounts = [k.encode() for k in account_keys if k]
        self._projects = [(k.encode(), pid.lower()) for k, pid in project_keys.items() if k]

    def identify(self, header: str | None) -> Identity:
        key = key_from_header(header)
        if key is None:
            return ANONYMOUS
        raw = key.encode()
        # Compare against every key, so timing does not reveal which one matched.
        account = False
        project: str | None = None
        for candidate in self._accounts:
            account |= hmac.compare_digest(raw, candidate)
        for candidate, pid in self._projects:
            if hmac.compare_digest(raw, candidate):
                project = pid
        if account:
            digest = hashlib.sha256(raw).hexdigest()
            return Identity("account", account_id=str(uuid.uuid5(_ACCOUNT_NAMESPACE, digest)))
        if project is not None:
            return Identity("project", project)
        return ANONYMOUS
