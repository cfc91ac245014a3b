"""The Mertens job's script and its known values, shared by the Airflow DAG and the Prefect flow.

``scripts/mertens.sage`` prints its progress, then one JSON line:
``{"limit": x, "mertens": M(x), "primes": pi(x)}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "scripts" / "mertens.sage"

#: M(x) and pi(x) at powers of ten (OEIS A084237 and A006880).
KNOWN = {10**4: (-23, 1229), 10**5: (-48, 9592), 10**6: (212, 78498), 10**7: (1037, 664579)}


def checked(stdout: str) -> dict[str, int]:
    """The job's JSON line, checked against the known values where there is one."""
    values: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    known = KNOWN.get(values["limit"])
    if known is not None and (values["mertens"], values["primes"]) != known:
        raise ArithmeticError(f"M and pi at {values['limit']} should be {known}: {values}")
    return {key: int(value) for key, value in values.items()}
