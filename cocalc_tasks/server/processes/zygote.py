"""A zygote: import a kernel's modules once, then fork a kernel per request.

Run as a script by the kernelspec's own interpreter (stdlib only, no cocalc_tasks import)::

    python zygote.py [--label TEXT] [--prepare KERNEL_MODULE ARGS_JSON] MODULE [MODULE ...]
                                                (a "?" prefix: import if available)

``--label`` only marks the command line (kernels forked from here share it), so that tools
can tell which server the processes belong to. ``--prepare`` also builds that kernel once,
here (``prepared_kernel.py``), so that a request with ``"serve"`` forks it ready to run.

Starting an IPython kernel costs about 0.3 s of CPU, most of it importing ipykernel and IPython.
This process pays that once; each kernel is then a ``fork`` that runs ``python -m <module> ...``
as the kernelspec says, in its own session, directory and environment.

Protocol, one JSON object per line. On stdin::

    {"id": 1, "argv": [...], "env": {...}, "cwd": "...", "limits": [[resource, value], ...]}
                                        fork a kernel: python -m argv[2] argv[3:], with those
                                        rlimits set in the child first
    {..., "serve": {"address": "...", "token": "..."}}
                                        the same, but the child is the prepared kernel, which
                                        connects to that Unix socket and says its token
    {"signal": 4242, "signum": 2}       signal a kernel's process group (inside a sandbox, only
                                        the zygote sees the kernel's pid)

On stdout::

    {"ready": true, "prepared": true, "why": null}
                                        the modules are imported, and the kernel prepared or
                                        why not (or {"error": ...} and exit 1)
    {"id": 1, "pid": 4242}              the kernel was forked
    {"id": 1, "error": "..."}           it was not
    {"exited": 4242, "code": -9}        a kernel ended; code as ``Popen.returncode``

The process is single-threaded, so forking is safe: it counts its threads in
``/proc/self/task`` (native ones too, such as a BLAS pool) after the imports and before every
fork, and refuses with an error when there is more than one (the server then execs the kernel).
When stdin closes (the server stopped or died) every kernel still running is killed and the
zygote exits: it leaves no orphans.

State that imported libraries set up once per process is renewed in each child before the
kernel runs (:func:`_renew_per_process_state`): random generators are seeded from fresh
entropy, Sage gets its own temporary directory, and cysignals' interrupt handler is put back
after the child's signal reset.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import sys
import threading
from typing import Any, NoReturn

_children: set[int] = set()
#: Variables the imports set in the zygote's environment (Sage sets MAXIMA_PREFIX and more):
#: a kernel that imported them itself would have them, so forked kernels get them too.
_set_by_imports: dict[str, str] = {}
#: Descriptors of the zygote itself (protocol, signal pipe, selector) that a kernel must not keep.
_private_fds: list[int] = []
#: The module that serves prepared kernels (``prepared_kernel.py``), once ``--prepare`` worked,
#: and the file ``python -m`` would run for the prepared kernel (its ``sys.argv[0]``).
_prepared: list[Any] = []
_prepared_file: list[str] = []


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _threads() -> int:
    """Threads of this process, native ones included (1 where /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _renew_per_process_state() -> list[Any]:
    """In the child: what must not be shared with the zygote or other kernels. Returns the
    clean-ups to run when the kernel ends (``os._exit`` skips ``atexit``)."""
    import random

    cleanups: list[Any] = []
    random.seed()  # Python's generator, from fresh entropy
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    randstate = sys.modules.get("sage.misc.randstate")
    if randstate is not None:
        randstate.set_random_seed()  # Sage's, GMP's, PARI's, NTL's...: fresh entropy
    temporary = sys.modules.get("sage.misc.temporary_file")
    if temporary is not None and hasattr(temporary, "TMP_DIR_FILENAME_BASE"):
        import tempfile

        # The zygote's directory would be shared by every kernel, and removed by the first
        # one to exit normally: each kernel gets its own.
        own = tempfile.TemporaryDirectory(prefix="sage_")
        setattr(temporary, "TMP_DIR_FILENAME_BASE", own)  # noqa: B010
        cleanups.append(own.cleanup)
    cysignals = sys.modules.get("cysignals.signals")
    if cysignals is not None:
        cysignals.init_cysignals()  # over the SIGINT handler the child just reset
    return cleanups


def _run_kernel(request: dict[str, Any]) -> NoReturn:
    """In the forked child: become ``python -m module args...``, or serve calls with the
    prepared kernel (``"serve"`` in the request), and never return."""
    code = 1
    cleanups: list[Any] = []
    try:
        import resource

        for which, value in request.get("limits") or ():
            resource.setrlimit(which, (value, value))
        os.setsid()  # own process group: interrupts and kills reach the kernel's children too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in _private_fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)  # fd 1 was the protocol pipe; low-level output goes where stderr goes
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        cwd = request["cwd"]
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request["env"])
        for name, value in _set_by_imports.items():
            os.environ.setdefault(name, value)
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        argv = request["argv"]
        sys.path.insert(0, cwd)  # as `python -m` would have it
        sys.argv = [argv[0], *argv[3:]]
        cleanups = _renew_per_process_state()
        serve = request.get("serve")
        if serve is not None and _prepared:
            sys.argv[0] = _prepared_file[0]  # as `python -m` sets it
            code = _prepared[0].serve(serve["address"], serve["token"])
        else:
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
            code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            for cleanup in cleanups:
                with contextlib.suppress(Exception):
                    cleanup()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _module_file(module: str) -> str:
    """The file ``python -m module`` runs (a package's ``__main__.py``)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(module + ".__main__")
    return spec.origin if spec is not None and spec.origin else module


def _prepare(module: str, args: list[str]) -> str | None:
    """Build ``module``'s kernel once, here (``prepared_kernel.py``); the error if it cannot be
    (its kernels are then forked the usual way)."""
    import importlib.util

    try:
        spec = importlib.util.spec_from_file_location(
            "cocalc_prepared_kernel", os.path.join(os.path.dirname(__file__), "prepared_kernel.py")
        )
        assert spec is not None and spec.loader is not None
        prepared = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = prepared
        spec.loader.exec_module(prepared)
        prepared.prepare(module, args)
    except BaseException as exc:  # any failure only costs the fast path
        return f"{type(exc).__name__}: {exc}"
    _prepared.append(prepared)
    _prepared_file.append(_module_file(module))
    return None


def _fill_lazy_caches() -> None:
    """Fill, once in the zygote, the caches a library fills lazily with a subprocess, so that
    no forked kernel pays for it. Sage's ``package_systems()`` runs ``sage-guess-package-system``
    and ``sage -pip --version`` (a bash and a Python start each, when Sage's ``bin/`` is on
    ``PATH``) the first time a kernel explains a missing feature, and its cache is a module
    global: filled here, every kernel inherits it."""
    features = sys.modules.get("sage.features")
    if features is not None and hasattr(features, "package_systems"):
        with contextlib.suppress(Exception):
            features.package_systems()


def _reap(out: Any) -> None:
    while True:  # not `while _children`: a child may end before its pid is recorded
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _children.discard(pid)
        _send(out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _kill_all() -> None:
    for pid in list(_children):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def main(modules: list[str], prepare: tuple[str, list[str]] | None = None) -> int:
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this script's folder must not shadow modules (cache, kernel, ...)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray print in an imported module must not corrupt the protocol
    # Read at import time by ipykernel (IPKernelApp.parent_handle): the kernels' parent is us.
    os.environ["JPY_PARENT_PID"] = str(os.getpid())
    before = dict(os.environ)
    try:
        for module in modules:
            try:
                importlib.import_module(module.removeprefix("?"))
            except ImportError:
                if not module.startswith("?"):
                    raise
    except BaseException as exc:
        _send(out, {"error": f"cannot import {module}: {type(exc).__name__}: {exc}"})
        return 1
    not_prepared = _prepare(*prepare) if prepare is not None else "not asked"
    _set_by_imports.update(
        {name: value for name, value in os.environ.items() if before.get(name) != value}
    )
    _fill_lazy_caches()
    if (threads := _threads()) > 1:  # a fork would copy locks held by threads it drops
        _send(
            out,
            {
                "error": f"importing {modules} left {threads} threads (a BLAS or OpenMP pool? "
                "set OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1): forking is not safe"
            },
        )
        return 1
    # What the imports built stays where it is: the collector no longer walks (and so writes
    # to) those objects, in here or in a forked kernel, whose copy-on-write pages stay shared.
    gc.freeze()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "requests")
    selector.register(wake_read, selectors.EVENT_READ, "signals")
    _private_fds.extend([out.fileno(), wake_read, wake_write, selector.fileno()])
    _send(out, {"ready": True, "prepared": not_prepared is None, "why": not_prepared})
    buffer = b""
    try:
        while True:
            for key, _ in selector.select():
                if key.data == "signals":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    _reap(out)
                    continue
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    return 0
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    _handle(json.loads(line), out)
    finally:
        _kill_all()


def _handle(request: dict[str, Any], out: Any) -> None:
    if "signal" in request:
        if request["signal"] in _children:  # only our own kernels
            with contextlib.suppress(OSError):
                os.killpg(request["signal"], request["signum"])
        return
    if (threads := _threads()) > 1:
        _send(out, {"id": request["id"], "error": f"{threads} threads: forking is not safe"})
        return
    try:
        pid = os.fork()
    except OSError as exc:
        _send(out, {"id": request["id"], "error": f"fork failed: {exc}"})
        return
    if pid == 0:
        _run_kernel(request)
    _children.add(pid)
    _send(out, {"id": request["id"], "pid": pid})


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--label"]:
        arguments = arguments[2:]
    preparing = None
    if arguments[:1] == ["--prepare"]:
        preparing = (arguments[1], json.loads(arguments[2]))
        arguments = arguments[3:]
    sys.exit(main(arguments, preparing))
