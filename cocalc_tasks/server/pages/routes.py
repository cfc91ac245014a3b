"""The pages' routes: ``/``, ``/projects/{id}``, ``/projects/{id}/jobs/{job}`` (with its live
feed, its Cancel and its executed notebook) and the static files.

Pages are rendered on the server with Jinja2 (autoescaping on, so whatever a job prints is
text), need no JavaScript except to follow a running job's output, and send a Content Security
Policy that allows only this server's own script. Access is decided in
:mod:`cocalc_tasks.server.pages.access`; what each page shows in
:mod:`cocalc_tasks.server.pages.views`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cocalc_tasks.server.api_error import ApiError
from cocalc_tasks.server.auth import Identity
from cocalc_tasks.server.metrics import ServerMetrics
from cocalc_tasks.server.pages import views
from cocalc_tasks.server.pages.access import (
    CHALLENGE,
    action_token,
    may_see_project,
    same_origin,
    token_matches,
)
from cocalc_tasks.server.storage import off_loop
from cocalc_tasks.server.storage.jobs import JobRecord

__all__ = ["STATIC_PATH", "page_routes", "static_files"]

log = logging.getLogger("cocalc_tasks.server.pages")

STATIC_PATH = "/cocalc-tasks/static"
_HERE = Path(__file__).parent
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_FORM_LIMIT = 4096

#: Asks the job's replica to cancel it, as ``async_cancel`` does: (project, job, caller).
Cancel = Callable[[str, str, Identity], Awaitable[Any]]


class _Denied(Exception):
    """Answer with this status (401 asks the browser for a key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def static_files() -> StaticFiles:
    return StaticFiles(directory=_HERE / "static")


def page_routes(
    sources: views.PageSources,
    identify: Callable[[Request], Identity],
    cancel: Cancel,
    metrics: ServerMetrics,
) -> APIRouter:
    """The pages, reading ``sources``, telling callers apart with ``identify`` and cancelling
    through ``cancel``."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    router = APIRouter(include_in_schema=False)
    db = sources.storage.db
    projects_dir = sources.settings.projects_dir

    def render(
        request: Request, identity: Identity, name: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        who = {"account": "account key", "project": f"project key of {identity.project_id}"}
        html = templates.get_template(name).render(
            base=request.scope.get("root_path", ""),
            server_replica=sources.replica,
            signed_in=identity.signed_in,
            who=who.get(identity.kind, ""),
            **values,
        )
        headers = dict(_HEADERS)
        if status == 401:
            headers.update(CHALLENGE)
        return HTMLResponse(html, status_code=status, headers=headers)

    async def page(
        request: Request, route: str, build: Callable[[Identity], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        identity = identify(request)
        try:
            response = await build(identity)
        except _Denied as denied:
            response = render(
                request,
                identity,
                "error.html",
                denied.status,
                heading=str(denied.status),
                message=str(denied),
            )
        except Exception as exc:  # one broken page must not look like a dead server
            log.exception("page %s failed", route)
            message = f"This page failed ({type(exc).__name__}); the server log has the details."
            response = render(request, identity, "error.html", 500, heading="500", message=message)
        metrics.request(route, str(response.status_code), time.monotonic() - started)
        return response

    def project_of(identity: Identity, project_id: str) -> str:
        """The project's canonical id if ``identity`` may see it; else 401 (no key) or 404
        (another project's key: as if it did not exist)."""
        if not identity.signed_in:
            raise _Denied(401, "Sign in with an API key (as the username) to see projects.")
        try:
            canonical = str(uuid.UUID(project_id))
        except ValueError:
            raise _Denied(404, "No such project.") from None
        if not may_see_project(identity, canonical):
            raise _Denied(404, "No such project.")
        return canonical

    async def job_of(identity: Identity, project_id: str, job_id: str) -> JobRecord:
        project = project_of(identity, project_id)
        record = await off_loop(db, sources.storage.jobs.peek, job_id, project)
        if record is None:
            raise _Denied(404, "No such job in this project (finished jobs expire).")
        return record

    @router.get("/")
    async def overview(request: Request) -> Response:
        async def build(identity: Identity) -> Response:
            if not identity.signed_in and not sources.settings.allow_anonymous:
                raise _Denied(401, "Sign in with an API key (as the username).")
            values = await off_loop(db, views.overview, sources, identity)
            return render(request, identity, "overview.html", **values)

        return await page(request, "page:/", build)

    @router.get("/login")
    async def login(request: Request) -> Response:
        """Ask the browser for a key until it sends a known one, then go to ``/``."""

        async def build(identity: Identity) -> Response:
            if not identity.signed_in:
                raise _Denied(401, "Sign in with an API key (as the username).")
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)

        return await page(request, "page:/login", build)

    @router.get("/projects/{project_id}")
    async def project(request: Request, project_id: str) -> Response:
        async def build(identity: Identity) -> Response:
            canonical = project_of(identity, project_id)
            values = await off_loop(db, views.project_view, sources, canonical)
            return render(request, identity, "project.html", **values)

        return await page(request, "page:/projects/{id}", build)

    @router.get("/projects/{project_id}/jobs/{job_id}")
    async def job(request: Request, project_id: str, job_id: str) -> Response:
        async def build(identity: Identity) -> Response:
            record = await job_of(identity, project_id, job_id)
            base = request.scope.get("root_path", "")
            where = f"{base}/projects/{record.project_id}/jobs/{record.job_id}"
            return render(
                request,
                identity,
                "job.html",
                **views.job_view(sources, record),
                job_replica=record.replica,
                live_url=f"{where}/live",
                cancel_token=action_token(request, _cancel_action(record)),
            )

        return await page(request, "page:/projects/{id}/jobs/{job}", build)

    @router.get("/projects/{project_id}/jobs/{job_id}/live")
    async def live(request: Request, project_id: str, job_id: str) -> Response:
        """New output since the offsets the page has, and the job's state (JSON)."""

        async def build(identity: Identity) -> Response:
            record = await job_of(identity, project_id, job_id)
            out = _offset(request.query_params.get("stdout"))
            err = _offset(request.query_params.get("stderr"))
            return JSONResponse(views.live_view(record, out, err), headers=_HEADERS)

        return await page(request, "page:/projects/{id}/jobs/{job}/live", build)

    @router.post("/projects/{project_id}/jobs/{job_id}/cancel")
    async def cancel_job(request: Request, project_id: str, job_id: str) -> Response:
        async def build(identity: Identity) -> Response:
            record = await job_of(identity, project_id, job_id)
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > _FORM_LIMIT:
                    raise _Denied(413, "The Cancel form is a token, nothing more.")
            form = parse_qs(body.decode("utf-8", "replace"))
            token = (form.get("token") or [""])[0]
            if not same_origin(request) or not token_matches(
                request, _cancel_action(record), token
            ):
                raise _Denied(403, "This form did not come from this server's job page.")
            if record.status == "running":
                try:
                    await cancel(record.project_id, record.job_id, identity)
                except ApiError as exc:
                    raise _Denied(409, f"The job could not be cancelled: {exc}") from None
            where = f"{request.scope.get('root_path', '')}/projects/{record.project_id}"
            return RedirectResponse(f"{where}/jobs/{record.job_id}", status_code=303)

        return await page(request, "page:/projects/{id}/jobs/{job}/cancel", build)

    @router.get("/projects/{project_id}/jobs/{job_id}/notebook")
    async def notebook(request: Request, project_id: str, job_id: str) -> Response:
        async def build(identity: Identity) -> Response:
            record = await job_of(identity, project_id, job_id)
            path = views.notebook_path(projects_dir, record)
            if path is None:
                raise _Denied(
                    404,
                    "This job's executed notebook is not in the project: the job has not "
                    "finished its first cell, it is not a notebook run, or its work folder "
                    "was removed.",
                )
            try:
                body = await asyncio.to_thread(_render_notebook, path)
            except Exception as exc:  # e.g. read while the runner rewrites it
                raise _Denied(
                    503,
                    f"The notebook could not be read just now ({type(exc).__name__}): "
                    "reload the page.",
                ) from None
            return render(
                request,
                identity,
                "notebook.html",
                body=body,
                path=str(path.relative_to(projects_dir / record.project_id)),
                job_id=record.job_id,
                project_id=record.project_id,
                running=record.status == "running",
            )

        return await page(request, "page:/projects/{id}/jobs/{job}/notebook", build)

    return router


def _cancel_action(record: JobRecord) -> str:
    return f"cancel {record.project_id} {record.job_id}"


def _offset(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0


def _render_notebook(path: Path) -> str:
    """The notebook as an HTML fragment, every HTML output and Markdown cell sanitized."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(path), as_version=4)
    exporter = HTMLExporter(template_name="basic", sanitize_html=True)  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(notebook)
    return str(body)
