"""The one refusal every route answers with.

CoCalc answers a refused call with HTTP 200 and ``{"error": message}`` (docs/cocalc-api.md §6);
the Jupyter, exec and project-bridge services raise :class:`ApiError` with CoCalc's own message,
and the routes in :mod:`cocalc_tasks.server.http.app` turn it into that body.
"""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A handled failure; ``str(error)`` is the message sent to the caller.

    ``refusal`` names an access rule that refused the call (``not_signed_in``,
    ``other_project``, ``path``, ``quota``), for the server's metrics."""

    def __init__(self, message: str, *, refusal: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal
