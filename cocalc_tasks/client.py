"""``CocalcClient``: one keep-alive session that speaks CoCalc's Jupyter and exec HTTP APIs.

The client owns authentication, retries and the translation of CoCalc's envelope (HTTP 200
with ``{"error": ...}``) into :mod:`cocalc_tasks.errors`. Everything above it (the functional
API, the CLI, Airflow, Prefect) works with :class:`~cocalc_tasks.models.ExecutionResult`.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any, Unpack

import requests
from urllib3.exceptions import ReadTimeoutError

from cocalc_tasks.config import DEFAULT_TIMEOUT, resolve_settings
from cocalc_tasks.errors import (
    CocalcAuthError,
    CocalcConnectionError,
    CocalcError,
    CocalcServerError,
    CocalcTimeoutError,
    error_from_message,
)
from cocalc_tasks.exec_calls import ExecCalls
from cocalc_tasks.models import ExecutionResult, KernelSpec
from cocalc_tasks.request import ExecuteOptions, ExecuteRequest
from cocalc_tasks.transport import AbortableAdapter, build_retry
from cocalc_tasks.validation import validate_hash, validate_project_id

__all__ = ["CocalcClient"]

log = logging.getLogger("cocalc_tasks.client")

KERNELS_PATH = "/api/v2/jupyter/kernels"
EXECUTE_PATH = "/api/v2/jupyter/execute"
_EXCERPT_CHARS = 200

Timeout = float | tuple[float, float | None]


class CocalcClient(ExecCalls):
    """A client for ``/api/v2/jupyter/kernels``, ``/api/v2/jupyter/execute`` and
    ``/api/v2/exec`` (commands and async jobs: see :class:`~cocalc_tasks.exec_calls.ExecCalls`).

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
        session: A ``requests.Session`` whose settings to use (headers, cookies, auth, proxies,
            certificates, hooks, and adapters mounted on specific prefixes). The client works
            on a copy, so the caller's session is never changed, and mounts its own retrying,
            abortable adapter for ``http://`` and ``https://`` there.

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
        session: requests.Session | None = None,
    ) -> None:
        settings = resolve_settings(api_key=api_key, host=host, project_id=project_id)
        if settings.project_id is not None:
            validate_project_id(settings.project_id)
        self.host = settings.host
        self.project_id = settings.project_id
        self.timeout = timeout
        self.verify = verify
        self._api_key = settings.api_key
        self._session = _copy_session(session) if session is not None else requests.Session()
        self._adapter = AbortableAdapter(
            max_retries=build_retry(
                retries, retry_ambiguous=retry_ambiguous, deadline=retry_deadline
            )
        )
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._session.headers.update({"Content-Type": "application/json"})

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

        ``options`` are those of :class:`~cocalc_tasks.request.ExecuteOptions`: ``history``,
        ``project_id`` (default: the client's), ``path``, ``no_cache`` and ``tag``.
        A remote exception does not raise here: check ``result.ok`` or call
        ``result.raise_for_error()``.
        """
        return self.send(ExecuteRequest.build(input, kernel, **options), timeout=timeout)

    def send(self, request: ExecuteRequest, *, timeout: Timeout | None = None) -> ExecutionResult:
        """Run a prepared :class:`ExecuteRequest` (in the client's project if it names none)."""
        request = request.with_default_project(self.project_id)
        started = time.monotonic()
        response = self._post(EXECUTE_PATH, request.body(), timeout)
        elapsed = time.monotonic() - started
        log.debug("executed on kernel %s in %.3f s", request.kernel, elapsed)
        return self._result(
            response,
            kernel=request.kernel,
            hash=request.hash,
            elapsed=elapsed,
            project_id=request.project_id,
            path=request.path,
        )

    def kernels(self, project_id: str | None = None) -> list[KernelSpec]:
        """The kernels of the global pool, or of ``project_id``."""
        project_id = project_id if project_id is not None else self.project_id
        body: dict[str, Any] = {}
        if project_id is not None:
            validate_project_id(project_id)
            body["project_id"] = project_id
        response = self._post(KERNELS_PATH, body, None)
        kernels = response.get("kernels") if isinstance(response, dict) else response
        if not isinstance(kernels, list):
            raise CocalcServerError("the kernels response has no 'kernels' list")
        try:
            return [KernelSpec.from_dict(spec) for spec in kernels]
        except (KeyError, TypeError, AttributeError) as exc:
            raise CocalcServerError(f"malformed kernel spec in the response: {exc}") from exc

    def cached(self, hash: str) -> ExecutionResult | None:
        """Look a result up by its content hash without running anything; ``None`` on a miss.

        Servers without CoCalc's cache (the conat rewrite) always miss.
        """
        validate_hash(hash)
        response = self._post(EXECUTE_PATH, {"hash": hash}, None)
        if not isinstance(response, dict) or "output" not in response:
            return None
        return self._result(response, kernel=None, hash=hash, elapsed=None)

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
        auth = (self._api_key, "") if self._api_key else None
        try:
            response = self._session.post(
                url,
                json=body,
                auth=auth,
                timeout=timeout if timeout is not None else self.timeout,
                verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            raise CocalcConnectionError(
                f"TLS error talking to {self.host}: {_first_line(exc)}"
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
            raise CocalcConnectionError(
                f"could not talk to {self.host}: {_first_line(exc)}"
            ) from None
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
        return self._decode(response)

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


def _copy_session(session: requests.Session) -> requests.Session:
    """A new session with ``session``'s settings; the original is left as it is."""
    copy = requests.Session()
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
