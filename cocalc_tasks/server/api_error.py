"""The one refusal every route answers with.

CoCalc answers a refused call with HTTP 200 and ``{"error": message}`` (docs/cocalc-api.md §6);
the Jupyter, exec and project-bridge services raise :class:`ApiError` with CoCalc's own message,
and the routes in :mod:`cocalc_tasks.server.http.app` turn it into that body.
"""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A handled failure; ``str(error)`` is the message sent to the caller."""
