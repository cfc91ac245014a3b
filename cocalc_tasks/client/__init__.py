"""Talking to a CoCalc server: :class:`CocalcClient` and what it is made of.

- :mod:`~cocalc_tasks.client.client`: ``CocalcClient``, one keep-alive session for the Jupyter
  and exec APIs;
- :mod:`~cocalc_tasks.client.config`: host, key and project from arguments or ``COCALC_*``;
- :mod:`~cocalc_tasks.client.transport`: retries and abortable requests;
- :mod:`~cocalc_tasks.client.routes`: the three routes to a Jupyter kernel (v2, hub, project);
- :mod:`~cocalc_tasks.client.exec_calls`: the exec API's calls (commands and async jobs);
- :mod:`~cocalc_tasks.client.job_polling`: waiting for a job from asyncio code;
- :mod:`~cocalc_tasks.client.kernel_session`: state across calls by replaying history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocalc_tasks._lazy import lazy_exports

#: Loaded on first use, so importing one light module of this package stays light.
_EXPORTS = {
    "CocalcClient": "cocalc_tasks.client.client",
    "KernelSession": "cocalc_tasks.client.kernel_session",
    "poll_job": "cocalc_tasks.client.job_polling",
    "DEFAULT_HOST": "cocalc_tasks.client.config",
    "DEFAULT_TIMEOUT": "cocalc_tasks.client.config",
    "Timeout": "cocalc_tasks.client.config",
    "resolve_settings": "cocalc_tasks.client.config",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from cocalc_tasks.client.client import CocalcClient as CocalcClient
    from cocalc_tasks.client.config import DEFAULT_HOST as DEFAULT_HOST
    from cocalc_tasks.client.config import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
    from cocalc_tasks.client.config import Timeout as Timeout
    from cocalc_tasks.client.config import resolve_settings as resolve_settings
    from cocalc_tasks.client.job_polling import poll_job as poll_job
    from cocalc_tasks.client.kernel_session import KernelSession as KernelSession
