"""HTTP transport details: the retry policy, an adapter whose in-flight requests can be aborted,
and a session that reads the environment's proxy settings once per host.

Retries follow one rule: retry only what cannot have run twice. That means connection failures
before the request was sent, and 429/503 answers (honouring ``Retry-After``), with exponential
backoff, jitter, a bound on attempts and a bound on total time. Ambiguous failures (502/504, a
read error after the body was sent) are retried only with ``retry_ambiguous=True``, because the
remote code may have side effects.
"""

from __future__ import annotations

import contextlib
import socket
import time
import weakref
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

__all__ = ["AbortableAdapter", "CocalcRetry", "EnvironmentOnceSession", "build_retry"]

SAFE_STATUSES = frozenset({429, 503})
AMBIGUOUS_STATUSES = frozenset({502, 504})


class CocalcRetry(Retry):
    """urllib3 ``Retry`` with a bound on total time, across attempts and ``Retry-After`` waits."""

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Seconds allowed for all attempts together, counted from the first attempt.
        self.deadline = deadline
        self._started = time.monotonic()

    def new(self, **kw: Any) -> CocalcRetry:
        new = super().new(**kw)
        assert isinstance(new, CocalcRetry)
        new.deadline = self.deadline
        new._started = self._started
        return new

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.monotonic() - self._started)

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        remaining = self._remaining()
        if value is not None and remaining is not None:
            return max(0.0, min(value, remaining))
        return value

    def get_backoff_time(self) -> float:
        backoff = super().get_backoff_time()
        remaining = self._remaining()
        return backoff if remaining is None else max(0.0, min(backoff, remaining))

    def increment(self, *args: Any, **kwargs: Any) -> CocalcRetry:
        new = super().increment(*args, **kwargs)
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            error = kwargs.get("error")
            raise MaxRetryError(kwargs.get("_pool"), kwargs.get("url") or "", error)  # type: ignore[arg-type]
        assert isinstance(new, CocalcRetry)
        return new


def build_retry(
    retries: int,
    *,
    retry_ambiguous: bool = False,
    deadline: float | None = 60.0,
    backoff: float = 0.5,
    jitter: float = 0.25,
) -> CocalcRetry:
    """The client's retry policy (see the module docstring): waits of ``backoff * 2**n``
    seconds (at most 10), each plus up to ``jitter`` seconds at random."""
    statuses = SAFE_STATUSES | (AMBIGUOUS_STATUSES if retry_ambiguous else frozenset())
    return CocalcRetry(
        total=retries,
        connect=retries,
        read=retries if retry_ambiguous else 0,
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=statuses,
        backoff_factor=backoff,
        backoff_max=10.0,
        backoff_jitter=jitter,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        deadline=deadline,
    )


class AbortableAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that can shut down the sockets of requests in flight.

    ``abort()`` is what an orchestrator's kill hook calls from another thread: the blocked read
    fails at once instead of waiting for the HTTP timeout.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        registry = self._connections

        class _Http(HTTPConnection):
            def connect(self) -> None:
                super().connect()
                registry.add(self)

        class _Https(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                registry.add(self)

        class _HttpPool(HTTPConnectionPool):
            ConnectionCls = _Http

        class _HttpsPool(HTTPSConnectionPool):
            ConnectionCls = _Https

        self.poolmanager.pool_classes_by_scheme = {"http": _HttpPool, "https": _HttpsPool}

    def abort(self) -> None:
        for conn in list(self._connections):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class EnvironmentOnceSession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy and CA-bundle settings
    (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...) once per scheme and host, not
    on every request. requests scans the whole environment twice per request for them, which
    was a fifth of a cache hit's time. A variable changed after the first request to a host is
    seen by a new client."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], Any] = {}

    def merge_environment_settings(  # type: ignore[override]
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        try:
            parts = urlsplit(url)
            key: tuple[Any, ...] = (parts.scheme, parts.netloc, frozenset((proxies or {}).items()))
            key += (stream, verify, cert, self.trust_env)
            hash(key)
        except (TypeError, ValueError):  # an unhashable setting: no caching
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}
