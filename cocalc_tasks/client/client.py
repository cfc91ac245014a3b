"""``CocalcClient``: one keep-alive session that speaks CoCalc's Jupyter and exec HTTP APIs.

The client owns authentication, retries and the translation of CoCalc's envelope (HTTP 200
with ``{"error": ...}``) into :mod:`cocalc_tasks.errors`. Everything above it (the functional
API, the CLI, Airflow, Prefect) works with :class:`~cocalc_tasks.model.results.ExecutionResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Unpack

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError, ReadTimeoutError

from cocalc_tasks.client import routes
from cocalc_tasks.client.config import DEFAULT_TIMEOUT, Timeout, resolve_settings
from cocalc_tasks.client.exec_calls import ExecCalls
from cocalc_tasks.client.routes import API_CHOICES, EXECUTE_PATH, SERVER_HEADER, Api, Route
from cocalc_tasks.client.transport import AbortableAdapter, EnvironmentOnceSession, build_retry
from cocalc_tasks.errors import (
    CocalcAuthError,
    CocalcConnectionError,
    CocalcError,
    CocalcPermissionError,
    CocalcServerError,
    CocalcTimeoutError,
    CocalcUnsupportedError,
    CocalcValidationError,
    error_from_message,
)
from cocalc_tasks.model.identity import Whoami
from cocalc_tasks.model.requests import ExecuteOptions, ExecuteRequest
from cocalc_tasks.model.results import ExecutionResult, KernelSpec
from cocalc_tasks.model.validation import validate_hash, validate_host, validate_project_id

__all__ = ["CocalcClient"]

log = logging.getLogger("cocalc_tasks.client")

#: Keys of CoCalc's rewrite (``sk-cc-v2.<id>.<secret>``) are sent as Bearer tokens; others as
#: the HTTP Basic username (both servers accept either form).
BEARER_KEY_PREFIX = "sk-cc-v2."
_EXCERPT_CHARS = 200


class CocalcClient(ExecCalls):
    """A client for ``/api/v2/jupyter/kernels``, ``/api/v2/jupyter/execute`` and
    ``/api/v2/exec`` (commands and async jobs: see
    :class:`~cocalc_tasks.client.exec_calls.ExecCalls`).

    Arguments win over ``COCALC_API_KEY``, ``COCALC_HOST`` and ``COCALC_PROJECT_ID``.

    Args:
        api_key: CoCalc API key, sent as the HTTP Basic username. Optional for the global pool.
        host: Base URL, default ``https://cocalc.com``.
        project_id: Default project for calls that do not name one.
        timeout: Seconds, or ``(connect, read)``. Own-project calls may take 60-90 s.
        verify: TLS verification (on by default), or a CA bundle path.
        retries: Attempts after the first, for failures that are safe to retry.
        retry_ambiguous: Also retry 502/504 and read errors after sending. The remote code
            may then run twice.
        retry_deadline: Bound in seconds on all attempts and waits together.
        retry_backoff: Seconds of the first wait between attempts; each next one doubles.
        retry_jitter: Up to this many seconds added to each wait at random.
        session: A ``requests.Session`` whose settings to use (headers, cookies, auth, proxies,
            certificates, hooks, and adapters mounted on specific prefixes). The client works
            on a copy, so the caller's session is never changed, and mounts its own retrying,
            abortable adapter for ``http://`` and ``https://`` there.
        given_as: Where the arguments came from, named in errors about them, e.g.
            ``{"host": "the Airflow connection 'cocalc_default'"}`` (default: the argument).

    Example:
        >>> with CocalcClient(host="http://127.0.0.1:8765") as client:  # doctest: +SKIP
        ...     client.execute("factor(2023)", kernel="sage-9.8").text
        '7 * 17^2'
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str | None = None,
        *,
        project_id: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        retries: int = 3,
        retry_ambiguous: bool = False,
        retry_deadline: float | None = 60.0,
        retry_backoff: float = 0.5,
        retry_jitter: float = 0.25,
        session: requests.Session | None = None,
        api: Api = "auto",
        given_as: Mapping[str, str] | None = None,
    ) -> None:
        if api not in API_CHOICES:
            raise CocalcValidationError(
                f"api must be one of {', '.join(API_CHOICES)}, got {api!r:.40}"
            )
        settings = resolve_settings(
            api_key=api_key, host=host, project_id=project_id, given_as=given_as
        )
        #: Where the key, host and project came from, for messages.
        self.settings = settings
        validate_host(settings.host, settings.source("host"))
        if settings.project_id is not None:
            validate_project_id(settings.project_id, settings.source("project_id"))
        self.host = settings.host
        self.project_id = settings.project_id
        self.timeout = timeout
        self.verify = verify
        self._api_key = settings.api_key
        self._session = _copy_session(session) if session is not None else EnvironmentOnceSession()
        self._adapter = AbortableAdapter(
            max_retries=build_retry(
                retries,
                retry_ambiguous=retry_ambiguous,
                deadline=retry_deadline,
                backoff=retry_backoff,
                jitter=retry_jitter,
            )
        )
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._session.headers.update({"Content-Type": "application/json"})
        #: ``auto``, or the one route to use (see :mod:`cocalc_tasks.client.routes`).
        self.api: Api = api
        self._route: Route | None = None if api == "auto" else api
        self._project_function: str | None = None
        #: True once an answer came from a cocalc-tasks server (it names its replica), which
        #: has a page per job; CoCalc has a page per project only (see :meth:`page_url`).
        self.has_job_pages = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        key = "'***'" if self._api_key else "None"
        return f"CocalcClient(host={self.host!r}, project_id={self.project_id!r}, api_key={key})"

    def __enter__(self) -> CocalcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        # Only what the client made: adapters copied from a caller's session stay open.
        self._adapter.close()

    def abort(self) -> None:
        """Abort requests in flight (from another thread), e.g. from an ``on_kill`` hook."""
        self._adapter.abort()

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    # -- API ---------------------------------------------------------------------------------
    def execute(
        self,
        input: str,
        kernel: str,
        *,
        timeout: Timeout | None = None,
        **options: Unpack[ExecuteOptions],
    ) -> ExecutionResult:
        """Run ``input`` on a fresh ``kernel`` after replaying ``history``; return its outputs.

        ``options`` are those of :class:`~cocalc_tasks.model.requests.ExecuteOptions`: ``history``,
        ``project_id`` (default: the client's), ``path``, ``no_cache`` and ``tag``.
        A remote exception does not raise here: check ``result.ok`` or call
        ``result.raise_for_error()``.
        """
        return self.send(ExecuteRequest.build(input, kernel, **options), timeout=timeout)

    def send(self, request: ExecuteRequest, *, timeout: Timeout | None = None) -> ExecutionResult:
        """Run a prepared :class:`ExecuteRequest` (in the client's project if it names none)."""
        request = request.with_default_project(self.project_id)
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        read = read if timeout is not None else self._read_timeout()
        started = time.monotonic()
        route, response = self._negotiate(
            lambda route, function: routes.execute_call(
                route, request, function=function, read_timeout=read
            ),
            timeout,
            request.project_id,
            execute=True,
        )
        elapsed = time.monotonic() - started
        log.debug("executed on kernel %s in %.3f s (%s)", request.kernel, elapsed, route)
        return self._result(
            routes.execute_response(route, response),
            kernel=request.kernel,
            hash=request.hash,
            elapsed=elapsed,
            project_id=request.project_id,
            path=request.path,
            route=route,
        )

    def whoami(self, project_id: str | None = None) -> Whoami:
        """What the server takes this client's key for.

        A key the server does not know raises :class:`~cocalc_tasks.errors.CocalcAuthError`,
        naming where the key came from: CoCalc would otherwise treat it as no key at all, and
        calls to the global pool would still run. Asks the hub's ``system.test`` (account keys),
        then the project bridge's ``system.ping`` (project keys, for ``project_id`` or the
        client's project when one is set); both CoCalc flavours answer them.
        """
        source = self.settings.source("api_key")
        if self._api_key is None:
            return Whoami("anonymous", self.host)
        try:
            reply = self._post(routes.HUB_PATH, {"name": "system.test", "args": [{}]}, None)
        except CocalcAuthError:
            pass
        else:
            account = reply.get("account_id") if isinstance(reply, dict) else None
            return Whoami("account", self.host, source, account_id=account)
        project = project_id if project_id is not None else self.project_id
        body: dict[str, Any] = {"name": "system.ping", "args": []}
        if project is not None:
            body["project_id"] = validate_project_id(project)
        try:
            self._post(routes.PROJECT_PATH, body, None)
        except CocalcPermissionError:
            raise CocalcPermissionError(
                f"the API key from {source} is a project key for another project than {project}"
            ) from None
        except CocalcAuthError:
            raise CocalcAuthError(
                f"{self.host} does not know the API key from {source}: CoCalc treats an "
                "unknown key as anonymous, so calls to the global pool would still run"
            ) from None
        return Whoami("project", self.host, source, project_id=project)

    def kernels(self, project_id: str | None = None) -> list[KernelSpec]:
        """The kernels of the global pool, or of ``project_id``."""
        project_id = project_id if project_id is not None else self.project_id
        if project_id is not None:
            validate_project_id(project_id)
        _, response = self._negotiate(
            lambda route, function: routes.kernels_call(route, project_id), None, project_id
        )
        kernels = routes.kernels_response(response)
        if not isinstance(kernels, list):
            raise CocalcServerError("the kernels response has no 'kernels' list")
        try:
            return [KernelSpec.from_dict(spec) for spec in kernels]
        except (KeyError, TypeError, AttributeError) as exc:
            raise CocalcServerError(f"malformed kernel spec in the response: {exc}") from exc

    def cached(self, hash: str) -> ExecutionResult | None:
        """Look a result up by its content hash without running anything; ``None`` on a miss.

        Only the v2 route (``/api/v2/jupyter/execute``) has this lookup: elsewhere (the
        bridges, CoCalc's rewrite) :class:`~cocalc_tasks.errors.CocalcUnsupportedError` says
        so, rather than answering a miss that would be a lie.
        """
        validate_hash(hash)
        if self._route not in (None, "v2"):
            raise CocalcUnsupportedError(
                f"{self.host} is used through the {self._route} route, which has no hash-only "
                "cache lookup (only /api/v2/jupyter/execute has one)"
            )
        try:
            response = self._post(EXECUTE_PATH, {"hash": hash}, None)
        except CocalcError as exc:
            if self._route is None and routes.route_missing(exc):
                raise CocalcUnsupportedError(
                    f"{self.host} has no hash-only cache lookup (no /api/v2/jupyter/execute)"
                ) from None
            raise
        if not isinstance(response, dict) or "output" not in response:
            return None
        return self._result(response, kernel=None, hash=hash, elapsed=None, route="v2")

    def _negotiate(
        self,
        build: Callable[[Route, str], tuple[str, dict[str, Any]]],
        timeout: Timeout | None,
        project_id: str | None,
        *,
        execute: bool = False,
    ) -> tuple[Route, Any]:
        """Send a Jupyter call on the known route, or (``api="auto"``) find one: v2, then
        the hub bridge, then the project bridge (master's function, then the rewrite's)."""
        candidates: tuple[Route, ...] = (self._route,) if self._route else routes.AUTO_ORDER
        tried: list[str] = []
        for route in candidates:
            if route == "project" and project_id is None:
                tried.append("the project bridge (needs a project_id)")
                continue
            functions: tuple[str, ...] = ("",)
            if route == "project" and execute:
                known = self._project_function
                functions = (known,) if known else routes.PROJECT_FUNCTIONS
            for function in functions:
                path, body = build(route, function)
                try:
                    response = self._post(path, body, timeout)
                except CocalcError as exc:
                    searching = self._route is None or (
                        route == "project" and execute and self._project_function is None
                    )
                    if searching and routes.route_missing(exc):
                        tried.append(f"{path}{f' {function}' if function else ''}: {exc}")
                        continue
                    raise
                if self._route is None:
                    log.info("%s answers Jupyter calls on the %s route", self.host, route)
                    self._route = route
                if route == "project" and execute:
                    self._project_function = function
                return route, response
        raise CocalcUnsupportedError(
            f"{self.host} answered none of the Jupyter routes this client knows; tried "
            + "; ".join(tried)
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _connect_timeout(self) -> float:
        return self.timeout[0] if isinstance(self.timeout, tuple) else self.timeout

    def _read_timeout(self) -> float | None:
        return self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout

    def _result(self, response: Any, **context: Any) -> ExecutionResult:
        if not isinstance(response, dict):
            raise CocalcServerError("the execute response is not a JSON object")
        try:
            return ExecutionResult.from_response(response, **context)
        except (TypeError, ValueError) as exc:
            raise CocalcServerError(f"malformed execute response: {exc}") from exc

    def _post(self, path: str, body: dict[str, Any], timeout: Timeout | None) -> Any:
        url = self.host + path
        auth: Any = None
        if self._api_key and self._api_key.startswith(BEARER_KEY_PREFIX):
            auth = _Bearer(self._api_key)  # CoCalc's rewrite: v2 keys as Bearer tokens
        elif self._api_key:
            auth = (self._api_key, "")
        try:
            response = self._session.post(
                url,
                json=body,
                auth=auth,
                timeout=timeout if timeout is not None else self.timeout,
                verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
                plain = "http://" + self.host.removeprefix("https://")
                raise CocalcValidationError(
                    f"{self.host} (from {self.settings.source('host')}) speaks plain HTTP, not "
                    f"TLS: use {plain}"
                ) from None
            raise CocalcConnectionError(
                f"TLS error talking to {self.host} (from {self.settings.source('host')}): "
                f"{_first_line(exc)}"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise CocalcConnectionError(f"timed out connecting to {self.host}") from None
        except requests.exceptions.ReadTimeout:
            raise CocalcTimeoutError(
                f"no answer from {self.host} within the read timeout"
            ) from None
        except requests.exceptions.RetryError as exc:
            raise CocalcServerError(f"gave up on {url} after retries: {_first_line(exc)}") from None
        except requests.exceptions.ConnectionError as exc:
            reason = getattr(exc.args[0] if exc.args else None, "reason", None)
            if isinstance(reason, ReadTimeoutError):
                raise CocalcTimeoutError(
                    f"no answer from {self.host} within the read timeout"
                ) from None
            raise CocalcConnectionError(self._unreachable(exc)) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise CocalcConnectionError(
                f"the answer from {self.host} was cut off (the code may have run): "
                f"{_first_line(exc)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise CocalcError(f"request to {url} failed: {_first_line(exc)}") from None
        if SERVER_HEADER in response.headers:
            self.has_job_pages = True
        return self._decode(response)

    def page_url(self, project_id: str | None = None, job_id: str | None = None) -> str:
        """Where a person sees this work in a browser: the job's page on a cocalc-tasks server
        (``{host}/projects/{project}/jobs/{job}``), else the project's page, as on cocalc.com
        and cocalc.ai. Empty without a project."""
        project = project_id or self.project_id
        if not project:
            return ""
        if job_id and self.has_job_pages:
            return f"{self.host}/projects/{project}/jobs/{job_id}"
        return f"{self.host}/projects/{project}"

    def _unreachable(self, exc: requests.exceptions.ConnectionError) -> str:
        """Why nothing answered, in the user's words, not the connection pool's."""
        where = f"{self.host} (from {self.settings.source('host')})"
        reason = exc.args[0] if exc.args else exc
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps it
        text = str(reason)
        if isinstance(reason, NewConnectionError) and "refused" in text.lower():
            return f"nothing is listening at {where}: connection refused"
        if isinstance(reason, NameResolutionError) or "Name or service not known" in text:
            return f"the server name of {where} could not be resolved"
        return f"could not talk to {where}: {_first_line(exc)}"

    def _decode(self, response: requests.Response) -> Any:
        """Apply CoCalc's rule: an ``error`` key means failure, whatever the status."""
        text = response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            message = body["error"]
            if isinstance(message, str) and self._api_key and self._api_key in message:
                message = message.replace(self._api_key, "***")  # a server that echoes keys
            raise error_from_message(message)
        status = response.status_code
        excerpt = self._excerpt(text)
        if status in (401, 403):
            raise CocalcAuthError(f"HTTP {status} from {self.host}: {excerpt}")
        if status == 404:
            raise CocalcServerError(
                f"HTTP 404 from {response.url}: this server has no such API endpoint",
                status_code=status,
                body_excerpt=excerpt,
            )
        if not 200 <= status < 300:
            raise CocalcServerError(
                f"HTTP {status} from {self.host}: {excerpt or '(empty body)'}",
                status_code=status,
                body_excerpt=excerpt,
            )
        if body is None and text.strip() != "null":
            raise CocalcServerError(
                f"the answer from {self.host} is not JSON: {excerpt or '(empty body)'}",
                status_code=status,
                body_excerpt=excerpt,
            )
        return body

    def _excerpt(self, text: str) -> str:
        excerpt = " ".join(text.split())[:_EXCERPT_CHARS]
        if self._api_key:
            excerpt = excerpt.replace(self._api_key, "***")
        return excerpt


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer <key>``; the key never appears in a repr."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self) -> str:
        return "_Bearer('***')"


def _copy_session(session: requests.Session) -> requests.Session:
    """A new session with ``session``'s settings; the original is left as it is."""
    copy = EnvironmentOnceSession()
    copy.headers = requests.structures.CaseInsensitiveDict(session.headers)
    copy.cookies.update(session.cookies)
    copy.auth = session.auth
    copy.proxies = dict(session.proxies)
    copy.cert = session.cert
    copy.verify = session.verify
    copy.params = dict(session.params) if isinstance(session.params, dict) else session.params
    copy.hooks = {event: list(hooks) for event, hooks in session.hooks.items()}
    copy.trust_env = session.trust_env
    copy.max_redirects = session.max_redirects
    for prefix, adapter in session.adapters.items():
        if prefix not in ("http://", "https://"):
            copy.mount(prefix, adapter)
    return copy


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
