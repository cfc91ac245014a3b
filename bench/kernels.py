"""Kernel start to ready, prepared, forked (jupyter_client) and exec'd, through the pool's
public start_kernel."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    QUICK,
    ms,
)


async def _pool_starts(fork: bool, n: int, prepare: bool = True) -> list[float]:
    """Seconds from asking the server's pool for a kernel to its being ready (warm-up incl.)."""
    from cocalc_tasks.server.jupyter.kernelspecs import KernelCatalog
    from cocalc_tasks.server.jupyter.pool import KernelPools

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IPYTHONDIR": f"{tmp}/ipython", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        pools = KernelPools(
            KernelCatalog(),
            scratch_dir=Path(tmp),
            kernel_env=env,
            default_size=0,
            fork=fork,
            prepare=prepare,
        )
        out = []
        try:
            for _ in range(n + 1):  # the first one also starts the zygote: not counted
                started = time.perf_counter()
                kernel = await pools.start_kernel("python3")
                out.append(time.perf_counter() - started)
                await kernel.dispose()
        finally:
            await pools.close()
        return out[1:]


def kernel_starts() -> dict[str, Any]:
    n = 5 if QUICK else 20
    return {
        "prepared": ms(asyncio.run(_pool_starts(True, n))),
        "forked": ms(asyncio.run(_pool_starts(True, n, prepare=False))),
        "execd": ms(asyncio.run(_pool_starts(False, n))),
    }
