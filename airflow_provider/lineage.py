"""OpenLineage facets of the CoCalc operators.

Airflow's OpenLineage provider calls an operator's ``get_openlineage_facets_on_complete``
when a task ends; the operators import this module only there, so Airflow without that
provider never imports OpenLineage. What a run reports:

- a run facet ``cocalc`` (:class:`CocalcRunFacet`): the server, project, job id, kernel or
  interpreter, status and exit code;
- ``externalQuery``: the job id, in the namespace of the CoCalc host and project
  (``cocalc://<host>/<project id>``), so lineage tools can tell runs of different projects
  apart;
- for a notebook, its input and executed output as datasets (a project path in the project's
  namespace, a local path as ``file``, a URL in its own scheme and host).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    ExternalQueryRunFacet,
    RunFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = ["CocalcRunFacet", "cocalc_namespace", "dataset", "operator_lineage"]

#: Where the facet's schema is described (this repository's docs).
SCHEMA_URL = "https://cocalc-tasks.github.io/cocalc-tasks/long-steps.html#openlineage"


@attrs.define
class CocalcRunFacet(RunFacet):
    """What ran on CoCalc for this task: enough to find the job again."""

    host: str
    project_id: str | None = None
    job_id: str | None = None
    kernel: str | None = None
    status: str | None = None
    exit_code: int | None = None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def cocalc_namespace(base_url: str, project_id: str | None) -> str:
    """``cocalc://<host>[/<project id>]`` for a server's base URL."""
    host = urlsplit(base_url).netloc or base_url
    return f"cocalc://{host}" + (f"/{project_id}" if project_id else "")


def dataset(where: str, base_url: str, project_id: str | None) -> Any:
    """A dataset for a notebook's location: ``project:<path>`` in the project, a URL in its own
    scheme and host, anything else a local file."""
    from pathlib import Path

    if where.startswith("project:"):
        return Dataset(namespace=cocalc_namespace(base_url, project_id), name=where[8:])
    parts = urlsplit(where)
    if parts.scheme and parts.scheme != "file" and "://" in where:
        return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/"))
    return Dataset(namespace="file", name=str(Path(parts.path or where).resolve()))


def operator_lineage(
    base_url: str,
    project_id: str | None,
    *,
    job_id: str | None = None,
    kernel: str | None = None,
    status: str | None = None,
    exit_code: int | None = None,
    inputs: list[Any] | None = None,
    outputs: list[Any] | None = None,
) -> OperatorLineage[Any, Any]:
    """The task's lineage: the ``cocalc`` run facet, the job as an external query, datasets."""
    namespace = cocalc_namespace(base_url, project_id)
    run_facets: dict[str, Any] = {
        "cocalc": CocalcRunFacet(
            host=cocalc_namespace(base_url, None),
            project_id=project_id,
            job_id=job_id,
            kernel=kernel,
            status=status,
            exit_code=exit_code,
        )
    }
    if job_id:
        run_facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=job_id, source=namespace
        )
    return OperatorLineage(inputs=inputs or [], outputs=outputs or [], run_facets=run_facets)
