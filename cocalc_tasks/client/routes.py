"""The three ways a CoCalc server runs stateless Jupyter code, and how to tell one is missing.

- ``v2``: ``POST /api/v2/jupyter/execute`` and ``/kernels`` (CoCalc master; removed from the
  rewrite, cocalc-ai). The only route with CoCalc's hash-only cache lookup.
- ``hub``: the conat hub bridge, ``POST /api/conat/hub`` with ``jupyter.execute`` and
  ``jupyter.kernels`` (what CoCalc's own Python client calls; also gone from the rewrite).
- ``project``: the conat project bridge, ``POST /api/conat/project``, which runs the code in
  the project itself: ``system.jupyterExecute`` on master, ``jupyter.apiExecute`` on the
  rewrite. It needs a project id, and answers with the bare list of outputs.

``CocalcClient(api="auto")`` tries them in that order (see ``docs/cocalc-api.md``); each
helper here builds one route's request or reads its answer back into the v2 shape, so every
route gives the same :class:`~cocalc_tasks.model.results.ExecutionResult`.
"""

from __future__ import annotations

from typing import Any, Literal

from cocalc_tasks.errors import CocalcError, CocalcServerError, CocalcUnsupportedError
from cocalc_tasks.model.requests import ExecuteRequest

#: The header every answer of the local cocalc-tasks server carries (its replica's name); no
#: CoCalc server sends it. Such a server also has pages for jobs, not only for projects.
SERVER_HEADER = "x-cocalc-tasks-replica"

__all__ = [
    "API_CHOICES",
    "AUTO_ORDER",
    "PROJECT_FUNCTIONS",
    "SERVER_HEADER",
    "Api",
    "Route",
    "execute_call",
    "execute_response",
    "kernels_call",
    "kernels_response",
    "route_missing",
]

Route = Literal["v2", "hub", "project"]
Api = Literal["auto", "v2", "hub", "project"]
API_CHOICES: tuple[str, ...] = ("auto", "v2", "hub", "project")
#: The order ``api="auto"`` tries.
AUTO_ORDER: tuple[Route, ...] = ("v2", "hub", "project")
#: The project bridge's stateless execute: master's name, then the rewrite's.
PROJECT_FUNCTIONS: tuple[str, ...] = ("system.jupyterExecute", "jupyter.apiExecute")

HUB_PATH = "/api/conat/hub"
PROJECT_PATH = "/api/conat/project"
EXECUTE_PATH = "/api/v2/jupyter/execute"
KERNELS_PATH = "/api/v2/jupyter/kernels"
#: The project bridge's own ``timeout`` (ms) is the client's read timeout, so both give up
#: together (the bridge's default, 15 s, is shorter than a Jupyter call may take).
_DEFAULT_BRIDGE_MS = 90_000


def route_missing(exc: CocalcError) -> bool:
    """Whether ``exc`` says the route does not exist on this server (so ``auto`` moves on):
    an HTTP 404 or 405, an answer that is not JSON (a login page), or CoCalc's "unknown
    function" and ``method_not_allowed``."""
    if isinstance(exc, CocalcUnsupportedError):
        return True
    if isinstance(exc, CocalcServerError):  # a cut-off JSON body is not a missing route
        html = exc.body_excerpt.lstrip().startswith("<")
        return exc.status_code in (404, 405) or ("is not JSON" in str(exc) and html)
    return False


def execute_call(
    route: Route, request: ExecuteRequest, *, function: str, read_timeout: float | None
) -> tuple[str, dict[str, Any]]:
    """``(path, body)`` of ``request`` on ``route`` (``function``: the project bridge's)."""
    body = request.body()
    if route == "v2":
        return EXECUTE_PATH, body
    if route == "hub":
        return HUB_PATH, {"name": "jupyter.execute", "args": [body]}
    options = {k: v for k, v in body.items() if k in ("input", "kernel", "history", "path")}
    if request.project_id is None:
        raise CocalcUnsupportedError("the project bridge runs code only in a project")
    return PROJECT_PATH, {
        "project_id": request.project_id,
        "name": function,
        "args": [options],
        "timeout": int(read_timeout * 1000) if read_timeout else _DEFAULT_BRIDGE_MS,
    }


def execute_response(route: Route, response: Any) -> Any:
    """The answer in the v2 shape (``{"output": [...], ...}``): the project bridge returns
    the bare list of outputs."""
    if route == "project" and isinstance(response, list):
        return {"output": response}
    return response


def kernels_call(route: Route, project_id: str | None) -> tuple[str, dict[str, Any]]:
    if route == "v2":
        return KERNELS_PATH, {"project_id": project_id} if project_id else {}
    if route == "hub":
        return HUB_PATH, {"name": "jupyter.kernels", "args": [{"project_id": project_id}]}
    if project_id is None:
        raise CocalcUnsupportedError("the project bridge lists kernels only with a project_id")
    return PROJECT_PATH, {"project_id": project_id, "name": "jupyter.kernels", "args": []}


def kernels_response(response: Any) -> Any:
    """The list of kernel specs, whichever route answered (a list, or ``{"kernels": [...]}``)."""
    return response.get("kernels") if isinstance(response, dict) else response
