"""Who may see which page, and the token that keeps other sites from pressing Cancel.

The pages use the API's keys through HTTP Basic (the key is the username), so a browser asks
for the key once and sends it with every request to the server. An account key sees every
project; a project key sees its own project and gets a 404 for any other, exactly as for a
project that does not exist, so a key learns nothing of other projects. Anonymous visitors
(``--allow-anonymous``) see the global pool's summary and no project.

Because a browser sends Basic credentials on its own, a form on another site could POST to
Cancel with them. Every state-changing form carries a token that only a page of this server
can have shown: an HMAC of the action with the caller's own key. It needs no server state, so
a page served by one replica works with a POST to another. Requests a browser marks as coming
from another site (``Sec-Fetch-Site``, ``Origin``) are refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request

from cocalc_tasks.server.auth import Identity, key_from_header

__all__ = ["CHALLENGE", "action_token", "may_see_project", "same_origin", "token_matches"]

#: The ``WWW-Authenticate`` header of a 401: the browser prompts for the key as the username.
CHALLENGE = {"WWW-Authenticate": 'Basic realm="cocalc-tasks: your API key as the username"'}


def may_see_project(identity: Identity, project_id: str) -> bool:
    """Account keys see every project, a project key its own, anonymous visitors none."""
    return identity.signed_in and identity.may_use_project(project_id.lower())


def action_token(request: Request, action: str) -> str:
    """The form token of ``action`` (e.g. ``cancel <project> <job>``) for this caller's key;
    empty without a key (then no form is shown)."""
    key = key_from_header(request.headers.get("authorization"))
    if not key:
        return ""
    return hmac.new(key.encode(), action.encode(), hashlib.sha256).hexdigest()


def token_matches(request: Request, action: str, token: str) -> bool:
    expected = action_token(request, action)
    return bool(expected) and hmac.compare_digest(expected, token)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    return urlsplit(origin).netloc == host
