"""What each page shows, read from the server's services and stores.

Every function here is blocking (it reads the database) and returns plain values for a
template; :mod:`cocalc_tasks.server.pages.routes` runs them off the event loop. Nothing here
decides who may see what: the routes check access before calling.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cocalc_tasks.server.auth import Identity
from cocalc_tasks.server.jupyter.quotas import Quotas
from cocalc_tasks.server.pages.access import may_see_project
from cocalc_tasks.server.pages.charts import usage_chart
from cocalc_tasks.server.projects import PathEscape, resolve_path
from cocalc_tasks.server.sandbox import ANONYMOUS, Sandbox
from cocalc_tasks.server.settings import ServerSettings
from cocalc_tasks.server.storage import Storage
from cocalc_tasks.server.storage.jobs import JobRecord

__all__ = ["PageSources", "job_view", "live_view", "notebook_path", "overview", "project_view"]

#: How far back "recent activity" reaches.
RECENT_SECONDS = 24 * 3600.0
_NOTEBOOK = re.compile(r"(\.cocalc-tasks/notebooks/[0-9a-f]{32})/runner\.py")


@dataclass
class PageSources:
    """Everything the pages read; built once by the app."""

    settings: ServerSettings
    storage: Storage
    sandbox: Sandbox
    quotas: Quotas
    replica: str
    flavor: str
    #: ``(area, kernelspec) -> {"warm", "busy", "starting"}``.
    census: Callable[[], Mapping[tuple[str, str], Mapping[str, int]]]


@dataclass(frozen=True)
class JobRow:
    job_id: str
    project_id: str
    command: str
    status: str
    started: str
    elapsed: str
    exit_code: int | None


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _elapsed(record: JobRecord) -> float:
    if record.status != "running" and record.elapsed_s is not None:
        return record.elapsed_s
    return max(0.0, time.time() - record.start / 1000.0)


def job_row(record: JobRecord) -> JobRow:
    return JobRow(
        job_id=record.job_id,
        project_id=record.project_id,
        command=record.command,
        status=record.status,
        started=_when(record.start / 1000.0),
        elapsed=f"{_elapsed(record):.1f} s",
        exit_code=None if record.status == "running" else record.exit_code,
    )


def _pools(sources: PageSources, areas: set[str] | None) -> list[dict[str, Any]]:
    """Pool rows (area, kernel, warm, busy, starting) of the areas shown (None: all)."""
    rows = []
    for (area, kernel), states in sorted(sources.census().items()):
        if areas is not None and area not in areas:
            continue
        rows.append({"area": area, "project": area != ANONYMOUS, "kernel": kernel, **states})
    return rows


def _quota_rows(sources: PageSources, identity: Identity) -> list[dict[str, Any]]:
    quotas, period = sources.quotas, sources.quotas.period
    rows = [{"scope": "the whole server", "used": quotas.site_usage(), "limit": quotas.site}]
    if identity.kind == "account" and identity.account_id is not None:
        used = sources.storage.api_log.usage(period, account_id=identity.account_id)
        rows.append({"scope": "your key", "used": used, "limit": quotas.account})
    elif identity.kind == "anonymous" and identity.address is not None:
        used = sources.storage.api_log.usage(period, anonymous_id=identity.address)
        rows.append({"scope": "your address", "used": used, "limit": quotas.anonymous})
    return rows


def overview(sources: PageSources, identity: Identity) -> dict[str, Any]:
    """``/``: the server at a glance, as far as ``identity`` may see it."""
    storage, sandbox = sources.storage, sources.sandbox
    since = time.time() - RECENT_SECONDS
    hits, computed = storage.api_log.cache_counts(since)
    iso = sandbox.isolation
    projects: list[dict[str, Any]] = []
    jobs: list[JobRow] = []
    areas: set[str] | None = {ANONYMOUS}
    if identity.signed_in:
        activity = storage.api_log.active_projects(since)
        for record in storage.jobs.recent(limit=200):
            calls, last = activity.get(record.project_id, (0, 0.0))
            activity[record.project_id] = (calls, max(last, record.start / 1000.0))
        visible = {p: v for p, v in activity.items() if may_see_project(identity, p)}
        if identity.kind == "project" and identity.project_id is not None:
            visible.setdefault(identity.project_id, (0, 0.0))
        projects = [
            {"id": p, "calls": calls, "last": _when(last) if last else "none yet"}
            for p, (calls, last) in sorted(visible.items(), key=lambda kv: -kv[1][1])
        ]
        jobs = [
            job_row(r) for r in storage.jobs.running() if may_see_project(identity, r.project_id)
        ]
        areas = None if identity.kind == "account" else {ANONYMOUS, *visible}
    return {
        "sandbox": sandbox.mode,
        "isolated": sandbox.enabled,
        "network": iso.network,
        "caps": iso.caps,
        "flavor": sources.flavor,
        "replica": sources.replica,
        "pools": _pools(sources, areas),
        "projects": projects,
        "jobs": jobs,
        "quotas": _quota_rows(sources, identity),
        "quota_period": sources.quotas.period,
        "cache": {
            "hits": hits,
            "computed": computed,
            "rate": hits / (hits + computed) if hits + computed else None,
        },
    }


def project_view(sources: PageSources, project_id: str) -> dict[str, Any]:
    """``/projects/{id}``: its jobs, its Jupyter calls, its pools and its limits."""
    storage, settings, sandbox = sources.storage, sources.settings, sources.sandbox
    calls = [
        {
            "when": _when(c.created),
            "kernel": c.kernel or "",
            "cached": c.cached,
            "seconds": f"{c.total_time_s:.3f}",
            "error": _error_name(c.error),
        }
        for c in storage.api_log.recent(project_id)
    ]
    area = project_id if sandbox.enabled else ANONYMOUS
    limits = [
        ("cell timeout", f"{settings.project_cell_timeout:g} s"),
        ("output per cell", f"{settings.project_max_output_per_cell:,} characters"),
        ("exec jobs at once (server)", str(settings.max_jobs)),
        ("exec command limits", settings.exec_limits or "none"),
    ]
    if sandbox.enabled:
        caps = sandbox.isolation.caps_for.get(project_id, sandbox.isolation.caps)
        limits.insert(0, ("memory and processes", caps or "none"))
        limits.insert(
            1,
            (
                "network",
                sandbox.isolation.network_for.get(project_id, "") or sandbox.isolation.network,
            ),
        )
    return {
        "project_id": project_id,
        "jobs": [job_row(r) for r in storage.jobs.recent(project_id)],
        "calls": calls,
        "pools": _pools(sources, {area}),
        "shared_pool": not sandbox.enabled,
        "limits": limits,
    }


def _error_name(error: str | None) -> str:
    """The error's first words (``Error: must be signed in``), at most one line."""
    if not error:
        return ""
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line[:120]


def notebook_path(projects_dir: Path, record: JobRecord) -> Path | None:
    """The executed notebook of a notebook run (``run_notebook``), if it is in the project."""
    found = _NOTEBOOK.search(record.command)
    if found is None:
        return None
    try:
        path = resolve_path(projects_dir / record.project_id, f"{found.group(1)}/output.ipynb")
    except PathEscape:
        return None
    return path if path.is_file() else None


def job_view(sources: PageSources, record: JobRecord) -> dict[str, Any]:
    """``/projects/{id}/jobs/{job}``."""
    return {
        "job": job_row(record),
        "stdout": record.stdout,
        "stderr": record.stderr,
        "chart": usage_chart(record.stats),
        "pid": record.pid,
        "is_notebook": _NOTEBOOK.search(record.command) is not None,
    }


def live_view(record: JobRecord, out_from: int, err_from: int) -> dict[str, Any]:
    """What a live job page fetches: the output after the offsets it has, and the state."""
    row = job_row(record)
    return {
        "status": row.status,
        "elapsed": row.elapsed,
        "exit_code": row.exit_code,
        "stdout": record.stdout[out_from:] if out_from <= len(record.stdout) else record.stdout,
        "stderr": record.stderr[err_from:] if err_from <= len(record.stderr) else record.stderr,
        "stdout_length": len(record.stdout),
        "stderr_length": len(record.stderr),
        "reset": out_from > len(record.stdout) or err_from > len(record.stderr),
        "chart": usage_chart(record.stats),
    }
