"""Per-process limits of kernels and commands, in ``ulimit``'s names and units.

CoCalc's stateless-API kernels run under ``ulimit -n 1000 -f 10485760 -t 30 -v 3000000``. The
limits are set in the process itself before it runs the program: in the forked child of a
zygote, or in ``Popen``'s child before ``exec`` (:mod:`~cocalc_tasks.server.sandbox.child`), so
``bwrap`` and everything under it inherit them.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Limits", "apply_rlimits"]

# ulimit's names and units: KiB for file size and address space, seconds for CPU.
_LIMITS = {
    "nofile": (resource.RLIMIT_NOFILE, 1),
    "fsize": (resource.RLIMIT_FSIZE, 1024),
    "cpu": (resource.RLIMIT_CPU, 1),
    "as": (resource.RLIMIT_AS, 1024),
}


@dataclass(frozen=True)
class Limits:
    """Resource limits, in ``ulimit``'s units (``as`` and ``fsize`` in KiB)."""

    values: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Limits:
        """``"nofile=1000 fsize=10485760 cpu=30 as=3000000"``; ``"none"`` for no limits."""
        text = text.strip()
        if text in ("", "none"):
            return cls({})
        values: dict[str, int] = {}
        for word in text.replace(",", " ").split():
            name, sep, value = word.partition("=")
            if not sep or name not in _LIMITS:
                raise ValueError(f"{word!r} is not a limit: use {'/'.join(_LIMITS)}=N, or none")
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{word!r}: the limit must be a whole number") from None
            if number < 1:
                raise ValueError(f"{word!r}: the limit must be positive")
            values[name] = number
        return cls(values)

    def merged(self, other: Limits) -> Limits:
        return Limits({**self.values, **other.values})

    def rlimits(self) -> list[tuple[int, int]]:
        """``(resource, bytes or count)`` pairs for ``setrlimit``."""
        return [(_LIMITS[name][0], value * _LIMITS[name][1]) for name, value in self.values.items()]

    def as_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "none"


def apply_rlimits(rlimits: Sequence[tuple[int, int]]) -> None:
    """Set limits in this process; a hard limit below the value keeps the hard limit."""
    for which, value in rlimits:
        _soft, hard = resource.getrlimit(which)
        target = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (target, target))
