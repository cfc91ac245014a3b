"""bench/results.md and bench/results.png from the figures."""

from __future__ import annotations

import platform
from typing import Any

import psutil

from bench.common import OUT, QUICK
from bench.latency import PAUSE

#: What the profiles showed (cProfile of the server under load and of forked kernels, and the
#: phase split of row 13); the profiles themselves are not kept.
FINDINGS = [
    "## Where a computed call's CPU went, and what removed it",
    "",
    "Profiled with cProfile (the server under 3,000 calls; forked kernels from start to exit) "
    "and split by the phase metrics of row 13. With jupyter_client kernels a computed python3 "
    "call cost 14-24 ms of server CPU and 60-100 ms in the zygote and the kernel (row 13's "
    "before column, and earlier runs):",
    "",
    "- **the kernel's own start, about 60% of its CPU**: `IPKernelApp.initialize` in every "
    "forked child (command line and configuration parsing, `ZMQInteractiveShell.__init__` with "
    "its magics and formatters, regular expressions compiled again), then five ZMQ sockets, a "
    "heartbeat and four threads; the two pool warm-up cells were most of the rest;",
    "- **the server's kernel take, 11 ms, and execute, 5 ms**: an `AsyncKernelManager` and an "
    "`AsyncKernelClient` per kernel, a connection file, ZMQ channels, `kernel_info` round "
    "trips, then each message's signature and deserialisation;",
    "- **the store, 0.5 ms**: a cache hit was a write transaction (select, then update the "
    "expiry) plus an API-log transaction, both before the answer.",
    "",
    "What removed it: the zygote now builds ipykernel's application, kernel and shell once, "
    "runs silent warm-up cells there (first compile, result and traceback), and forks a child "
    "per call that only renews its per-process state, connects to one Unix socket and runs "
    "one silent cell while it waits in the pool (`cocalc_tasks/server/processes/"
    "prepared_kernel.py`). The server speaks to it with length-prefixed frames "
    "(`cocalc_tasks/server/jupyter/prepared.py`): no manager, client, connection file or "
    "ZMQ. A cache hit is one indexed read; the expiry push, the API-log row, the cache write "
    "and the phase metrics run after the answer. On the client, requests read the "
    "environment's proxy settings twice per request (about 0.15 ms); the session now reads "
    "them once per host.",
    "",
]


# -- report -------------------------------------------------------------------------------------
def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def write_markdown(r: dict[str, Any]) -> None:
    k = r["kernel_starts"]
    c, w, h, t, i, s = (
        r["client_overhead"],
        r["warm_latency"],
        r["cache_hits"],
        r["throughput"],
        r["imports"],
        r["soak"],
    )
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Run: {r['date']}{' (quick mode)' if QUICK else ''}. "
        "Every comparison was measured side by side in this one run (`make bench`).",
        "",
        "| # | measure | result | target |",
        "|---|---|---|---|",
        f"| 1 | client overhead: `CocalcClient.execute` vs raw `requests.Session` POST, "
        f"{c['cocalc_client']['n']} cache-hit calls | p50 {c['cocalc_client']['p50_ms']:.2f} ms vs "
        f"{c['raw_requests']['p50_ms']:.2f} ms: **{c['ratio_p50']:.2f}x** | small |",
        f"| 2 | warm-pool call `2+3` (fresh kernel per call) | p50 {w['server_call']['p50_ms']:.1f} ms, "
        f"p95 {w['server_call']['p95_ms']:.1f} ms | |",
        f"| 2 | raw jupyter_client warm round trip, paced as the server calls ({PAUSE * 1000:.0f} ms "
        f"idle before each) | p50 {w['raw_jupyter_client_paced']['p50_ms']:.1f} ms, "
        f"p95 {w['raw_jupyter_client_paced']['p95_ms']:.1f} ms | |",
        f"| 2 | raw jupyter_client warm round trip, back to back | p50 "
        f"{w['raw_jupyter_client']['p50_ms']:.1f} ms, p95 {w['raw_jupyter_client']['p95_ms']:.1f}"
        " ms | |",
        f"| 2 | ratio server / raw, like for like (paced) | **{w['ratio_vs_raw_paced_p50']:.2f}x**"
        " | <= 2x |",
        f"| 2 | ratio server / raw back to back (stricter) | **{w['ratio_vs_raw_p50']:.2f}x** "
        "| <= 2x |",
        f"| 2 | papermill one-cell notebook | p50 {w['papermill']['p50_ms']:.0f} ms, "
        f"p95 {w['papermill']['p95_ms']:.0f} ms: {w['papermill_over_server_p50']:.0f}x slower "
        "than a server call | |",
        f"| 3 | cache hit | p50 **{h['p50_ms']:.2f} ms**, p95 {h['p95_ms']:.2f} ms | p50 <= 1 ms |",
        f"| 4 | throughput, distinct calls, 1 / 4 / 8 clients | {t['1_clients_per_s']:.2f} / "
        f"**{t['4_clients_per_s']:.2f}** / {t['8_clients_per_s']:.2f} calls/s | |",
        f"| 4 | papermill sequential, `execute_notebook` in one process | "
        f"{t['papermill_sequential_per_s']:.2f} notebooks/s | |",
        f"| 4 | ratio 4 clients / papermill in-process (the stricter baseline) | "
        f"**{t['ratio_4_clients_vs_papermill']:.2f}x** | >= 3x |",
        f"| 4 | papermill CLI, one notebook per command (p50 {w['papermill_cli']['p50_ms']:.0f} ms) "
        f"| {t['papermill_cli_sequential_per_s']:.2f} notebooks/s; ratio 4 clients / CLI "
        f"**{t['ratio_4_clients_vs_papermill_cli']:.2f}x** | |",
        f"| 4 | kernel-spawn capacity (jupyter_client exec starts), 4 parallel starters | "
        f"{t['kernel_spawn_capacity_4_starters_per_s']:.2f} kernels/s; 4 clients reach "
        f"**{t['ratio_4_clients_vs_spawn_capacity']:.0%}** of it | ~75% |",
        f"| 4 | kernel start to ready, one at a time (warm-up cells incl.), prepared / forked "
        f"jupyter_client / exec'd | p50 **{k['prepared']['p50_ms']:.0f}** / "
        f"{k['forked']['p50_ms']:.0f} / {k['execd']['p50_ms']:.0f} ms | |",
        f"| 4 | 4 clients, server started with `--no-fork-kernels` (every kernel exec'd) | "
        f"{t['4_clients_no_fork_per_s']:.2f} calls/s: "
        f"{t['4_clients_no_fork_per_s'] / t['papermill_sequential_per_s']:.2f}x papermill | |",
        f"| 5 | `import cocalc_tasks` | {i['import_cocalc_tasks_ms']:.0f} ms | |",
    ]
    if "airflow_operator_over_sdk_ms" in i:
        lines.append(
            f"| 5 | Airflow operator module over `import airflow.sdk` "
            f"({i['airflow_sdk_ms']:.0f} ms) | **+{i['airflow_operator_over_sdk_ms']:.1f}"
            " ms** | <= 50 ms |"
        )
    if "prefect_tasks_over_prefect_ms" in i:
        lines.append(
            f"| 5 | `prefect_tasks` over `import prefect` ({i['prefect_ms']:.0f} ms) | "
            f"+{i['prefect_tasks_over_prefect_ms']:.1f} ms | |"
        )
    lines += [
        f"| 6 | server RSS over {s['calls']} calls (not counting kernels) | "
        f"{s['rss_first_mb']:.1f} MB after {s['samples'][0][0]} calls -> {s['rss_last_mb']:.1f} MB "
        f"after {s['calls']} | <= 100 MB, flat |",
        f"| 6 | kernel processes after {s['calls']} calls | {s['kernel_processes_after']} "
        f"(pool size {s['pool_size']}) | = pool size |",
        f"| 6 | zygote RSS, shared copy-on-write with the kernels it forks | "
        f"{s['zygote_rss_mb']:.1f} MB | |",
    ]
    e = r["exec"]
    lines += [
        f"| 7 | blocking exec of `true` vs `subprocess.run(['true'])` "
        f"({e['subprocess_true']['p50_ms']:.2f} ms) + one loopback HTTP round trip "
        f"({e['loopback_round_trip']['p50_ms']:.2f} ms) | p50 {e['blocking_true']['p50_ms']:.2f} ms:"
        f" **{e['blocking_ratio_vs_floor_p50']:.2f}x** | <= 3x |",
        f"| 7 | `async_get` poll of a running job | p50 **{e['async_get']['p50_ms']:.2f} ms**, "
        f"p95 {e['async_get']['p95_ms']:.2f} ms | p50 <= 3 ms |",
        f"| 7 | server CPU while 8 jobs run, each polled once a second ({e['watch_seconds']:.0f} s;"
        f" idle: {e['idle_server_cpu_pct']:.2f}%) | **{e['eight_jobs_polled_cpu_pct']:.2f}%** of "
        "one core | <= 2% |",
    ]
    b = r.get("sandbox")
    if b:
        for where, label in (("global", "global pool"), ("project", "inside one project")):
            lines += [
                f"| 8 | sandbox off / on, {label}: warm call p50 | "
                f"{b[f'none_{where}_warm']['p50_ms']:.1f} / {b[f'bwrap_{where}_warm']['p50_ms']:.1f}"
                f" ms ({b[f'{where}_warm_p50_ratio']:.2f}x) | |",
                f"| 8 | sandbox off / on, {label}: 4 clients | "
                f"{b[f'none_{where}_4_clients_per_s']:.1f} / "
                f"{b[f'bwrap_{where}_4_clients_per_s']:.1f} calls/s "
                f"(**{b[f'{where}_throughput_change']:+.0%}**) | fall <= 20% |",
            ]
    g = r.get("sage")
    if g and "skipped" not in g:
        fd, ed = g["forked_distinct_4_clients"], g["exec_distinct_4_clients"]
        lines += [
            f"| 9 | Sage, distinct calls with 4 clients (`factor` of 20-digit numbers): "
            "prepared / exec'd | "
            f"**{fd['calls_per_s']:.1f}** / {ed['calls_per_s']:.2f} calls/s "
            f"(**{g['distinct_speedup']:.1f}x**); p50 {fd['p50_ms']:.0f} / "
            f"{ed['p50_ms']:.0f} ms | >= 40/s |",
            f"| 9 | Sage, the same with Sage's `bin/` on `PATH` | "
            f"**{g['forked_bin_on_path_distinct_4_clients']['calls_per_s']:.1f}** calls/s, p50 "
            f"{g['forked_bin_on_path_distinct_4_clients']['p50_ms']:.0f} ms | >= 40/s |",
            f"| 9 | Sage warm call vs python3 warm call (forked), p50 | "
            f"{g['forked_sage_warm']['p50_ms']:.1f} / {g['forked_python3_warm']['p50_ms']:.1f} ms "
            f"(**{g['sage_vs_python3_warm_p50']:.2f}x**) | <= 2x |",
            f"| 9 | memory each warm Sage kernel adds (PSS): forked / exec'd | "
            f"**{g['forked_kernel_pss_mib']:.0f}** / {g['exec_kernel_pss_mib']:.0f} MiB | |",
            f"| 9 | Prefect flow, `execute_code.map` of `factor` over 100 distinct Sage inputs: "
            f"forked / exec'd | **{g['forked_flow_100_wall_s']:.1f}** / "
            f"{g['exec_flow_100_wall_s']:.1f} s | |",
        ]
    p = r.get("replicas")
    if p:
        hit, cancel = p["cache_hit"], p["cancel_through_other_replica"]
        ceiling = p["postgres_core_ceiling_per_s"]
        lines += [
            f"| 10 | cache hit p50, PostgreSQL / SQLite (side by side) | "
            f"{hit['postgresql']['p50_ms']:.2f} / {hit['sqlite']['p50_ms']:.2f} ms "
            f"(**{p['cache_hit_pg_over_sqlite_p50']:.2f}x**) | <= 2x |",
            f"| 10 | distinct calls, 4 clients: 1 replica / 2 replicas on one PostgreSQL, "
            f"same {p['cores']} cores (median of 3 alternating rounds) | "
            f"{p['distinct_4_clients_1_replica_per_s']:.1f} / "
            f"{p['distinct_4_clients_2_replicas_per_s']:.1f} calls/s "
            f"(**{p['two_over_one'] - 1:+.0%}**) | within 10% |",
            f"| 10 | per computed call: replica CPU / PostgreSQL CPU | "
            f"{p['replica_cpu_ms_per_call']:.0f} / {p['postgres_cpu_ms_per_call']:.1f} ms | |",
            f"| 10 | estimate: N machines like this one, PostgreSQL elsewhere | "
            f"~{p['per_machine_estimate_per_s']:.0f} x N calls/s, up to ~"
            f"{ceiling:.0f} calls/s per PostgreSQL core | |"
            if ceiling
            else "| 10 | estimate | PostgreSQL CPU per call below measurement | |",
            f"| 10 | cancel sent through the replica not running the job, until killed | "
            f"p50 {cancel['p50_ms']:.0f} ms, p95 {cancel['p95_ms']:.0f} ms | acted on <= 1 s |",
        ]
    nb = r.get("notebooks")
    if nb:
        lines.append(
            f"| 11 | ten-cell notebook: `run_notebook` on the local server (upload, one job, "
            f"download) / papermill locally, p50 | {nb['run_notebook']['p50_ms']:.0f} / "
            f"{nb['papermill_local']['p50_ms']:.0f} ms (**{nb['ratio_p50']:.2f}x**) | <= 2x |"
        )
    pg = r.get("pages")
    if pg:
        lines += [
            f"| 12 | server CPU with {pg['pages']} job pages open in headless Chromium, following 8 "
            f"running jobs ({pg['live_polls_per_second']:.1f} live polls/s; the same jobs, no "
            f"page: {pg['jobs_only_cpu_pct']:.2f}%) | {pg['with_pages_cpu_pct']:.2f}%: "
            f"**+{pg['pages_cpu_pct']:.2f}%** of one core for the pages | small |",
            f"| 12 | a job page / a live poll | p50 {pg['job_page']['p50_ms']:.2f} / "
            f"{pg['live_poll']['p50_ms']:.2f} ms | |",
        ]
    ph = r.get("phases")
    if ph and "prepared" in ph:
        lines += _phase_rows(ph["jupyter_client"], ph["prepared"])
    lines += [
        "",
        "![results](results.png)",
        "",
        *FINDINGS,
    ]
    (OUT / "results.md").write_text("\n".join(lines))


def write_chart(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    w = r["warm_latency"]
    names = [
        "raw kernel,\nback to back",
        "raw kernel,\npaced",
        "server call\n(warm pool)",
        "cache hit",
    ]
    values = [
        w["raw_jupyter_client"]["p50_ms"],
        w["raw_jupyter_client_paced"]["p50_ms"],
        w["server_call"]["p50_ms"],
        r["cache_hits"]["p50_ms"],
    ]
    axes[0].bar(names, values, color=["#bbb", "#999", "#4474c4", "#6a4"])
    axes[0].set_ylabel("p50 latency (ms)")
    axes[0].set_title("Latency")
    t = r["throughput"]
    names = [
        "papermill\nsequential",
        "1 client",
        "4 clients",
        "8 clients",
        "exec spawn\ncapacity",
    ]
    values = [
        t["papermill_sequential_per_s"],
        t["1_clients_per_s"],
        t["4_clients_per_s"],
        t["8_clients_per_s"],
        t["kernel_spawn_capacity_4_starters_per_s"],
    ]
    axes[1].bar(names, values, color=["#999", "#4474c4", "#4474c4", "#4474c4", "#ccc"])
    axes[1].set_ylabel("distinct calls per second")
    axes[1].set_title("Throughput")
    s = r["soak"]["samples"]
    axes[2].plot([x[0] for x in s], [x[1] for x in s], marker="o", label="server RSS (MB)")
    axes[2].set_xlabel("calls")
    axes[2].set_ylabel("MB")
    axes[2].set_ylim(0, max(120, max(x[1] for x in s) * 1.2))
    twin = axes[2].twinx()
    twin.plot(
        [x[0] for x in s], [x[2] for x in s], color="#c44", marker="x", label="kernel processes"
    )
    twin.set_ylim(0, 12)
    axes[2].set_title("Soak")
    axes[2].legend(loc="lower left")
    twin.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "results.png", dpi=110)


def _phase_rows(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Row 13: one computed python3 call, before (jupyter_client kernels, forked from the
    zygote: ``--no-prepare-kernels``) and after (prepared kernels, the default), side by side."""

    def pair(key: str, digits: int = 1) -> str:
        return f"{before[key]:.{digits}f} / **{after[key]:.{digits}f}**"

    rows = [
        f"| 13 | one computed python3 call, one client ({after['calls']} calls each), phase by "
        "phase: wall / server CPU ms, before (jupyter_client kernels, `--no-prepare-kernels`) "
        "-> after (prepared kernels) | "
        + "; ".join(
            f"{name.replace('_', ' ')} {v['wall_ms']:.2f} / {v['cpu_ms']:.2f} -> "
            f"{after['phases'][name]['wall_ms']:.2f} / {after['phases'][name]['cpu_ms']:.2f}"
            for name, v in before["phases"].items()
        )
        + " | |",
        f"| 13 | the same calls: route handling outside the phases (wall ms); the whole call "
        f"at the client (ms), before / after | {pair('routing_ms', 2)}; "
        f"{pair('client_wall_ms')} | |",
        f"| 13 | the same calls: server CPU per call (of it outside the phases: HTTP, JSON, "
        f"refills) / zygotes and kernels, before -> after | {before['server_cpu_ms']:.1f} "
        f"({before['server_cpu_outside_phases_ms']:.1f}) / {before['kernel_side_cpu_ms']:.1f} -> "
        f"**{after['server_cpu_ms']:.1f}** ({after['server_cpu_outside_phases_ms']:.1f}) / "
        f"**{after['kernel_side_cpu_ms']:.1f} ms** | |",
        f"| 13 | a kernel's start, fork to ready, off the request path (the pool refills), "
        f"wall ms, before / after | {pair('kernel_start_ms')} | |",
        f"| 13 | CPU per computed python3 call, all processes (server, sandboxes, zygotes, "
        f"kernels), 4 clients, before / after | {pair('distinct_4_clients_cpu_ms_per_call')} ms "
        "| <= 25 ms |",
        f"| 13 | distinct python3 calls/s, 4 clients, before / after | "
        f"{pair('distinct_4_clients_per_s')} | >= 60 |",
        f"| 13 | warm call `2+3` p50, before / after | {pair('warm_p50_ms', 2)} ms | <= 6 ms |",
    ]
    return rows
