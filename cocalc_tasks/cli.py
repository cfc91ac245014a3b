"""The ``cocalc-tasks`` command: ``whoami``, ``kernels``, ``exec``, ``hash``, ``run``, ``job``,
``notebook`` and ``serve``.

``run`` and ``job wait`` exit with the remote command's own exit code (124 when CoCalc killed
it at its timeout, 137 when it was cancelled). Otherwise, exit codes:

====  ==========================================================================
0     success
1     the remote code raised an exception (its traceback is on stderr)
2     bad usage or an invalid argument (nothing was sent)
3     CoCalc refused the request (auth, permission, unknown kernel, API disabled)
4     transient failure: connection, timeout, quota, server error; retry later
5     ``hash --lookup``: the server's cache has no result for that hash
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cocalc_tasks.client.client import CocalcClient
from cocalc_tasks.client.config import resolve_settings
from cocalc_tasks.client.routes import API_CHOICES
from cocalc_tasks.errors import CocalcError, CocalcNotebookError, CocalcValidationError
from cocalc_tasks.model.command_results import CommandResult, JobStatus
from cocalc_tasks.model.exec_requests import ExecRequest
from cocalc_tasks.model.output_items import (
    ErrorOutput,
    RichOutput,
    Stream,
    TruncationNotice,
    strip_ansi,
)
from cocalc_tasks.model.requests import ExecuteRequest
from cocalc_tasks.model.results import ExecutionResult
from cocalc_tasks.model.validation import validate_project_id

__all__ = ["main"]

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_TRANSIENT = 4
EXIT_CACHE_MISS = 5
EXIT_COMMAND_TIMEOUT = 124
EXIT_COMMAND_CANCELLED = 137

#: How errors name the settings given as options.
_GIVEN_AS = {
    "api_key": "the --api-key option",
    "host": "the --host option",
    "project_id": "the --project-id option",
}


def _add_client_options(parser: argparse.ArgumentParser, *, read_timeout: bool = True) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--host", help="API base URL (env COCALC_HOST, default https://cocalc.com)")
    group.add_argument("--api-key", help="API key (env COCALC_API_KEY; prefer the variable)")
    if read_timeout:
        group.add_argument("--timeout", type=float, default=None, help="read timeout in seconds")
    group.add_argument("--ca-bundle", help="CA bundle for TLS verification (always on)")
    group.add_argument(
        "--api",
        choices=API_CHOICES,
        default="auto",
        help="route for Jupyter calls: auto (v2, then the hub bridge, then the project "
        "bridge), or one of them",
    )


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _add_run_parsers(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a shell command in a project, streaming its output",
        description="Runs the command as an async job (no 60 s request limit), prints its "
        "output as it arrives, and exits with the command's own exit code.",
    )
    run.add_argument("-p", "--project-id", help="the project (env COCALC_PROJECT_ID)")
    run.add_argument("--path", help="working directory relative to the project's home")
    run.add_argument(
        "--timeout", type=float, help="seconds before CoCalc kills the command (default 60)"
    )
    run.add_argument("--max-output", type=int, help="characters kept of stdout and of stderr")
    run.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--bash", action="store_true", help="run the command as a bash script")
    run.add_argument("--async", dest="async_", action="store_true", help="print the job id")
    run.add_argument("--json", action="store_true", help="print the final result as JSON")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- command [args...]")
    _add_client_options(run, read_timeout=False)

    notebook = sub.add_parser("notebook", help="run a parameterised notebook in a project")
    actions = notebook.add_subparsers(dest="action", required=True)
    nb_run = actions.add_parser(
        "run",
        help="run a notebook as one job, papermill-style",
        description="Uploads the notebook, injects the parameters after its cell tagged "
        "'parameters', runs every cell in the project as one async job (no cell time limit) "
        "and saves the executed notebook. Exit code 1 when a cell raised (the notebook up to "
        "that cell is still saved).",
    )
    nb_run.add_argument("notebook", help="a local .ipynb, or project:PATH for one in the project")
    nb_run.add_argument("-p", "--project-id", help="the project (env COCALC_PROJECT_ID)")
    nb_run.add_argument(
        "-P",
        "--parameter",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help='a parameter; VALUE is read as JSON (10, true, [1,2], "x") or else as text',
    )
    nb_run.add_argument("-o", "--output", help="save the executed notebook here (path or URL)")
    nb_run.add_argument("-k", "--kernel", help="kernel (default: the notebook's kernelspec)")
    nb_run.add_argument("--path", help="working directory relative to the project's home")
    nb_run.add_argument("--timeout", type=float, help="seconds the whole run may take (3600)")
    nb_run.add_argument("--json", action="store_true", help="print the result summary as JSON")
    _add_client_options(nb_run, read_timeout=False)

    job = sub.add_parser("job", help="status, wait for, or cancel an async job")
    job.add_argument("action", choices=["status", "wait", "cancel"])
    job.add_argument("job_id")
    job.add_argument("-p", "--project-id", help="the job's project (env COCALC_PROJECT_ID)")
    job.add_argument("--json", action="store_true", help="print the record as JSON")
    _add_client_options(job, read_timeout=False)


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel", "-k", required=True, help="kernel name, e.g. python3")
    parser.add_argument("-p", "--project-id", help="run in this project (env COCALC_PROJECT_ID)")
    parser.add_argument("--path", help="working directory relative to the project's home")
    parser.add_argument(
        "--history-file",
        type=Path,
        help="earlier inputs to replay: a JSON list of strings, or a text file used as one cell",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("code", nargs="?", help="code to run, or - to read standard input")
    source.add_argument("-f", "--file", type=Path, help="read the code from this file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocalc-tasks",
        description="Run code on CoCalc Jupyter kernels.",
        epilog="exit codes: 0 ok, 1 remote exception, 2 usage, 3 refused, 4 transient, "
        "5 cache miss (hash --lookup); run and job wait: the command's own code",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    kernels = sub.add_parser("kernels", help="list the available kernels")
    kernels.add_argument("-p", "--project-id", help="list the kernels of this project")
    kernels.add_argument("--json", action="store_true", help="print the specs as JSON")
    _add_client_options(kernels)

    exe = sub.add_parser("exec", help="run code and print its outputs")
    _add_request_options(exe)
    exe.add_argument("--no-cache", action="store_true", help="always compute (noCache)")
    exe.add_argument("--tag", help="free-form label for the server's log")
    exe.add_argument("--save-images", type=Path, metavar="DIR", help="write images here")
    exe.add_argument("--json", action="store_true", help="print the whole result as JSON")
    _add_client_options(exe)

    hsh = sub.add_parser("hash", help="print CoCalc's content hash, or look it up")
    _add_request_options(hsh)
    hsh.add_argument("--lookup", action="store_true", help="ask the server's cache for this hash")
    _add_client_options(hsh)

    _add_run_parsers(sub)

    who = sub.add_parser(
        "whoami",
        help="what the server takes the API key for (an unknown key exits 3)",
        description="Ask the server what the API key is: an account key, a project key, or "
        "unknown. CoCalc treats an unknown key as anonymous, so a wrong key would otherwise "
        "go unnoticed where the global pool serves anyone.",
    )
    who.add_argument("-p", "--project-id", help="check a project key against this project")
    who.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_client_options(who)

    serve = sub.add_parser(
        "serve",
        help="run the local CoCalc-compatible server",
        usage="%(prog)s [OPTION ...]  (options in groups below; each also a variable)",
    )
    from cocalc_tasks.server.settings import add_serve_arguments

    add_serve_arguments(serve)
    return parser


def _read_code(args: argparse.Namespace) -> str:
    if args.file is not None:
        return str(args.file.read_text(encoding="utf-8"))
    if args.code == "-":
        return sys.stdin.read()
    return str(args.code)


def _read_history(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return value
    raise CocalcValidationError(f"{path}: a JSON history must be a list of strings")


def _request(args: argparse.Namespace) -> ExecuteRequest:
    """The one request that ``exec`` sends and ``hash`` digests: its project is the one the
    client sends to (``--project-id``, else ``COCALC_PROJECT_ID``), so the hashes agree."""
    settings = resolve_settings(project_id=args.project_id, given_as=_GIVEN_AS)
    if settings.project_id is not None:
        validate_project_id(settings.project_id, settings.source("project_id"))
    return ExecuteRequest(
        _read_code(args),
        args.kernel,
        history=_read_history(args.history_file),
        project_id=settings.project_id,
        path=args.path,
        no_cache=getattr(args, "no_cache", False),
        tag=getattr(args, "tag", None),
    )


def _client(args: argparse.Namespace) -> CocalcClient:
    kwargs: dict[str, Any] = {"api_key": args.api_key, "host": args.host, "given_as": _GIVEN_AS}
    if getattr(args, "project_id", None):
        kwargs["project_id"] = args.project_id
    if args.command in ("exec", "hash", "kernels") and args.timeout is not None:
        kwargs["timeout"] = (10.0, args.timeout)
    if args.ca_bundle:
        kwargs["verify"] = args.ca_bundle
    kwargs["api"] = args.api
    return CocalcClient(**kwargs)


def print_outputs(result: ExecutionResult, out: TextIO, err: TextIO) -> None:
    """Print outputs in order: streams to their files, results as text, errors cleaned."""
    for item in result.items:
        match item:
            case TruncationNotice(name=name, text=text):
                # CoCalc's notice has no newline of its own
                (err if name == "stderr" else out).write(text + "\n")
            case Stream(name=name, text=text):
                (err if name == "stderr" else out).write(strip_ansi(text))
            case RichOutput(data=data):
                shown = item.text if item.text is not None else f"[{', '.join(sorted(data))}]"
                out.write(strip_ansi(shown) + "\n")
            case ErrorOutput(error=error):
                err.write((error.traceback or f"{error.ename}: {error.evalue}") + "\n")
    out.flush()
    err.flush()


def _cmd_whoami(args: argparse.Namespace) -> int:
    with _client(args) as client:
        me = client.whoami()
    print(json.dumps(me.to_dict(), indent=2) if args.json else me.describe())
    return EXIT_OK


def _cmd_kernels(args: argparse.Namespace) -> int:
    with _client(args) as client:
        specs = client.kernels(args.project_id)
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
    else:
        width = max((len(s.name) for s in specs), default=4)
        for spec in specs:
            print(f"{spec.name:<{width}}  {spec.language:<10}  {spec.display_name}")
    return EXIT_OK


def _cmd_exec(args: argparse.Namespace) -> int:
    request = _request(args)
    with _client(args) as client:
        result = client.send(request)
    if args.save_images is not None:
        for path in result.save_images(args.save_images):
            print(f"saved {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_outputs(result, sys.stdout, sys.stderr)
    return EXIT_OK if result.ok else EXIT_REMOTE_ERROR


def _cmd_hash(args: argparse.Namespace) -> int:
    request = _request(args)
    if not args.lookup:
        print(request.hash)
        return EXIT_OK
    with _client(args) as client:
        result = client.cached(request.hash)
    if result is None:
        print(f"{request.hash}: not in the server's cache", file=sys.stderr)
        return EXIT_CACHE_MISS
    print_outputs(result, sys.stdout, sys.stderr)
    return EXIT_OK if result.ok else EXIT_REMOTE_ERROR


def _write(stream: str, text: str) -> None:
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


def _command_exit(result: CommandResult, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for name in ("stdout", "stderr"):
            text = getattr(result, name)
            if text and not text.endswith("\n"):
                _write(name, "\n")  # the streamed text ended without one
    if result.timed_out:
        return EXIT_COMMAND_TIMEOUT
    if result.status == "killed":
        return EXIT_COMMAND_CANCELLED
    return result.exit_code if result.status == "completed" else result.exit_code or 1


def _cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CocalcValidationError("no command given: cocalc-tasks run -p PROJECT -- cmd args...")
    request = ExecRequest(
        argv[0],
        argv[1:] or None,
        project_id=args.project_id,
        path=args.path,
        timeout=args.timeout,
        max_output=args.max_output,
        bash=True if args.bash else None,
        env=dict(args.env) or None,
    )
    with _client(args) as client:
        job = client.submit_request(request)
        if args.async_:
            print(job.job_id)
            return EXIT_OK
        result = client.wait(job, on_output=None if args.json else _write)
    return _command_exit(result, args)


def _print_status(status: JobStatus, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return
    elapsed = "" if status.elapsed_s is None else f", {status.elapsed_s:g} s"
    print(
        f"{status.job_id}: {status.status}, exit code {status.exit_code}, pid {status.pid}{elapsed}"
    )


def _parameter_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _show_progress(done: int, of: int) -> None:
    """A bar on a terminal; a line per cell in a log."""
    if sys.stderr.isatty():
        width = 30
        filled = width * done // max(of, 1)
        end = "\n" if done >= of else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{of} cells{end}")
    else:
        sys.stderr.write(f"cell {done} of {of} done\n")
    sys.stderr.flush()


def _cmd_notebook(args: argparse.Namespace) -> int:
    from cocalc_tasks.notebooks.run import run_notebook

    parameters = {name: _parameter_value(value) for name, value in args.parameter}
    with _client(args) as client:
        try:
            result = run_notebook(
                args.notebook,
                parameters=parameters,
                kernel=args.kernel,
                project_id=args.project_id,
                path=args.path,
                output=args.output,
                timeout=args.timeout,
                client=client,
                on_output=None if args.json else lambda stream, text: _write("stderr", text),
                on_progress=None if args.json else _show_progress,
            )
        except CocalcNotebookError as exc:
            if args.json and exc.result is not None:
                print(json.dumps(exc.result.to_dict(), indent=2))
            print(f"cocalc-tasks: {exc}", file=sys.stderr)
            return EXIT_REMOTE_ERROR
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        where = result.output or "(not saved: pass -o)"
        print(
            f"executed {len(result.notebook.cells)} cells in {result.elapsed or 0:.1f} s: {where}"
        )
        for name, value in result.results.items():
            print(f"result {name}: {json.dumps(value)}")
    return EXIT_OK


def _cmd_job(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "status":
            _print_status(client.job(args.job_id, stats=True), args)
            return EXIT_OK
        if args.action == "cancel":
            _print_status(client.cancel(args.job_id), args)
            return EXIT_OK
        result = client.wait(args.job_id, on_output=None if args.json else _write)
    return _command_exit(result, args)


def _exit_code_for(error: CocalcError) -> int:
    if isinstance(error, CocalcValidationError):
        return EXIT_USAGE
    return EXIT_TRANSIENT if error.transient else EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {
        "kernels": _cmd_kernels,
        "exec": _cmd_exec,
        "hash": _cmd_hash,
        "run": _cmd_run,
        "job": _cmd_job,
        "notebook": _cmd_notebook,
        "whoami": _cmd_whoami,
    }
    try:
        if args.command == "serve":
            from cocalc_tasks.server.main import serve_from_args

            return serve_from_args(args)
        return commands[args.command](args)
    except CocalcError as exc:
        print(f"cocalc-tasks: error: {exc}", file=sys.stderr)
        return _exit_code_for(exc)
    except OSError as exc:
        print(f"cocalc-tasks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
