"""Server settings, each declared once: type, default, flag, variable, help and bounds.

Every field of :class:`ServerSettings` carries its declaration in ``metadata``; the
``cocalc-tasks serve`` options (in the groups of :data:`GROUPS`), the ``COCALC_SERVER_*``
variables, the JSON ``--config`` keys, the checks and the configuration reference are all
generated from it. Options win over the environment,
which wins over the config file, which wins over defaults; repeatable options (``--api-key``,
``--project-key``, ``--kernel-alias``, ``--kernel-pool``) add to what the lower layers set.

This module imports nothing from the ``server`` extra, so ``cocalc-tasks --help`` stays fast.
``python -m cocalc_tasks.server.settings`` prints the configuration reference
(``docs/server/configuration.md``), grouped as ``serve --help`` is.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GROUPS",
    "ServerSettings",
    "SettingsError",
    "add_serve_arguments",
    "declarations",
    "settings_from_args",
    "settings_table",
]

ENV_PREFIX = "COCALC_SERVER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


class SettingsError(ValueError):
    """A server setting is invalid; the message names the option and its variable."""


# -- value kinds: how text (environment, command line) or JSON (config file) becomes a value --


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _to_list(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else _split(str(raw))
    return tuple(str(v) for v in items)


def _to_pairs(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else _split(str(raw)):
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _to_int_pairs(raw: Any) -> dict[str, int]:
    return {name: _to_int(value) for name, value in _to_pairs(raw).items()}


def _number(cast: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    """A parser for one number type; booleans are refused (JSON ``true`` is not 1)."""

    def parse(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise ValueError(f"expected {what}, got {raw!r}")
        try:
            return cast(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected {what}, got {raw!r}") from None

    return parse


_to_int = _number(int, "a whole number")
_to_float = _number(float, "a number")


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _to_path(raw: Any) -> Path:
    return Path(str(raw)).expanduser()


_KINDS: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "path": _to_path,
    "list": _to_list,
    "pairs": _to_pairs,
    "int_pairs": _to_int_pairs,
}


@dataclass(frozen=True)
class Declaration:
    """How one setting is named, read, shown and checked."""

    name: str
    kind: str
    help: str
    flag: str
    env: str
    #: ``--no-…`` spelling of a boolean flag, when it differs from ``--no-<flag>``.
    negative: str | None = None
    metavar: str | None = None
    #: A repeatable option that adds to the environment's and config file's values.
    repeatable: bool = False
    minimum: float | None = None
    secret: bool = False
    shown_default: str | None = None
    #: The only values allowed (a ``str`` setting).
    choices: tuple[str, ...] | None = None
    #: What the value (or each value of a mapping) must parse as: a key of :data:`_VALUES`
    #: (``limits``: ``nofile=1000 as=3000000``; ``caps``: ``memory=1G processes=64``...).
    value: str | None = None
    #: The group it is listed under in ``serve --help`` and the configuration reference.
    group: str = ""

    @property
    def config_key(self) -> str:
        return self.env.removeprefix(ENV_PREFIX)

    @property
    def label(self) -> str:
        """How error messages name the setting: its option and its variable."""
        return f"{self.flag} ({self.env})"

    def parse(self, raw: Any, source: str) -> Any:
        try:
            return _KINDS[self.kind](raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from None

    def check(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise SettingsError(
                f"{self.label} must be one of {', '.join(self.choices)}, got {value!r}"
            )
        if self.value is not None:
            check = _value_checks()[self.value]
            for one in value.values() if isinstance(value, Mapping) else [value]:
                try:
                    check(str(one))
                except ValueError as exc:
                    raise SettingsError(f"{self.label}: {exc}") from None
        if self.minimum is None:
            return
        values = value.values() if isinstance(value, Mapping) else [value]
        for one in values:
            if isinstance(one, bool) or not isinstance(one, int | float):
                raise SettingsError(f"{self.label} must be a number, got {one!r}")
            if one < self.minimum:
                bound = "positive" if 0 < self.minimum < 1 else f"at least {self.minimum:g}"
                raise SettingsError(f"{self.label} must be {bound}, got {one!r}")


def _value_checks() -> dict[str, Callable[[str], object]]:
    """The parsers of :attr:`Declaration.value` (imported when a setting needs them)."""
    from cocalc_tasks.server.sandbox import Caps, Limits
    from cocalc_tasks.server.sandbox.bwrap import NETWORK_MODES
    from cocalc_tasks.server.sandbox.users import parse_uid_range

    def network(text: str) -> str:
        if text not in NETWORK_MODES:
            raise ValueError(f"{text!r} is not a network mode: use none or host")
        return text

    return {
        "limits": Limits.parse,
        "caps": Caps.parse,
        "network": network,
        "uids": parse_uid_range,
    }


def setting(
    default: Any = dataclasses.MISSING,
    *,
    kind: str,
    help: str,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
    env: str | None = None,
    **declared: Any,
) -> Any:
    """A :class:`ServerSettings` field with its :class:`Declaration` (names filled in later)."""
    meta = {"kind": kind, "help": help, "flag": flag, "env": env, **declared}
    if factory is not None:
        return field(default_factory=factory, repr=not declared.get("secret"), metadata=meta)
    return field(default=default, repr=not declared.get("secret"), metadata=meta)


_POSITIVE = 1e-9


@dataclass(frozen=True)
class ServerSettings:
    """The local server's settings. Invalid values raise :class:`SettingsError`."""

    host: str = setting("127.0.0.1", kind="str", help="bind address")
    port: int = setting(8765, kind="int", help="port, 0 for any free one", minimum=0)
    data_dir: Path = setting(
        kind="path",
        factory=lambda: Path.home() / ".local/share/cocalc-tasks",
        help="cache, job records, kernel state and scratch space",
        shown_default="~/.local/share/cocalc-tasks",
    )
    projects_root: Path | None = setting(
        None, kind="path", help="one directory per project_id", shown_default="DATA_DIR/projects"
    )
    kernels: tuple[str, ...] = setting(
        ("python3",), kind="list", help="kernels kept warm from start-up, comma-separated"
    )
    pool_size: int = setting(2, kind="int", help="warm kernels per kernelspec", minimum=0)
    kernel_pool_sizes: Mapping[str, int] = setting(
        kind="int_pairs",
        factory=dict,
        flag="--kernel-pool",
        env=ENV_PREFIX + "KERNEL_POOLS",
        metavar="SPEC=N",
        repeatable=True,
        minimum=0,
        help="pool size for one kernelspec, e.g. sagemath=1",
    )
    kernel_aliases: Mapping[str, str] = setting(
        kind="pairs",
        factory=dict,
        flag="--kernel-alias",
        metavar="NAME=KERNELSPEC",
        repeatable=True,
        help="serve a kernelspec under another name, e.g. sage-10.4=sagemath",
    )
    api_keys: tuple[str, ...] = setting(
        (),
        kind="list",
        flag="--api-key",
        metavar="KEY",
        repeatable=True,
        secret=True,
        help="accepted account key (prefer the variable: argv is visible in ps)",
    )
    project_keys: Mapping[str, str] = setting(
        kind="pairs",
        factory=dict,
        flag="--project-key",
        metavar="KEY=PROJECT_ID",
        repeatable=True,
        secret=True,
        help="key valid only for one project",
    )
    allow_anonymous: bool = setting(
        True,
        kind="bool",
        negative="--no-anonymous",
        help="serve the global pool without a key (--no-anonymous: require a key)",
    )
    metrics_public: bool = setting(
        False,
        kind="bool",
        help="serve /metrics to anyone (default: only to account keys, like the pages)",
    )
    cell_timeout: float = setting(
        15.0, kind="float", minimum=_POSITIVE, help="per-cell seconds in the global pool"
    )
    project_cell_timeout: float = setting(
        30.0, kind="float", minimum=_POSITIVE, help="per-cell seconds in a project"
    )
    max_output_per_cell: int = setting(
        500_000, kind="int", minimum=1, help="output characters per cell, global pool"
    )
    max_output: int = setting(
        2_500_000, kind="int", minimum=1, help="output characters per call, global pool"
    )
    project_max_output_per_cell: int = setting(
        1_000_000, kind="int", minimum=1, help="output characters per cell in a project"
    )
    project_max_output: int = setting(
        5_000_000, kind="int", minimum=1, help="output characters per call in a project"
    )
    max_concurrency: int = setting(8, kind="int", minimum=1, help="executions running at once")
    max_parallel_starts: int = setting(
        4, kind="int", minimum=1, help="kernels starting at once (pool refills)"
    )
    max_body_bytes: int = setting(
        10 * 1024 * 1024, kind="int", minimum=1, help="largest request body accepted"
    )
    kernel_start_timeout: float = setting(
        60.0, kind="float", minimum=_POSITIVE, help="seconds a kernel may take to start"
    )
    fork_kernels: bool = setting(
        True,
        kind="bool",
        help="start ipykernel, bash and Sage kernels by forking them from a zygote (a "
        "pre-imported process); --no-fork-kernels starts each kernel as its own program",
    )
    prepare_kernels: bool = setting(
        True,
        kind="bool",
        help="build IPython and Sage kernels once in their zygote and fork them ready to run, "
        "spoken to over one Unix socket each (a fraction of the CPU of a jupyter_client "
        "start); --no-prepare-kernels forks them as ordinary jupyter_client kernels",
    )
    sage_threads: int = setting(
        1,
        kind="int",
        minimum=0,
        help="BLAS and OpenMP threads of each Sage kernel; 1 lets Sage kernels be forked "
        "(a fork copies no thread pool); 0 (the libraries' default, one per core) or more "
        "starts each Sage kernel as its own program with that many",
    )
    cache_ttl_seconds: float = setting(
        30 * 24 * 3600.0, kind="float", minimum=_POSITIVE, help="how long cached results live"
    )
    flavor: str = setting(
        "master",
        kind="str",
        choices=("master", "cocalc-ai"),
        metavar="master|cocalc-ai",
        help="which CoCalc to behave like; cocalc-ai (the rewrite): no /api/v2/jupyter/* and "
        "no hub jupyter.*, Jupyter on the project bridge's jupyter.apiExecute, account keys "
        "only in the v2 format sk-cc-v2.*, no project keys",
    )
    sandbox: str = setting(
        "auto",
        kind="str",
        choices=("auto", "bwrap", "none"),
        metavar="auto|bwrap|none",
        help="run every kernel and command in its project's bubblewrap sandbox; auto: when "
        "bwrap works here, else warn that projects are not isolated (and refuse to start "
        "with project keys or several API keys)",
    )
    project_network: str = setting(
        "none",
        kind="str",
        value="network",
        metavar="none|host",
        help="with the sandbox on, none: each project (and the global pool) has a network of "
        "its own with only its own loopback, no internet and none of the host's services; "
        "host: the host's network",
    )
    project_network_for: Mapping[str, str] = setting(
        kind="pairs",
        factory=dict,
        flag="--project-network-for",
        metavar="PROJECT_ID=none|host",
        repeatable=True,
        value="network",
        help="the network of one project, over --project-network",
    )
    project_limits: str = setting(
        "memory=1000M processes=512",
        kind="str",
        value="caps",
        metavar="CAPS",
        help="memory and processes for all of a project's kernels, jobs and notebook runs "
        "together (CoCalc's free project: 1000 MB), enforced with cgroups; none for no caps",
    )
    project_limits_for: Mapping[str, str] = setting(
        kind="pairs",
        factory=dict,
        flag="--project-limits-for",
        metavar="PROJECT_ID=CAPS",
        repeatable=True,
        value="caps",
        help="the caps of one project, over --project-limits, e.g. 'ID=memory=4G processes=1024'",
    )
    pool_limits: str = setting(
        "processes=1024",
        kind="str",
        value="caps",
        metavar="CAPS",
        help="the caps of the global pool's kernels and commands, all together",
    )
    project_uids: str = setting(
        "65536-536870911",
        kind="str",
        value="uids",
        metavar="START-END",
        help="a server running as root runs the global pool as uid START and each project as "
        "its own uid above it, derived from its id as CoCalc does",
    )
    kernel_limits: str = setting(
        "nofile=1000 fsize=10485760 cpu=30 as=3000000",
        kind="str",
        value="limits",
        metavar="LIMITS",
        help="every kernel's ulimits, as CoCalc's (as and fsize in KiB, cpu in s); none for none",
    )
    kernel_limits_for: Mapping[str, str] = setting(
        kind="pairs",
        factory=dict,
        flag="--kernel-limits-for",
        metavar="SPEC=LIMITS",
        repeatable=True,
        value="limits",
        help="limits of one kernelspec, over --kernel-limits, e.g. 'sagemath=as=6000000'",
    )
    exec_limits: str = setting(
        "nofile=1000 fsize=10485760 as=6000000",
        kind="str",
        value="limits",
        metavar="LIMITS",
        help="ulimits of every exec command (its CPU time is bounded by its timeout)",
    )
    project_pool_size: int = setting(
        1,
        kind="int",
        minimum=0,
        help="warm kernels per kernelspec in each project that has run code (sandbox on)",
    )
    area_idle_seconds: float = setting(
        1800.0,
        kind="float",
        minimum=_POSITIVE,
        help="a project's warm kernels and zygotes stop after this long unused",
    )
    hub_timeout: float = setting(
        60.0,
        kind="float",
        minimum=_POSITIVE,
        help="seconds a blocking exec or an async_await may hold a request before the answer "
        '{"error": "undefined"} (CoCalc\'s hub limit); the command keeps running',
    )
    exec_max_output: int = setting(
        8 * 1024 * 1024,
        kind="int",
        minimum=1,
        help="characters kept of each stream of a command, whatever max_output asks",
    )
    max_jobs: int = setting(
        64, kind="int", minimum=1, help="commands (blocking or async) running at once"
    )
    job_ttl_seconds: float = setting(
        3600.0,
        kind="float",
        minimum=_POSITIVE,
        help="how long a finished job stays readable after it was last read",
    )

    database_url: str | None = setting(
        None,
        kind="str",
        secret=True,
        metavar="URL",
        shown_default="(none: SQLite in DATA_DIR)",
        help="postgresql://USER:PASSWORD@HOST:PORT/DB: keep the result cache, the API log and "
        "the exec jobs in PostgreSQL, shared by every replica pointed at it (prefer the "
        "variable: argv is visible in ps)",
    )
    database_pool_size: int = setting(
        8, kind="int", minimum=1, help="PostgreSQL connections each replica keeps at most"
    )
    replica_name: str | None = setting(
        None,
        kind="str",
        shown_default="HOST:PORT",
        help="this server's name among the replicas sharing a database; keep it across "
        "restarts, so a restarted replica settles the jobs it was running",
    )
    trusted_proxies: str = setting(
        "127.0.0.1",
        kind="str",
        metavar="ADDRESSES",
        help="comma-separated addresses of proxies whose X-Forwarded-For names the client "
        "(the address an anonymous quota counts); * for any",
    )
    replica_timeout: float = setting(
        10.0,
        kind="float",
        minimum=1.0,
        help="seconds without a heartbeat after which a replica is dead and its running jobs "
        "are marked error",
    )
    api_log_ttl_seconds: float = setting(
        30 * 24 * 3600.0,
        kind="float",
        minimum=_POSITIVE,
        help="how long API log rows are kept (at least quota-period for the quotas to hold)",
    )
    quota_anonymous: float = setting(
        180.0,
        kind="float",
        minimum=0,
        help="compute seconds per quota period for each anonymous client address in the "
        "global pool (CoCalc's); 0 for no quota",
    )
    quota_account: float = setting(
        900.0,
        kind="float",
        minimum=0,
        help="compute seconds per quota period for each key in the global pool (CoCalc's); "
        "0 for no quota",
    )
    quota_site: float = setting(
        18_000.0,
        kind="float",
        minimum=0,
        help="compute seconds per quota period for all global-pool callers together "
        "(CoCalc's); 0 for no quota",
    )
    quota_period: float = setting(
        3600.0,
        kind="float",
        minimum=1.0,
        help="the rolling window of the quotas, in seconds (CoCalc's: one hour)",
    )

    def __post_init__(self) -> None:
        for decl in declarations():
            decl.check(getattr(self, decl.name))
        # Kernels get IPC files and working directories under these: keep them absolute, so
        # a relative --data-dir means the same wherever a kernel runs.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())
        if self.projects_root is not None:
            root = Path(self.projects_root).expanduser().absolute()
            object.__setattr__(self, "projects_root", root)

    @property
    def projects_dir(self) -> Path:
        return self.projects_root or self.data_dir / "projects"

    def pool_size_for(self, spec_name: str, language: str = "") -> int:
        if spec_name in self.kernel_pool_sizes:
            return self.kernel_pool_sizes[spec_name]
        # An exec'd Sage kernel holds about 190 MB of its own (PSS): keep one warm unless told
        # otherwise. A forked one shares most of its zygote's pages (about 75 MB of its own).
        forked = self.fork_kernels and self.sage_threads == 1
        return min(self.pool_size, 1) if language == "sage" and not forked else self.pool_size


#: The groups of ``serve --help`` and of the configuration reference, in order, each with its
#: settings in the order shown. Every setting is in exactly one group.
GROUPS: dict[str, tuple[str, ...]] = {
    "network and auth": (
        "host",
        "port",
        "api_keys",
        "project_keys",
        "allow_anonymous",
        "metrics_public",
        "trusted_proxies",
        "max_body_bytes",
        "flavor",
    ),
    "kernels and pools": (
        "kernels",
        "kernel_aliases",
        "pool_size",
        "kernel_pool_sizes",
        "project_pool_size",
        "area_idle_seconds",
        "max_concurrency",
        "max_parallel_starts",
        "kernel_start_timeout",
        "fork_kernels",
        "prepare_kernels",
        "sage_threads",
    ),
    "limits": (
        "cell_timeout",
        "project_cell_timeout",
        "max_output_per_cell",
        "max_output",
        "project_max_output_per_cell",
        "project_max_output",
        "kernel_limits",
        "kernel_limits_for",
    ),
    "sandbox": (
        "sandbox",
        "projects_root",
        "project_network",
        "project_network_for",
        "project_limits",
        "project_limits_for",
        "pool_limits",
        "project_uids",
    ),
    "exec jobs": ("max_jobs", "exec_limits", "exec_max_output", "hub_timeout", "job_ttl_seconds"),
    "storage and replicas": (
        "data_dir",
        "cache_ttl_seconds",
        "database_url",
        "database_pool_size",
        "replica_name",
        "replica_timeout",
        "api_log_ttl_seconds",
    ),
    "quotas": ("quota_anonymous", "quota_account", "quota_site", "quota_period"),
}


def declarations() -> Iterator[Declaration]:
    """Every setting's declaration, group by group (:data:`GROUPS`)."""
    fields = {f.name: f for f in dataclasses.fields(ServerSettings)}
    for group, names in GROUPS.items():
        for name in names:
            meta = dict(fields[name].metadata)
            meta["flag"] = meta.get("flag") or "--" + name.replace("_", "-")
            meta["env"] = meta.get("env") or ENV_PREFIX + name.upper()
            yield Declaration(name=name, group=group, **meta)


def _default_text(decl: Declaration) -> str:
    if decl.shown_default is not None:
        return decl.shown_default
    f = next(f for f in dataclasses.fields(ServerSettings) if f.name == decl.name)
    value = f.default if f.default is not dataclasses.MISSING else None
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    if isinstance(value, dict) and not value:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}"
    return "(none)" if value is None else str(value)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``cocalc-tasks serve`` options in their groups (all default to None: see
    :func:`settings_from_args`)."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for decl in declarations():
        text = f"{decl.help} (default {_default_text(decl)}; env {decl.env})"
        group = groups[decl.group]
        if decl.kind == "bool":
            group.add_argument(
                decl.flag, dest=decl.name, action=argparse.BooleanOptionalAction, help=text
            )
            if decl.negative:
                group.add_argument(
                    decl.negative, dest=decl.name, action="store_false", help=argparse.SUPPRESS
                )
        elif decl.repeatable:
            group.add_argument(
                decl.flag,
                dest=decl.name,
                action="append",
                metavar=decl.metavar or decl.name.upper(),
                help=text + (" (repeatable)" if decl.repeatable else ""),
            )
        else:
            group.add_argument(decl.flag, dest=decl.name, metavar=decl.name.upper(), help=text)
    parser.add_argument(
        "--config",
        type=Path,
        help=f"JSON file with any of these settings (keys as in the env "
        f"variables, without {ENV_PREFIX}; env {CONFIG_ENV})",
    )


def _merge(decl: Declaration, lower: Any, upper: Any) -> Any:
    if not decl.repeatable or lower is None:
        return upper
    if isinstance(lower, Mapping):
        return {**lower, **upper}
    return tuple(lower) + tuple(upper)


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    """Options over ``COCALC_SERVER_*`` variables over the ``--config`` file over defaults."""
    env = os.environ if environ is None else environ
    config_path = args.config or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    config: dict[str, Any] = {}
    if config_path is not None:
        try:
            config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read config file {config_path}: {exc}") from None
        if not isinstance(config, dict):
            raise SettingsError(f"config file {config_path} must hold a JSON object")
    values: dict[str, Any] = {}
    for decl in declarations():
        value = None
        if decl.config_key in config:
            source = f"{decl.config_key} in {config_path}"
            value = decl.parse(config[decl.config_key], source)
        if env.get(decl.env):
            value = decl.parse(env[decl.env], decl.env)
        given = getattr(args, decl.name, None)
        if given is not None:
            if isinstance(given, list) and decl.kind == "list":  # each value may hold a list
                given = ",".join(given)
            value = _merge(decl, value, decl.parse(given, decl.flag))
        if value is not None:
            values[decl.name] = value
    return ServerSettings(**values)


def settings_table() -> str:
    """The configuration reference: one table per group, generated from the declarations."""
    rows: list[str] = []
    for group, members in itertools.groupby(declarations(), key=lambda decl: decl.group):
        rows += [f"### {group.capitalize()}", ""]
        rows += ["| option | variable / config key | default | meaning |", "|---|---|---|---|"]
        for decl in members:
            flag = f"`{decl.flag}`" + (f" / `{decl.negative}`" if decl.negative else "")
            if decl.kind == "bool" and not decl.negative:
                flag = f"`{decl.flag}` / `--no-{decl.flag[2:]}`"
            names = f"`{decl.env}` / `{decl.config_key}`"
            rows.append(f"| {flag} | {names} | {_default_text(decl)} | {decl.help} |")
        rows.append("")
    rows += ["### The config file", ""]
    rows += ["| option | variable | default | meaning |", "|---|---|---|---|"]
    rows.append(f"| `--config` | `{CONFIG_ENV}` | (none) | JSON file of any settings above |")
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - a maintainer's tool
    print(settings_table(), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
