"""``POST /api/conat/project``: CoCalc master's project bridge, as the official ``cocalc-api``
``Project`` class calls it.

Body: ``{project_id?, name: "<group>.<function>", args: [...], timeout?: ms (15000)}``. The
answer is the function's return value as JSON, or ``{"error": ...}``; a function that runs
past ``timeout`` gives master's ``timeout - callHub: ...`` text (the command itself goes on,
as on CoCalc). Functions:

- ``system.ping`` → ``{"now": ms}`` (bare ``ping`` → ``"pong"``);
- ``system.exec`` → the exec API's result object, errors without master's route prefix;
- ``system.jupyterExecute`` → the list of outputs;
- ``system.listJupyterKernels`` → ``[{pid, connectionFile, kernel_name}]``: the project's warm
  kernels (with the sandbox off, pools are shared by all projects, and all see the same ones;
  inside a sandbox the pid of a forked kernel is the one in the project's PID namespace);
- ``system.stopJupyterKernel({pid})`` → ``{"success": bool}``.

With ``--flavor cocalc-ai`` it is the rewrite's bridge: the three ``system`` Jupyter functions
are gone, ``jupyter.apiExecute`` runs code (same options, same answer) and ``jupyter.kernels``
lists kernel specs; an unknown function's message lists the group's functions.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cocalc_tasks.server.api_error import ApiError
from cocalc_tasks.server.auth import Identity, auth_scheme
from cocalc_tasks.server.exec.service import ExecService
from cocalc_tasks.server.jupyter.pool import KernelPools
from cocalc_tasks.server.jupyter.service import ExecutionService
from cocalc_tasks.server.projects import checked_project_id
from cocalc_tasks.server.sandbox import Area, Sandbox

__all__ = ["ProjectBridge"]

NO_KEY = "You must provide authentication via an API key."
UNKNOWN_KEY = "must sign in as project or account"
UNKNOWN_ACCOUNT_KEY = "must sign in with an account API key"  # the rewrite's
NO_PROJECT = "must specify project_id or use project-specific api key"
WRONG_PROJECT = "project specific api key must match requested project"
DEFAULT_TIMEOUT_MS = 15000

Function = Callable[[str, list[Any]], Awaitable[Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


class ProjectBridge:
    def __init__(
        self,
        execs: ExecService,
        kernels: ExecutionService,
        pools: KernelPools,
        sandbox: Sandbox | None = None,
        *,
        rewrite: bool = False,
    ) -> None:
        self.execs = execs
        self.kernels = kernels
        self.pools = pools
        self.sandbox = sandbox
        #: cocalc-ai's bridge: Jupyter under ``jupyter.*``, its own unknown-function text.
        self.rewrite = rewrite
        self._functions: dict[str, Function] = {
            "ping": self._pong,
            "system.ping": self._ping,
            "system.exec": self._exec,
        }
        if rewrite:
            self._functions["jupyter.apiExecute"] = self._jupyter_execute
            self._functions["jupyter.kernels"] = self._kernel_specs
        else:
            self._functions["system.jupyterExecute"] = self._jupyter_execute
            self._functions["system.listJupyterKernels"] = self._list_kernels
            self._functions["system.stopJupyterKernel"] = self._stop_kernel

    def project_for(self, params: Mapping[str, Any], identity: Identity, header: str | None) -> str:
        """The project this caller may reach, with master's messages for every refusal."""
        scheme = auth_scheme(header)
        if scheme is None:
            raise ApiError(NO_KEY)
        if scheme.lower() not in ("basic", "bearer"):
            raise ApiError(f"Unknown authorization type '{scheme}'")
        if not identity.signed_in:
            raise ApiError(
                UNKNOWN_ACCOUNT_KEY if self.rewrite else UNKNOWN_KEY, refusal="not_signed_in"
            )
        project_id = params.get("project_id") or None
        if project_id is None:
            if identity.kind == "project" and identity.project_id is not None:
                return identity.project_id
            raise ApiError("must specify project_id" if self.rewrite else NO_PROJECT)
        project_id = str(uuid.UUID(checked_project_id(project_id)))
        if identity.kind == "project" and identity.project_id != project_id:
            raise ApiError(WRONG_PROJECT, refusal="other_project")
        return project_id

    async def call(self, params: Mapping[str, Any], project_id: str) -> Any:
        name = params.get("name")
        function = self._functions.get(name) if isinstance(name, str) else None
        if function is None:
            if self.rewrite and isinstance(name, str):  # the rewrite lists the group's names
                group = name.split(".", 1)[0]
                names = [f.split(".", 1)[1] for f in self._functions if f.startswith(group + ".")]
                raise ApiError(
                    f"Error: unknown function '{name}' -- available functions are "
                    + json.dumps(names, separators=(",", ":"))
                )
            raise ApiError(f"Error: unknown function '{name}'")
        args = params.get("args")
        if args is None:
            args = []
        if not isinstance(args, list):
            raise ApiError("Error: args must be a list")
        timeout = params.get("timeout")
        if timeout is None:
            timeout = DEFAULT_TIMEOUT_MS
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ApiError("Error: timeout must be a positive number of milliseconds")
        try:
            return await asyncio.wait_for(function(project_id, args), timeout / 1000)
        except TimeoutError:
            raise ApiError(
                f"timeout - callHub: subject='project.{project_id}.0.api.-', "
                f"name='{name}', code='408' "
            ) from None

    # -- functions -------------------------------------------------------------------------
    async def _pong(self, project_id: str, args: list[Any]) -> str:
        return "pong"

    async def _ping(self, project_id: str, args: list[Any]) -> dict[str, int]:
        return {"now": now_ms()}

    async def _exec(self, project_id: str, args: list[Any]) -> dict[str, Any]:
        options = _options(args)
        return await self.execs.call(options, project_id, flavor="conat")

    async def _jupyter_execute(self, project_id: str, args: list[Any]) -> list[Any]:
        options = _options(args)
        params: dict[str, Any] = {
            key: options[key] for key in ("input", "kernel", "history", "path") if key in options
        }
        # The project runs the code itself: no hub result cache on this route.
        params.update(project_id=project_id, noCache=True)
        owner = Identity("project", project_id)
        try:
            answer = await self.kernels.execute(params, owner, route="project")
        except ApiError as exc:
            text = str(exc)
            raise ApiError(text if text.startswith("Error: ") else f"Error: {text}") from None
        output: list[Any] = answer.get("output", [])
        return output

    async def _kernel_specs(self, project_id: str, args: list[Any]) -> list[dict[str, Any]]:
        return self.kernels.kernels({"project_id": project_id}, Identity("project", project_id))

    def _area(self, project_id: str) -> Area | None:
        return self.sandbox.area(project_id) if self.sandbox is not None else None

    async def _list_kernels(self, project_id: str, args: list[Any]) -> list[dict[str, Any]]:
        area = self._area(project_id)
        await self.pools.settled(area)  # a refill in flight (after a call, a stop) lands first
        return [
            {"pid": k.pid, "connectionFile": k.connection_file, "kernel_name": k.spec_name}
            for k in self.pools.pooled(area)
            if k.pid is not None
        ]

    async def _stop_kernel(self, project_id: str, args: list[Any]) -> dict[str, bool]:
        pid = _options(args).get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ApiError("Error: pid must be an integer")
        return {"success": self.pools.stop_pooled(pid, self._area(project_id))}


def _options(args: list[Any]) -> dict[str, Any]:
    if not args:
        return {}
    first = args[0]
    if not isinstance(first, dict):
        raise ApiError("Error: args[0] must be an object")
    return first
