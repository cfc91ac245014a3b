"""The same outputs from a prepared kernel (forked ready from its zygote, the default) as from
an exec'd jupyter_client kernel (``--no-fork-kernels``, the reference), on a corpus that covers
what kernels send; and a fresh kernel for every call on both paths.

Outputs are compared as the API returns them, with three normalisations only: each run of
stream items is joined into its stdout and its stderr (ipykernel buffers the two apart and cuts
them by timing), ``%time``'s measured durations become ``T``, and process ids become ``PID``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from cocalc_tasks import CocalcClient
from cocalc_tasks.model.errors import CocalcKernelDiedError
from cocalc_tasks.server.local_server import LocalServer
from tests.conftest import SECRET_KEY
from tests.server.conftest import CELL_TIMEOUT, start_server

#: A 1x1 PNG.
_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2"
        "21bc330000000049454e44ae426082"
    )
).decode()

CORPUS: dict[str, str] = {
    "streams": "import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('more')",
    "execute_result": "{'a': [1, 2], 'b': 'x' * 3}",
    "display_png": (
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode('{_PNG}'), format='png'))"
    ),
    "display_svg": (
        "from IPython.display import SVG\n"
        'SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
        '<rect width="4" height="4"/></svg>\')'
    ),
    "error_traceback": "def inner():\n    raise ValueError('bad value')\n\ninner()",
    "syntax_error": "def broken(:\n    pass",
    "input_refused": "input('name? ')",
    "magic_time": "%time sum(range(1000))",
    "magic_bash": "%%bash\necho from bash\necho to stderr >&2",
    "rich_repr": (
        "class Rich:\n"
        "    def _repr_html_(self): return '<b>rich</b>'\n"
        "    def _repr_markdown_(self): return '**rich**'\n"
        "    def _repr_latex_(self): return r'$\\rho$'\n"
        "    def __repr__(self): return 'Rich()'\n"
        "Rich()"
    ),
    "matplotlib_inline": (
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2), dpi=50)\n"
        "plt.plot([1, 3, 2])\nplt.show()"
    ),
    # ipykernel's capture thread may read a subprocess's output after the cell's reply (and
    # the API then never sees it); the pause gives the reference kernel the time it needs.
    "low_level_output": (
        "import os, time\nos.system('echo from a subprocess')\ntime.sleep(0.5)\nprint('after')"
    ),
    "display_then_clear": (
        "from IPython.display import display, clear_output\n"
        "display('gone')\nclear_output()\nprint('kept')"
    ),
    "ten_megabytes": "print('x' * 10_000_000)",
    "interpreter_state": (
        "import os, sys\n"
        "(sys.path[0], sys.path[1] == os.getcwd(), os.path.basename(sys.argv[0]), __name__)"
    ),
    "timeout_interrupted": "import time\nprint('waiting')\ntime.sleep(60)",
}

#: Calls whose kernel ends: CoCalc's error message is the output.
DYING: dict[str, str] = {
    "exit_code": "import os\nos._exit(3)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "ignores_interrupts": (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\ntime.sleep(60)"
    ),
}

_DURATION = re.compile(r"\d+(\.\d+)? ?(ns|\u00b5s|\u03bcs|us|ms|s)\b")
_PID = re.compile(r"ipykernel_\d+")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = start_server(tmp_path_factory.mktemp("reference"), "--no-fork-kernels")
    srv.wait_for_pool("python3", 2)
    yield srv
    srv.stop()


def _client(server: LocalServer) -> CocalcClient:
    return CocalcClient(api_key=SECRET_KEY, host=server.url, timeout=(5, 120))


def _normalised(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run of stream items becomes its stdout, then its stderr, each joined: ipykernel
    buffers the two apart and cuts them by timing."""
    result: list[dict[str, Any]] = []
    run: dict[str, str] = {}

    def end_run() -> None:
        for name in ("stdout", "stderr"):
            if name in run:
                result.append({"name": name, "text": run.pop(name)})

    for item in outputs:
        item = dict(item)
        if isinstance(item.get("text"), str):
            item["text"] = _PID.sub("PID", _DURATION.sub("T", item["text"]))
        if "traceback" in item:
            item["traceback"] = [_PID.sub("PID", line) for line in item["traceback"]]
        if set(item) == {"name", "text"} and isinstance(item["text"], str):
            run[item["name"]] = run.get(item["name"], "") + item["text"]
            continue
        end_run()
        result.append(item)
    end_run()
    return result


def _outputs(server: LocalServer, code: str) -> Any:
    with _client(server) as client:
        try:
            return _normalised(client.execute(code, "python3", no_cache=True).outputs)
        except CocalcKernelDiedError as exc:
            return str(exc)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_prepared_kernel_answers_as_an_execd_one(
    case: str, server: LocalServer, reference: LocalServer
) -> None:
    ours, theirs = _outputs(server, CORPUS[case]), _outputs(reference, CORPUS[case])
    assert isinstance(theirs, list) and theirs, f"the reference gave nothing for {case}"
    assert ours == theirs


def test_the_corpus_shows_what_it_is_meant_to(server: LocalServer) -> None:
    """The comparison above is only worth something if the outputs are the real thing."""
    got = {case: _outputs(server, code) for case, code in CORPUS.items()}
    assert got["streams"] == [
        {"name": "stdout", "text": "out\nmore\n"},
        {"name": "stderr", "text": "err\n"},
    ]
    assert got["execute_result"] == [{"data": {"text/plain": "{'a': [1, 2], 'b': 'xxx'}"}}]
    assert got["display_png"][0]["data"]["image/png"] == _PNG
    assert "image/svg+xml" in got["display_svg"][0]["data"]
    assert got["error_traceback"][-1]["ename"] == "ValueError"
    assert any("inner()" in line for line in got["error_traceback"][-1]["traceback"])
    assert got["syntax_error"][-1]["ename"] == "SyntaxError"
    assert got["input_refused"][-1]["ename"] == "StdinNotImplementedError"
    assert "Wall time: T" in got["magic_time"][0]["text"]
    assert got["magic_bash"] == [
        {"name": "stdout", "text": "from bash\n"},
        {"name": "stderr", "text": "to stderr\n"},
    ]
    assert got["rich_repr"][0]["data"]["text/html"] == "<b>rich</b>"
    assert got["rich_repr"][0]["data"]["text/latex"] == "$\\rho$"
    assert got["matplotlib_inline"][-1]["data"]["image/png"].startswith("iVBORw0KGgo")
    assert got["low_level_output"] == [{"name": "stdout", "text": "from a subprocess\nafter\n"}]
    # CoCalc keeps clear_output's own content, and nothing from before it
    assert got["display_then_clear"] == [{"wait": False}, {"name": "stdout", "text": "kept\n"}]
    assert "Output truncated" in got["ten_megabytes"][-1]["text"][0]
    assert got["timeout_interrupted"][0] == {"name": "stdout", "text": "waiting\n"}
    assert got["timeout_interrupted"][-1]["ename"] == "KeyboardInterrupt"


@pytest.mark.parametrize("case", sorted(DYING))
def test_a_dying_prepared_kernel_gets_cocalcs_message_as_an_execd_one(
    case: str, server: LocalServer, reference: LocalServer
) -> None:
    ours, theirs = _outputs(server, DYING[case]), _outputs(reference, DYING[case])
    assert isinstance(ours, str) and ours == theirs
    expected = {
        "exit_code": "Kernel last exited with code 3.",
        "segfault": "Kernel last terminated by signal SIGSEGV",
        "ignores_interrupts": f"the cell ran past its {CELL_TIMEOUT:g} s limit",
    }[case]
    assert expected in ours


# -- a fresh kernel for every call, on both paths -------------------------------------------------
LEAKS = {
    "global": ("leaked = 41", "'leaked' in globals()"),
    "environment": (
        "import os\nos.environ['LEAKED'] = '1'",
        "import os\n'LEAKED' in os.environ",
    ),
    "sys.modules": (
        "import sys, types\nsys.modules['leaked_module'] = types.ModuleType('leaked_module')",
        "import sys\n'leaked_module' in sys.modules",
    ),
    "working directory": (
        "import os\nos.chdir('/')",
        "import os\nos.getcwd() == '/'",
    ),
    "random seed": (
        "import random\nrandom.seed(1234)",
        "import random\nrandom.random() == random.Random(1234).random()",
    ),
    "history": ("'marker-for-history'", "('marker-for' + '-history') in str(In[:-1])"),
    "builtins": (
        "import builtins\nbuiltins.leaked = 1",
        "import builtins\nhasattr(builtins, 'leaked')",
    ),
}


@pytest.mark.parametrize("path", ["prepared", "reference"])
@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_nothing_a_call_changes_reaches_the_next(
    leak: str, path: str, server: LocalServer, reference: LocalServer
) -> None:
    target = server if path == "prepared" else reference
    setup, probe = LEAKS[leak]
    with _client(target) as client:
        assert client.execute(setup, "python3", no_cache=True).error is None
        assert client.execute(probe, "python3", no_cache=True).text == "False"


@pytest.mark.parametrize("path", ["prepared", "reference"])
def test_two_calls_never_share_a_process(
    path: str, server: LocalServer, reference: LocalServer
) -> None:
    target = server if path == "prepared" else reference

    def process(i: int) -> str:
        """Who ran the call. In a sandbox each exec'd kernel is pid 2 of a namespace of its own,
        so a process is its pid with its start time and command line."""
        code = (
            "import os, sys\n"
            "(os.getpid(), open('/proc/self/stat').read().split()[21], sys.argv)"
            f"  # {i}"
        )
        with _client(target) as client:
            return client.execute(code, "python3", no_cache=True).text

    sequential = [process(i) for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(process, range(6, 14)))
    everything = sequential + concurrent
    assert all(p.startswith("(") for p in everything)
    assert len(set(everything)) == len(everything)


def _starts(server: LocalServer, how: str) -> float:
    text = requests.get(server.url + "/metrics", auth=(SECRET_KEY, ""), timeout=30).text
    found = re.search(
        rf'^cocalc_tasks_kernel_starts_total\{{how="{how}",kernel="python3"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_the_two_paths_are_two_paths(server: LocalServer, reference: LocalServer) -> None:
    """The comparison is between prepared and exec'd kernels, not one path twice."""
    assert _starts(server, "prepared") > 0 and _starts(server, "exec") == 0
    assert _starts(reference, "exec") > 0 and _starts(reference, "prepared") == 0


@pytest.mark.parametrize("path", ["prepared", "reference"])
def test_what_forked_workers_print_reaches_the_caller(
    path: str, server: LocalServer, reference: LocalServer
) -> None:
    """multiprocessing forks the kernel; ipykernel forwards the workers' output, and so does a
    prepared kernel (through its captured descriptors), without garbling its own messages."""
    code = (
        "import multiprocessing as mp\n"
        "def work(x):\n"
        "    print('worker', x, flush=True)\n"
        "    return x * 2\n"
        "with mp.get_context('fork').Pool(2) as pool:\n"
        "    print(sorted(pool.map(work, [1, 2, 3])))\n"
        "'done'"
    )
    with _client(server if path == "prepared" else reference) as client:
        result = client.execute(code, "python3", no_cache=True)
    assert result.error is None and result.text == "'done'"
    assert result.stdout.count("worker") == 3 and "[2, 4, 6]\n" in result.stdout
    if path == "prepared":  # ipykernel sends each write apart, so two workers' lines may mix
        lines = sorted(result.stdout.splitlines())
        assert lines == ["[2, 4, 6]", "worker 1", "worker 2", "worker 3"]


def test_a_subprocesss_last_line_is_never_lost(server: LocalServer) -> None:
    """A prepared kernel waits for its captured descriptors before it ends a cell (ipykernel
    may send the reply first, and the line is then lost to the API)."""
    with _client(server) as client:
        for i in range(10):
            result = client.execute(f"import os\nos.system('echo line {i}')", "python3")
            assert result.stdout == f"line {i}\n"


def test_no_prepare_kernels_forks_jupyter_client_kernels(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--no-prepare-kernels", "--kernels", "python3")
    try:
        srv.wait_for_pool("python3", 2)
        with _client(srv) as client:
            assert client.execute("6 * 7", "python3", no_cache=True).text == "42"
        assert _starts(srv, "forked") > 0 and _starts(srv, "prepared") == 0
    finally:
        srv.stop()
