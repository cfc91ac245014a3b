import sys, tempfile, time, statistics
from bench.common import KEY, tree_cpu, own_cpu
from bench.throughput import throughput
from cocalc_tasks import CocalcClient
from cocalc_tasks.server.local_server import LocalServer
args = sys.argv[1:]
with tempfile.TemporaryDirectory() as data, LocalServer(data_dir=data, api_keys=[KEY], args=["--kernels", "python3", *args]) as server:
    server.wait_for_pool("python3", 2)
    lat = []
    with CocalcClient(KEY, server.url) as c:
        for i in range(15): c.execute(f"2+3 # w{i}", "python3", no_cache=True)
        for i in range(60):
            server.wait_for_pool("python3", 2); time.sleep(0.05)
            t = time.perf_counter(); c.execute(f"2+3  # {i}", "python3", no_cache=True); lat.append(time.perf_counter() - t)
        for i in range(50): c.execute("2+3", "python3")
        hits = []
        for i in range(100):
            t = time.perf_counter(); c.execute("2+3", "python3"); hits.append(time.perf_counter() - t)
    print("warm p50 ms", round(statistics.median(lat)*1000, 2), "hit p50", round(statistics.median(hits)*1000, 2))
    pid = server.process.pid
    c0 = tree_cpu([pid]); s0 = own_cpu(pid)
    n = 400
    rate = throughput(server, 4, n)
    time.sleep(1)
    c1 = tree_cpu([pid]); s1 = own_cpu(pid)
    print("4 clients calls/s", round(rate, 1), "cpu/call ms", round((c1 - c0) / n * 1000, 1), "server", round((s1 - s0) / n * 1000, 1))
