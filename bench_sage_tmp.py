import os, sys, time, json
from bench import sage as S
from bench.common import tree_cpu
S._distinct.__globals__  # noqa
def distinct20(server, n, clients=4):
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from cocalc_tasks import CocalcClient
    lat=[]
    def one(i):
        with CocalcClient(S.KEY, server.url, timeout=(5, 180)) as c:
            t=time.perf_counter(); r=c.execute(f"factor({10**19 + 7*i})  # {uuid.uuid4().hex}", S.KERNEL); lat.append(time.perf_counter()-t); assert r.ok and r.text, r
    with ThreadPoolExecutor(clients) as p:
        t=time.perf_counter(); list(p.map(one, range(n))); el=time.perf_counter()-t
    lat.sort(); return n/el, lat[len(lat)//2]*1000
modes = sys.argv[1:] or ["off", "on"]
for mode in modes:
    env = {"PATH": f"{S.SAGE_PYTHON.parent}{os.pathsep}{os.environ.get('PATH','')}"} if mode == "on" else None
    with S._sage_server([], env) as server:
        pid = server.process.pid
        c0 = tree_cpu([pid])
        rate, p50 = distinct20(server, 120)
        time.sleep(1); c1 = tree_cpu([pid])
        print(mode, "calls/s", round(rate,1), "p50", round(p50,1), "cpu/call ms", round((c1-c0)/120*1000,1), flush=True)
