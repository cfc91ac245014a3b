"""A project's caps: memory and processes for all of its processes together.

``--project-limits "memory=1000M processes=512"``; the defaults follow CoCalc's free projects
(``DEFAULT_QUOTAS`` in ``src/packages/util/upgrade-spec.js``, sagemathinc/cocalc: 1000 MB of
memory). CoCalc has no process quota of its own; 512 leaves room for a few kernels (each is
several threads, and a thread counts) and stops a fork bomb.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_POOL_CAPS", "DEFAULT_PROJECT_CAPS", "Caps"]

DEFAULT_PROJECT_CAPS = "memory=1000M processes=512"
#: The global pool is the operator's own (sized by ``--pool-size``): no memory cap, but a
#: process cap, so a fork bomb sent anonymously stops there.
DEFAULT_POOL_CAPS = "processes=1024"

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Caps:
    """Memory (bytes) and processes (tasks: threads count) of one area; None: uncapped."""

    memory: int | None = None
    processes: int | None = None

    @classmethod
    def parse(cls, text: str) -> Caps:
        """``"memory=512M processes=64"`` (units K, M, G, T; none of either: uncapped)."""
        values: dict[str, int | None] = {}
        for word in text.replace(",", " ").split():
            if word == "none":
                continue
            name, sep, value = word.partition("=")
            if not sep or name not in ("memory", "processes"):
                raise ValueError(f"{word!r} is not a cap: use memory=SIZE processes=N, or none")
            values[name] = None if value == "none" else _number(word, value, name == "memory")
        return cls(**values)

    @property
    def any(self) -> bool:
        return self.memory is not None or self.processes is not None

    def as_text(self) -> str:
        words = []
        if self.memory is not None:
            words.append(f"memory={_size(self.memory)}")
        if self.processes is not None:
            words.append(f"processes={self.processes}")
        return " ".join(words) or "none"


def _number(word: str, value: str, sized: bool) -> int:
    unit = value[-1:].upper() if sized and value[-1:].isalpha() else ""
    digits = value[: len(value) - len(unit)] if unit else value
    if unit not in _UNITS or not digits.isdigit() or int(digits) < 1:
        what = "a size such as 512M or 2G" if sized else "a positive whole number"
        raise ValueError(f"{word!r}: the value must be {what}")
    return int(digits) * _UNITS[unit]


def _size(value: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)
