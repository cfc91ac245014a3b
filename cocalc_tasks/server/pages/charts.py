"""A job's CPU and memory over time as inline SVG, from its ``async_stats`` samples.

The samples are CoCalc's (``timestamp`` in ms, ``cpu_pct``, ``mem_rss`` in MiB). The chart is
two polylines on a shared time axis, each scaled to its own maximum, with the maxima written
out; no script, no library, and only numbers from the samples ever reach the markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["usage_chart"]

_W, _H, _PAD = 600, 140, 4


def _points(times: Sequence[float], values: Sequence[float], top: float) -> str:
    start, span = times[0], max(times[-1] - times[0], 1e-9)
    scale = max(top, 1e-9)
    return " ".join(
        f"{_PAD + (t - start) / span * (_W - 2 * _PAD):.1f},"
        f"{_H - _PAD - v / scale * (_H - 2 * _PAD):.1f}"
        for t, v in zip(times, values, strict=True)
    )


def _number(sample: Mapping[str, Any], name: str) -> float:
    value = sample.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def usage_chart(stats: Sequence[Mapping[str, Any]]) -> str:
    """The SVG markup, or an empty string with fewer than two samples."""
    samples = [s for s in stats if isinstance(s, Mapping) and "timestamp" in s]
    if len(samples) < 2:
        return ""
    times = [_number(s, "timestamp") / 1000.0 for s in samples]
    cpu = [_number(s, "cpu_pct") for s in samples]
    mem = [_number(s, "mem_rss") for s in samples]
    cpu_top, mem_top = max(max(cpu), 100.0), max(max(mem), 1.0)
    seconds = times[-1] - times[0]
    return (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="CPU and memory over {seconds:.0f} s">'
        f'<rect x="0" y="0" width="{_W}" height="{_H}" class="frame"/>'
        f'<polyline class="cpu" points="{_points(times, cpu, cpu_top)}"/>'
        f'<polyline class="mem" points="{_points(times, mem, mem_top)}"/>'
        f'<text x="{_PAD + 2}" y="14" class="cpu">CPU, max {max(cpu):.0f}%</text>'
        f'<text x="{_PAD + 2}" y="30" class="mem">memory, max {max(mem):.1f} MiB</text>'
        f'<text x="{_W - _PAD - 2}" y="{_H - 8}" text-anchor="end">{seconds:.0f} s</text>'
        "</svg>"
    )
