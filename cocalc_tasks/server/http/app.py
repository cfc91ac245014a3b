"""FastAPI routes: CoCalc's ``/api/v2/jupyter/*``, ``/api/v2/exec``, and the
``/api/conat/hub`` and ``/api/conat/project`` bridges.

Routes parse the body and hand over to the services
(:class:`~cocalc_tasks.server.jupyter.service.ExecutionService` and
:class:`~cocalc_tasks.server.exec.service.ExecService`); they hold no logic of their own. As on
CoCalc, parameters come only from a POST JSON body (query strings are ignored, other methods get
no parameters), and every handled failure is HTTP 200 with ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cocalc_tasks.client.routes import SERVER_HEADER
from cocalc_tasks.server.api_error import ApiError
from cocalc_tasks.server.auth import V2_KEY_PREFIX, Identity, KeyRing
from cocalc_tasks.server.exec.service import ExecService
from cocalc_tasks.server.http.project_bridge import ProjectBridge, now_ms
from cocalc_tasks.server.jupyter.kernelspecs import KernelCatalog
from cocalc_tasks.server.jupyter.pool import KernelPools
from cocalc_tasks.server.jupyter.quotas import Quotas
from cocalc_tasks.server.jupyter.service import ExecutionService
from cocalc_tasks.server.metrics import CONTENT_TYPE, Present, ServerMetrics
from cocalc_tasks.server.pages import STATIC_PATH, PageSources, page_routes, static_files
from cocalc_tasks.server.processes.zygotes import fork_supported
from cocalc_tasks.server.sandbox import Area, Isolation, Limits, Sandbox, kernel_prefixes
from cocalc_tasks.server.settings import CONFIG_ENV, ServerSettings
from cocalc_tasks.server.storage import Storage, off_loop, open_storage

__all__ = ["create_app"]

log = logging.getLogger("cocalc_tasks.server")

#: A route's work: the request's JSON parameters and caller in, the JSON answer out.
Action = Callable[[dict[str, Any], Identity], Awaitable[Any]]

HUB_AUTH_ERROR = "must be signed in and MUST provide an api key (cookies are not allowed)"
#: Names the replica that answered, for operators behind a load balancer (and tells clients
#: that this server has job pages).
REPLICA_HEADER = SERVER_HEADER
#: CoCalc routes any method; only a POST body carries parameters.
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]

_EXECUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {"type": "string"},
        "kernel": {"type": "string"},
        "history": {"type": "array", "items": {"type": "string"}},
        "project_id": {"type": "string", "format": "uuid"},
        "path": {"type": "string"},
        "hash": {"type": "string"},
        "noCache": {"type": "boolean"},
        "tag": {"type": "string"},
    },
}
_EXEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "project_id": {"type": "string", "format": "uuid"},
        "command": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "path": {"type": "string"},
        "timeout": {"type": "number", "minimum": 0},
        "max_output": {"type": "integer", "minimum": 1},
        "bash": {"type": "boolean"},
        "err_on_exit": {"type": "boolean"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "async_call": {"type": "boolean"},
        "async_get": {"type": "string"},
        "async_stats": {"type": "boolean"},
        "async_await": {"type": "boolean"},
        "async_cancel": {"type": "string"},
    },
    "required": ["project_id"],
}
_PROJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "project_id": {"type": "string", "format": "uuid"},
        "name": {
            "type": "string",
            "enum": [
                "system.ping",
                "system.exec",
                "system.jupyterExecute",
                "system.listJupyterKernels",
                "system.stopJupyterKernel",
            ],
        },
        "args": {"type": "array", "items": {"type": "object"}},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
    },
    "required": ["name"],
}
_KERNELS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"project_id": {"type": "string", "format": "uuid"}},
}
_HUB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "enum": ["jupyter.kernels", "jupyter.execute", "system.ping", "system.test"],
        },
        "args": {"type": "array", "items": {"type": "object"}},
        "timeout": {"type": "number"},
    },
    "required": ["name"],
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": False, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": 'A result, or {"error": message}'}},
    }


class _BadBody(Exception):
    pass


async def _read_params(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object in a POST body; ``{}`` for other methods or an empty body."""
    if request.method != "POST":
        return {}
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _BadBody(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BadBody(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadBody("request body is not valid UTF-8") from None
    except ValueError as exc:
        raise _BadBody(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _BadBody("request body must be a JSON object")
    return value


def replica_name(settings: ServerSettings) -> str:
    """``--replica-name``, or this host and port."""
    return settings.replica_name or f"{socket.gethostname()}:{settings.port}"


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the app; kernels start in the lifespan and are all shut down on exit.

    Connects to the database (and brings its schema up to date) at once, so a wrong
    ``--database-url`` fails here with a :class:`~cocalc_tasks.server.storage.DatabaseError`.
    Raises :class:`~cocalc_tasks.server.sandbox.SandboxUnavailable` for ``--sandbox bwrap``
    where bubblewrap cannot run."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    base_env = base_environment()
    # Listing kernelspecs makes IPython create its directory in this process: keep it in the
    # data dir, out of $HOME (unless the user chose one). Kernels get their area's own.
    os.environ.setdefault("IPYTHONDIR", str(settings.data_dir / "ipython"))
    catalog = KernelCatalog(settings.kernel_aliases)
    sandbox = Sandbox(
        settings.sandbox,
        data_dir=settings.data_dir,
        projects_dir=settings.projects_dir,
        anonymous_home=settings.data_dir / "sandbox",
        readonly=kernel_prefixes(entry["argv"] for entry in catalog.listing()),
        hidden=[Path(os.environ[CONFIG_ENV])] if os.environ.get(CONFIG_ENV) else [],
        isolation=isolation(settings),
    )
    anonymous = sandbox.area(None)
    rewrite = settings.flavor == "cocalc-ai"
    if rewrite:  # the rewrite knows only v2 account keys, and no project keys
        ignored = [k for k in settings.api_keys if not k.startswith(V2_KEY_PREFIX)]
        if ignored or settings.project_keys:
            log.warning(
                "--flavor cocalc-ai: %d key(s) not in the v2 format (sk-cc-v2.*) and %d project "
                "key(s) are refused, as on cocalc.ai",
                len(ignored),
                len(settings.project_keys),
            )
        keys = KeyRing([k for k in settings.api_keys if k.startswith(V2_KEY_PREFIX)], {})
    else:
        keys = KeyRing(settings.api_keys, settings.project_keys)
    replica = replica_name(settings)
    storage = open_storage(
        settings.database_url,
        settings.data_dir,
        replica=replica,
        cache_ttl=settings.cache_ttl_seconds,
        job_ttl=settings.job_ttl_seconds,
        log_ttl=settings.api_log_ttl_seconds,
        pool_size=settings.database_pool_size,
    )
    log.info("storage: %s (replica %r)", storage.db.where, replica)
    state: dict[str, Any] = {"sandbox": sandbox}
    metrics = ServerMetrics()
    quotas = Quotas(storage.api_log, settings)

    environments: dict[str, dict[str, str]] = {}

    def env_for(area: Area) -> dict[str, str]:
        """An area's kernel environment, written and built once (kernel starts reuse it)."""
        if area.name not in environments:
            environments[area.name] = area_environment(base_env, area)
        return environments[area.name]

    @functools.cache
    def limits_for(spec_name: str) -> tuple[tuple[int, int], ...]:
        """A kernelspec's rlimits, parsed once (every kernel start asks)."""
        own = Limits.parse(settings.kernel_limits_for.get(spec_name, ""))
        return tuple(Limits.parse(settings.kernel_limits).merged(own).rlimits())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pools = KernelPools(
            catalog,
            scratch_dir=anonymous.scratch,
            kernel_env=env_for(anonymous),
            size_for=settings.pool_size_for,
            max_parallel_starts=settings.max_parallel_starts,
            start_timeout=settings.kernel_start_timeout,
            fork=settings.fork_kernels and fork_supported(),
            prepare=settings.prepare_kernels,
            default_area=anonymous,
            sandbox=sandbox,
            env_for=env_for,
            limits_for=limits_for,
            project_size=settings.project_pool_size,
            idle_seconds=settings.area_idle_seconds,
            sage_threads=settings.sage_threads,
            metrics=metrics,
        )
        storage.replicas.beat()
        storage.purge_expired()
        execs = ExecService(
            settings,
            storage.jobs,
            base_env,
            sandbox=sandbox,
            registry=storage.replicas,
            exclusive=storage.db.engine == "sqlite",
            kernel_dirs=catalog.kernel_dirs_for(sandbox.tools),
            kernel_aliases=catalog.aliases,
            metrics=metrics,
        )
        execs.recover()
        state["service"] = service = ExecutionService(
            settings, catalog, pools, storage, sandbox, metrics=metrics, quotas=quotas
        )
        metrics.watch(
            Present(
                census=pools.census,
                running_jobs=execs.running_count,
                quotas=lambda: {
                    "site": (quotas.site_usage(), float(settings.quota_site)),
                },
            )
        )
        state["exec"] = execs
        state["bridge"] = ProjectBridge(execs, service, pools, sandbox, rewrite=rewrite)
        for name in settings.kernels:
            pools.warm(catalog.resolve(name).spec_name)
        background = [
            asyncio.ensure_future(_close_idle_areas(pools, sandbox, settings.area_idle_seconds)),
            asyncio.ensure_future(execs.watch()),
            asyncio.ensure_future(_purge_expired(storage)),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await execs.close()
            await service.close()
            await pools.close()
            await asyncio.to_thread(sandbox.close)
            storage.close()

    app = FastAPI(title="cocalc-tasks local CoCalc server", lifespan=lifespan)
    database = f"{'SQLite' if storage.db.engine == 'sqlite' else 'PostgreSQL'}, {storage.db.where}"
    app.state.banner = banner(settings, catalog, sandbox, database)

    def service() -> ExecutionService:
        result: ExecutionService = state["service"]
        return result

    def execs() -> ExecService:
        result: ExecService = state["exec"]
        return result

    headers = {REPLICA_HEADER: replica}

    def caller(request: Request) -> Identity:
        """Who sent ``request``: its key's identity, with the client's address (an anonymous
        caller's id). The API, the pages and /metrics all ask this."""
        identity = keys.identify(request.headers.get("authorization"))
        if request.client is not None:
            identity = dataclasses.replace(identity, address=request.client.host)
        return identity

    async def handle(request: Request, action: Action) -> JSONResponse:
        started = time.monotonic()
        route = request.url.path
        try:
            params = await _read_params(request, settings.max_body_bytes)
            result = await action(params, caller(request))
        except (_BadBody, ApiError) as exc:
            refusal = getattr(exc, "refusal", None)
            if refusal is not None:
                metrics.refusals.labels(refusal).inc()
            metrics.request(route, "error", time.monotonic() - started)
            return JSONResponse({"error": str(exc)}, headers=headers)
        except Exception as exc:  # keep serving whatever happens in one request
            log.exception("unexpected error")
            metrics.request(route, "internal", time.monotonic() - started)
            return JSONResponse(
                {"error": f"Error: internal server error ({type(exc).__name__})"}, headers=headers
            )
        metrics.request(route, "ok", time.monotonic() - started)
        return JSONResponse(result, headers=headers)

    if not rewrite:  # cocalc-ai removed the v2 Jupyter routes: a 404 there

        @app.api_route(
            "/api/v2/jupyter/kernels", methods=ANY_METHOD, openapi_extra=_body_doc(_KERNELS_SCHEMA)
        )
        async def kernels(request: Request) -> JSONResponse:
            async def action(params: dict[str, Any], identity: Identity) -> dict[str, Any]:
                return {"kernels": service().kernels(params, identity), "success": True}

            return await handle(request, action)

        @app.api_route(
            "/api/v2/jupyter/execute", methods=ANY_METHOD, openapi_extra=_body_doc(_EXECUTE_SCHEMA)
        )
        async def execute(request: Request) -> JSONResponse:
            async def action(params: dict[str, Any], identity: Identity) -> dict[str, Any]:
                return {**await service().execute(params, identity), "success": True}

            return await handle(request, action)

    @app.post("/api/conat/hub", openapi_extra=_body_doc(_HUB_SCHEMA))
    async def hub(request: Request) -> JSONResponse:
        """The conat bridge used by the official ``cocalc-api`` client (``Hub``)."""

        async def action(params: dict[str, Any], identity: Identity) -> Any:
            if identity.kind != "account":
                raise ApiError(HUB_AUTH_ERROR)
            args = params.get("args") or [{}]
            kwargs = args[0] if isinstance(args, list) and args else {}
            if not isinstance(kwargs, dict):
                raise ApiError("Error: args[0] must be an object")
            name = params.get("name")
            if name == "system.ping":
                return {"now": now_ms()}
            if name == "system.test":
                return {"account_id": identity.account_id, "server_time": now_ms()}
            if rewrite and isinstance(name, str) and name.startswith("jupyter."):
                raise ApiError(f"Error: unknown function '{name}'")  # gone from the rewrite's hub
            try:
                if name == "jupyter.kernels":
                    return service().kernels(kwargs, identity)
                if name == "jupyter.execute":
                    return await service().execute(kwargs, identity, route="hub") or None
            except ApiError as exc:
                text = str(exc)
                raise ApiError(text if text.startswith("Error: ") else f"Error: {text}") from None
            raise ApiError(f"Error: unknown hub function {name!r}")

        return await handle(request, action)

    @app.api_route("/api/v2/exec", methods=ANY_METHOD, openapi_extra=_body_doc(_EXEC_SCHEMA))
    async def exec_(request: Request) -> JSONResponse:
        """Shell commands in a project, blocking or as async jobs (CoCalc's exec API)."""

        async def action(params: dict[str, Any], identity: Identity) -> dict[str, Any]:
            return await execs().http(params, identity)

        return await handle(request, action)

    @app.api_route(
        "/api/conat/project", methods=ANY_METHOD, openapi_extra=_body_doc(_PROJECT_SCHEMA)
    )
    async def project(request: Request) -> JSONResponse:
        """The project bridge used by the official ``cocalc-api`` client (``Project``)."""
        header = request.headers.get("authorization")

        async def action(params: dict[str, Any], identity: Identity) -> Any:
            bridge: ProjectBridge = state["bridge"]
            return await bridge.call(params, bridge.project_for(params, identity, header))

        return await handle(request, action)

    @app.get("/cocalc-tasks/status", include_in_schema=False)
    async def status() -> dict[str, Any]:
        """Pool sizes, live kernels and running commands, for health checks and tests."""
        pools = service().pools
        sandbox: Sandbox = state["sandbox"]
        return {
            "pools": pools.sizes(),
            "live_kernels": pools.live_count(),
            "running_commands": execs().running_count(),
            "sandbox": sandbox.mode,
            "replica": replica,
            "database": storage.db.engine,
        }

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route(request: Request) -> Response:
        """Prometheus' text format: an account key, unless ``--metrics-public``."""
        if not settings.metrics_public:
            identity = caller(request)
            if identity.kind != "account":
                return Response(
                    "/metrics needs an account key (HTTP Basic, the key as the username)\n",
                    status_code=401 if not identity.signed_in else 403,
                    headers={"WWW-Authenticate": 'Basic realm="cocalc-tasks metrics"'},
                    media_type="text/plain",
                )
        body = await off_loop(storage.db, metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    app.mount(STATIC_PATH, static_files(), name="static")
    app.include_router(
        page_routes(
            PageSources(
                settings=settings,
                storage=storage,
                sandbox=sandbox,
                quotas=quotas,
                replica=replica,
                flavor=settings.flavor,
                census=lambda: service().pools.census(),
            ),
            caller,
            lambda project, job, identity: execs().http(
                {"project_id": project, "async_cancel": job}, identity
            ),
            metrics,
        )
    )
    return app


async def _close_idle_areas(pools: KernelPools, sandbox: Sandbox, idle: float) -> None:
    """Every minute (or twice per idle time, if shorter), stop the pools and zygotes of projects
    that have been idle too long, and remove their cgroups once nothing runs in them."""
    while True:
        await asyncio.sleep(min(60.0, idle / 2))
        try:
            closed = await pools.close_idle()
            for name in closed:
                await asyncio.to_thread(sandbox.release, name)
        except Exception:  # keep watching whatever one pass did
            log.exception("closing idle projects failed")
            continue
        if closed:
            log.info("stopped the kernels of %d idle project(s)", len(closed))


def banner(settings: ServerSettings, catalog: KernelCatalog, sandbox: Sandbox, db: str) -> str:
    """What ``serve`` prints under its ``listening on`` line: what it serves, to whom, how."""
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(catalog.aliases.items()):
        aliases.setdefault(target, []).append(alias)
    names = [
        f"{name} (also {', '.join(aliases[name])})" if name in aliases else name
        for name in sorted({e["name"] for e in catalog.listing()} - set(catalog.aliases))
    ]
    anonymous = (
        "allowed: calls without a key (or with a key this server does not know) run in the "
        "global pool; --no-anonymous requires a key"
        if settings.allow_anonymous
        else "refused: every call needs a known key"
    )
    keys = f"{len(settings.api_keys)} account key(s), {len(settings.project_keys)} project key(s)"
    if sandbox.enabled:
        iso = sandbox.isolation
        user = "its own uid" if sandbox.users.switch else "the server's uid"
        caps = "cgroups" if sandbox.cgroups is not None else "RLIMIT_NPROC, memory per process"
        mode = (
            f"bwrap: each project in its own sandbox, as {user}, network {iso.network}, "
            f"caps {iso.caps} ({caps})"
        )
    else:
        mode = "none: projects are NOT isolated from each other or from the server"
    rows = [
        ("kernels", ", ".join(names) or "none"),
        ("keys", keys),
        ("anonymous", anonymous),
        ("sandbox", mode),
        ("database", db),
        ("data", str(settings.data_dir)),
    ]
    return "\n".join(f"  {label + ':':<11}{value}" for label, value in rows)


def isolation(settings: ServerSettings) -> Isolation:
    """What each area gets besides its files, from the settings."""
    return Isolation(
        uid_range=settings.project_uids,
        network=settings.project_network,
        network_for={k.lower(): v for k, v in settings.project_network_for.items()},
        caps=settings.project_limits,
        caps_for={k.lower(): v for k, v in settings.project_limits_for.items()},
        pool_caps=settings.pool_limits,
        multi_user=bool(settings.project_keys) or len(settings.api_keys) > 1,
    )


async def _purge_expired(storage: Storage) -> None:
    """Every minute, delete expired rows: cached results, finished jobs, API log rows (the
    start-up purge alone would let a long-running server's log grow for ever)."""
    while True:
        await asyncio.sleep(60)
        try:
            await off_loop(storage.db, storage.purge_expired)
        except Exception:  # a database restart costs one pass
            log.exception("purging expired rows failed")


def _server_secret(name: str) -> bool:
    """The server's own settings (keys among them) and a client key: no business of kernels."""
    return name.startswith("COCALC_SERVER_") or name == "COCALC_API_KEY"


def base_environment() -> dict[str, str]:
    """The server's environment minus its settings and keys: code that prints ``os.environ``
    must not publish them. Kernels and commands start from this."""
    return {name: value for name, value in os.environ.items() if not _server_secret(name)}


def area_environment(base: dict[str, str], area: Area) -> dict[str, str]:
    """A kernel's whole environment in ``area``: all writable state in the area's state
    directory, never in ``$HOME``, which is the area's own directory."""
    paths = {
        "IPYTHONDIR": area.state / "ipython",
        "DOT_SAGE": area.state / "sage",
        "MAXIMA_USERDIR": area.state / "maxima",
        "MPLCONFIGDIR": area.state / "matplotlib",
        "JUPYTER_DATA_DIR": area.state / "jupyter",
    }
    profile = paths["IPYTHONDIR"] / "profile_default"
    config = profile / "ipython_kernel_config.py"
    if not config.exists() or config.read_text(encoding="utf-8") != _KERNEL_CONFIG:
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        profile.mkdir(exist_ok=True)
        config.write_text(_KERNEL_CONFIG, encoding="utf-8")
        if area.owner is not None:  # the kernels write there as the area's user
            area.owner.chown_tree(area.state)
    env = dict(base)
    env.update({name: str(path) for name, path in paths.items()})
    env.update({"HOME": str(area.home), "PLOTLY_RENDERER": "colab"})
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


#: Configuration for every IPython-based kernel (python3, bash, Sage) this server starts.
_KERNEL_CONFIG = """\
# Written by `cocalc-tasks serve` at every start: edits here are lost.
c = get_config()  # noqa: F821
# Each kernel runs one call and is thrown away: keep its history in memory, so that
# concurrent kernels do not all write (and lock) one history.sqlite.
c.HistoryManager.hist_file = ":memory:"
# ipykernel sleeps 0.5 ms after each cell so that clients which stop reading at the
# execute_reply see the last output. The server reads IOPub up to the kernel's idle status,
# which comes after every output, so it does not need that pause.
c.Kernel._execute_sleep = 0
"""
