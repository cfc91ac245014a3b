"""CocalcCredentials: a Prefect block that stores the CoCalc API key and builds clients."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from cocalc_tasks import CocalcClient, Whoami
from cocalc_tasks.client import DEFAULT_HOST, DEFAULT_TIMEOUT

__all__ = ["LOGO_URL", "CocalcCredentials"]

LOGO_URL = "https://raw.githubusercontent.com/cocalc-tasks/cocalc-tasks/main/prefect_tasks/logo.png"


class CocalcCredentials(CredentialsBlock):
    """Credentials for CoCalc's Jupyter API (cocalc.com or a compatible server).

    Example:
        Save credentials for a local server once, check the key, then run code:
        ```python
        from prefect_tasks import CocalcCredentials
        CocalcCredentials(
            api_key="sk-...", host="http://127.0.0.1:8765", project_id=None, api="auto"
        ).save("BLOCK_NAME", overwrite=True)
        credentials = CocalcCredentials.load("BLOCK_NAME")
        print(credentials.check().describe())
        with credentials.get_client() as client:
            print(client.execute("factor(2023)", kernel="sage-9.8").text)
        ```
    """

    _block_type_name = "CoCalc Credentials"
    _block_type_slug = "cocalc-credentials"  # the server-side key: never rename
    _documentation_url = "https://cocalc-tasks.github.io/cocalc-tasks/guides/prefect.html"  # type: ignore[assignment]
    #: prefect_tasks/logo.png, as the repository publishes it.
    _logo_url = LOGO_URL  # type: ignore[assignment]

    api_key: SecretStr | None = Field(
        default=None,
        description="CoCalc API key, sent as the HTTP Basic username. "
        "Optional for the anonymous global pool.",
    )
    host: str = Field(default=DEFAULT_HOST, description="Base URL of the CoCalc server.")
    project_id: str | None = Field(
        default=None, description="Default project (UUID) to run in; the global pool if empty."
    )
    verify: bool = Field(default=True, description="Verify the server's TLS certificate.")
    timeout: float = Field(
        default=DEFAULT_TIMEOUT[1],
        description="Seconds to wait for an answer; own-project calls may need 60-90 s.",
    )
    api: Literal["auto", "v2", "hub", "project"] = Field(
        default="auto",
        description="Route for Jupyter calls: auto (/api/v2/jupyter, then the hub bridge, "
        "then the project bridge of CoCalc's rewrite), or one of them.",
    )

    def get_client(self) -> CocalcClient:
        """A new :class:`CocalcClient`; close it (or use ``with``) when done."""
        name = getattr(self, "_block_document_name", None)
        block = f"the CocalcCredentials block {name!r}" if name else "the CocalcCredentials block"
        return CocalcClient(
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            host=self.host,
            project_id=self.project_id,
            verify=self.verify,
            timeout=(DEFAULT_TIMEOUT[0], self.timeout),
            api=self.api,
            given_as={f: f"{block} ({f})" for f in ("api_key", "host", "project_id")},
        )

    def check(self) -> Whoami:
        """What the server takes the key for: ``check().describe()`` says it in a line. A key
        the server does not know raises :class:`~cocalc_tasks.errors.CocalcAuthError` (CoCalc
        would otherwise take it for anonymous, and the global pool would still answer)."""
        with self.get_client() as client:
            return client.whoami()
