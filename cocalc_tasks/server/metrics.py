"""What ``/metrics`` exports, in Prometheus' text format (prometheus-client).

Each server (each replica) has its own :class:`ServerMetrics` with its own registry: counters
and histograms are updated where things happen (a request answered, a kernel started, a job
finished), and the gauges that describe the present (pool sizes, running jobs, quota use) are
read from the services when Prometheus scrapes (:class:`_Present`), so they cost nothing
between scrapes. Label values are bounded: routes are the server's own, kernels its
kernelspecs, statuses CoCalc's four. No label ever holds a key, a project id or a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cocalc_tasks.server.jupyter.phases import PhaseClock
from cocalc_tasks.server.sandbox.areas import ANONYMOUS

__all__ = ["CONTENT_TYPE", "Present", "ServerMetrics"]

#: The media type of the text format, as prometheus-client writes it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_START = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Present:
    """Readers of the server's present state, called at scrape time."""

    #: ``(area, kernelspec) -> {"warm": n, "busy": n, "starting": n}`` of every pool
    #: (``KernelPools.census``).
    census: Callable[[], Mapping[tuple[str, str], Mapping[str, int]]] = dict
    #: This replica's running jobs.
    running_jobs: Callable[[], int] = lambda: 0
    #: ``scope -> (seconds used in the period, limit or 0)``: the global pool's quotas.
    quotas: Callable[[], Mapping[str, tuple[float, float]]] = dict


def _summed(
    census: Mapping[tuple[str, str], Mapping[str, int]],
) -> dict[tuple[str, str], dict[str, int]]:
    """Pool counts per (``global`` or ``project``, kernelspec): project pools summed, so that
    the metric's labels stay bounded however many projects there are."""
    summed: dict[tuple[str, str], dict[str, int]] = {}
    for (area, kernel), states in census.items():
        key = ("global" if area == ANONYMOUS else "project", kernel)
        into = summed.setdefault(key, {"warm": 0, "busy": 0, "starting": 0})
        for state, count in states.items():
            into[state] = into.get(state, 0) + count
    return summed


class _Present(Collector):
    def __init__(self, present: Present) -> None:
        self.present = present

    def collect(self) -> Iterable[Metric]:
        census = self.present.census()
        pools = GaugeMetricFamily(
            "cocalc_tasks_pool_kernels",
            "Kernels per pool and state: warm (ready), busy (running a call), starting",
            labels=["area", "kernel", "state"],
        )
        for (area, kernel), states in sorted(_summed(census).items()):
            for state, count in sorted(states.items()):
                pools.add_metric([area, kernel, state], count)
        yield pools
        yield GaugeMetricFamily(
            "cocalc_tasks_jobs_running",
            "Exec jobs this replica is running",
            value=self.present.running_jobs(),
        )
        used = GaugeMetricFamily(
            "cocalc_tasks_quota_used_seconds",
            "Compute seconds used in the global pool in the quota period (cache hits and "
            "project calls excluded, as CoCalc counts)",
            labels=["scope"],
        )
        limit = GaugeMetricFamily(
            "cocalc_tasks_quota_limit_seconds",
            "The quota for that period (0: none)",
            labels=["scope"],
        )
        for scope, (seconds, cap) in sorted(self.present.quotas().items()):
            used.add_metric([scope], seconds)
            limit.add_metric([scope], cap)
        yield used
        yield limit
        yield GaugeMetricFamily(
            "cocalc_tasks_project_areas",
            "Projects with live kernels or sandboxes on this replica",
            value=len({area for area, _ in census} - {ANONYMOUS}),
        )


class ServerMetrics:
    """The instruments of one server; :meth:`exposition` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Labelled children of the hot paths, looked up once (``labels()`` costs microseconds).
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._phase_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.requests = Counter(
            "cocalc_tasks_requests",
            "Requests answered, by route and outcome (ok, error: a CoCalc error body, "
            "internal: an unexpected failure; pages: their HTTP status)",
            ["route", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "cocalc_tasks_request_duration_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.executions = Counter(
            "cocalc_tasks_executions",
            "Jupyter executions, computed by a kernel or answered from the result cache",
            ["source"],
            registry=r,
        )
        self.kernel_starts = Counter(
            "cocalc_tasks_kernel_starts",
            "Kernels started: prepared (forked ready to run), forked from a zygote, or exec'd",
            ["kernel", "how"],
            registry=r,
        )
        self.kernel_start_seconds = Histogram(
            "cocalc_tasks_kernel_start_seconds",
            "Time from a kernel's start to its first answer, forked or exec'd",
            ["how"],
            buckets=_START,
            registry=r,
        )
        self.jobs_finished = Counter(
            "cocalc_tasks_jobs_finished",
            "Exec jobs this replica finished, by final status",
            ["status"],
            registry=r,
        )
        self.refusals = Counter(
            "cocalc_tasks_refusals",
            "Calls refused by the access rules: no key, another project's key, a path "
            "outside the project, a quota",
            ["reason"],
            registry=r,
        )
        self.memory_kills = Counter(
            "cocalc_tasks_memory_kills",
            "Kernels and jobs killed by their project's memory cap",
            ["what"],
            registry=r,
        )

        self.phase_seconds = Histogram(
            "cocalc_tasks_execute_phase_seconds",
            "Wall time of each phase of a Jupyter execute call (see "
            "cocalc_tasks/server/jupyter/phases.py), by call: computed or cached",
            ["phase", "call"],
            buckets=_LATENCY,
            registry=r,
        )
        self.phase_cpu = Counter(
            "cocalc_tasks_execute_phase_cpu_seconds",
            "The server's CPU time in each phase of a Jupyter execute call (its own process; "
            "kernels are apart)",
            ["phase", "call"],
            registry=r,
        )
        # Known label values start at zero, so every family is there from the first scrape.
        for source in ("computed", "cache"):
            self.executions.labels(source)
        for status in ("completed", "error", "killed"):
            self.jobs_finished.labels(status)
        for reason in ("not_signed_in", "other_project", "path", "quota"):
            self.refusals.labels(reason)
        for what in ("kernel", "job"):
            self.memory_kills.labels(what)

    def watch(self, present: Present) -> None:
        """Read ``present`` at every scrape."""
        self.registry.register(_Present(present))

    def request(self, route: str, outcome: str, seconds: float) -> None:
        key = (route, outcome)
        if (children := self._request_children.get(key)) is None:
            children = (self.requests.labels(route, outcome), self.latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def phases(self, clock: PhaseClock, call: str) -> None:
        """Record one execute call's phases."""
        for phase, seconds in clock.wall.items():
            key = (phase, call)
            if (children := self._phase_children.get(key)) is None:
                children = (
                    self.phase_seconds.labels(phase, call),
                    self.phase_cpu.labels(phase, call),
                )
                self._phase_children[key] = children
            children[0].observe(seconds)
            children[1].inc(clock.cpu.get(phase, 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
