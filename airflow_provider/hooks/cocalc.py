"""CocalcHook: an Airflow ``cocalc`` connection turned into a :class:`CocalcClient`.

Connection fields: ``host`` is the API base URL (default ``https://cocalc.com``), ``password``
is the API key (masked by Airflow in logs and rendered templates), ``schema`` the scheme
(``https``, the default, or ``http``) when ``host`` has none, ``port`` an optional port, and
``extra`` may hold ``project_id``, ``verify``, ``timeout``, ``api`` (``auto``, the
default, ``v2``, ``hub`` or ``project``: see ``cocalc_tasks.client.routes``), and the retry
settings ``retries``, ``retry_backoff``, ``retry_jitter`` and ``retry_deadline``: the worker's
calls and the triggerer's polls both use them, because both build their client here.

Example ``AIRFLOW_CONN_COCALC_DEFAULT`` (JSON form)::

    {"conn_type": "cocalc", "host": "https://cocalc.com", "password": "sk-...",
     "extra": {"project_id": "6e75dbf1-0342-4249-9dce-6b21648656e9"}}

The URI form carries the scheme as the path, as Airflow's http provider does with ``schema``
(a URI without it means https)::

    cocalc://:sk-...@127.0.0.1:8765/http?project_id=6e75dbf1-0342-4249-9dce-6b21648656e9
    cocalc://:sk-...@cocalc.com/https
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Unpack

from airflow.providers.common.compat.sdk import BaseHook

from cocalc_tasks.client import DEFAULT_HOST, DEFAULT_TIMEOUT
from cocalc_tasks.errors import CocalcError, CocalcValidationError

if TYPE_CHECKING:  # the client (and requests) load on first use, not at DAG parsing
    from cocalc_tasks.client import CocalcClient
    from cocalc_tasks.model import ExecuteOptions, ExecuteRequest, ExecutionResult, KernelSpec

__all__ = ["CocalcHook"]


def _truthy(value: Any) -> bool | str:
    """``verify`` from extra: booleans, "true"/"false" strings, or a CA bundle path."""
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in {"true", "1", "yes", "on", ""}:
        return True
    if text.lower() in {"false", "0", "no", "off"}:
        return False
    return text


#: Connection extras passed to the client as they are: its retry policy.
_RETRY_EXTRAS: dict[str, type] = {
    "retries": int,
    "retry_backoff": float,
    "retry_jitter": float,
    "retry_deadline": float,
}


def _number(conn_id: str, name: str, value: Any, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        raise CocalcValidationError(
            f"connection {conn_id!r}: extra {name} must be a non-negative number, got {value!r}"
        )
    return number


def _base_url(conn: Any) -> str:
    """The API base URL of a connection: ``host`` (with or without a scheme), ``schema`` as
    the scheme when ``host`` has none (default https), and ``port``."""
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_HOST
    scheme = (conn.schema or "").strip().lower().removesuffix("://")
    if scheme not in ("", "http", "https"):
        raise CocalcValidationError(
            f"connection {conn.conn_id!r}: schema must be http or https (the scheme of the API "
            f"URL), got {conn.schema!r}"
        )
    url = host if "://" in host else f"{scheme or 'https'}://{host}"
    if conn.port:
        url = f"{url.rstrip('/')}:{conn.port}"
    return url.rstrip("/")


class CocalcHook(BaseHook):
    """Interact with CoCalc's Jupyter API through an Airflow connection.

    Args:
        cocalc_conn_id: Id of a connection of type ``cocalc``.
        **client_kwargs: Passed to :class:`CocalcClient` (e.g. ``retries``), overriding extra.
    """

    conn_name_attr = "cocalc_conn_id"
    default_conn_name = "cocalc_default"
    conn_type = "cocalc"
    hook_name = "CoCalc"

    def __init__(self, cocalc_conn_id: str = default_conn_name, **client_kwargs: Any) -> None:
        super().__init__()
        self.cocalc_conn_id = cocalc_conn_id
        self._client_kwargs = client_kwargs

    # -- connection -> client ----------------------------------------------------------------
    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.cocalc_conn_id)

    def _extra(self, name: str) -> Any:
        extra = self.connection.extra_dejson or {}
        return extra.get(name, extra.get(f"extra__cocalc__{name}"))

    @property
    def base_url(self) -> str:
        return _base_url(self.connection)

    @property
    def project_id(self) -> str | None:
        value = self._extra("project_id")
        return str(value) if value else None

    @cached_property
    def client(self) -> CocalcClient:
        """One client per hook: headers set once, connections pooled."""
        from cocalc_tasks.client import CocalcClient

        kwargs: dict[str, Any] = {}
        verify = self._extra("verify")
        if verify is not None:
            kwargs["verify"] = _truthy(verify)
        timeout = self._extra("timeout")
        if timeout not in (None, ""):
            kwargs["timeout"] = (DEFAULT_TIMEOUT[0], float(timeout))
        api = self._extra("api")
        if api not in (None, ""):
            kwargs["api"] = str(api)
        for name, kind in _RETRY_EXTRAS.items():
            value = self._extra(name)
            if value not in (None, ""):
                kwargs[name] = _number(self.cocalc_conn_id, name, value, kind)
        kwargs.update(self._client_kwargs)
        conn = f"the Airflow connection {self.cocalc_conn_id!r}"
        given_as = {
            "api_key": f"{conn} (its password)",
            "host": f"{conn} (its host and schema; in a URI, the path /http means plain HTTP)",
            "project_id": f"{conn} (extra project_id)",
        }
        return CocalcClient(
            api_key=self.connection.password or None,
            host=self.base_url,
            project_id=self.project_id,
            given_as=given_as,
            **kwargs,
        )

    def get_conn(self) -> CocalcClient:
        return self.client

    async def aget_client(self) -> CocalcClient:
        """:attr:`client`, with the connection looked up without blocking the event loop
        (for triggers, which run in the triggerer's loop). Through the common-compat provider:
        Airflow 3.0 has no ``aget_connection``, and before 3.3.2 it can deadlock the loop."""
        if "connection" not in self.__dict__:
            # Here, not at the top: only the triggerer needs it (~3.5 ms at every DAG parse).
            from airflow.providers.common.compat.connection import get_async_connection

            self.__dict__["connection"] = await get_async_connection(self.cocalc_conn_id, self)
        return self.client

    # -- API -----------------------------------------------------------------------------------
    def execute(
        self, input: str, kernel: str, **options: Unpack[ExecuteOptions]
    ) -> ExecutionResult:
        """Run code; ``project_id`` defaults to the connection's."""
        return self.client.execute(input, kernel, **options)

    def send(self, request: ExecuteRequest) -> ExecutionResult:
        """Run a prepared request; ``project_id`` defaults to the connection's."""
        return self.client.send(request)

    def list_kernels(self, project_id: str | None = None) -> list[KernelSpec]:
        return self.client.kernels(project_id)

    def whoami(self) -> Any:
        """What the server takes the connection's key for (:class:`~cocalc_tasks.Whoami`); a
        key it does not know raises :class:`~cocalc_tasks.errors.CocalcAuthError`."""
        return self.client.whoami()

    def test_connection(self) -> tuple[bool, str]:
        """Check the key (``whoami``: CoCalc takes an unknown key for anonymous, and the global
        pool's kernels need none), then list the kernels."""
        try:
            me = self.whoami()
            kernels = self.client.kernels()
        except CocalcError as exc:
            return False, str(exc)
        except Exception as exc:  # Airflow shows the message in the UI
            return False, f"{type(exc).__name__}: {exc}"
        where = f"project {self.project_id}" if self.project_id else "the global pool"
        return True, f"Connected: {me.describe()}; {len(kernels)} kernels in {where}."

    # -- connection form (Airflow 3.0/3.1; 3.2+ reads get_provider_info) ------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login"],
            "relabeling": {"host": "API base URL", "password": "API key", "schema": "Scheme"},
            "placeholders": {
                "host": "https://cocalc.com",
                "password": "sk-...",
                "schema": "https (when the host has none; http for a local server)",
            },
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField

        return {
            "project_id": StringField(lazy_gettext("Project id")),
            "verify": BooleanField(lazy_gettext("Verify TLS"), default=True),
            "timeout": IntegerField(lazy_gettext("Read timeout (s)"), default=90),
            "api": StringField(lazy_gettext("API route (auto, v2, hub, project)"), default="auto"),
        }
