"""Server settings: command-line options, each also settable as a ``COCALC_SERVER_*`` variable.

This module imports nothing from the ``server`` extra, so ``cocalc-tasks --help`` stays fast.
Options win over the environment, which wins over a JSON ``--config`` file, which wins over
defaults.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServerSettings", "SettingsError", "add_serve_arguments", "settings_from_args"]

ENV_PREFIX = "COCALC_SERVER_"


class SettingsError(ValueError):
    """A server option is invalid."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=lambda: Path.home() / ".local/share/cocalc-tasks")
    projects_root: Path | None = None
    #: Kernels kept warm from start-up; others get a pool on first use.
    kernels: tuple[str, ...] = ("python3",)
    pool_size: int = 2
    #: Per-kernelspec pool sizes, e.g. ``{"sagemath": 1}``.
    kernel_pool_sizes: Mapping[str, int] = field(default_factory=dict)
    kernel_aliases: Mapping[str, str] = field(default_factory=dict)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    project_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    allow_anonymous: bool = True
    cell_timeout: float = 15.0
    project_cell_timeout: float = 30.0
    max_output_per_cell: int = 500_000
    max_output: int = 2_500_000
    project_max_output_per_cell: int = 1_000_000
    project_max_output: int = 5_000_000
    max_concurrency: int = 8
    max_parallel_starts: int = 4
    max_body_bytes: int = 10 * 1024 * 1024
    kernel_start_timeout: float = 60.0
    #: Start ipykernel and bash kernels by forking a pre-imported process (forkserver.py).
    fork_kernels: bool = True
    cache_ttl_seconds: float = 30 * 24 * 3600.0

    @property
    def projects_dir(self) -> Path:
        return self.projects_root or self.data_dir / "projects"

    def pool_size_for(self, spec_name: str, language: str = "") -> int:
        if spec_name in self.kernel_pool_sizes:
            return self.kernel_pool_sizes[spec_name]
        # A Sage kernel holds about 300 MB: keep one warm unless told otherwise.
        return min(self.pool_size, 1) if language == "sage" else self.pool_size


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise SettingsError(f"{what} must look like NAME=VALUE, got {value!r}")
        out[name.strip()] = target.strip()
    return out


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"expected true or false, got {value!r}")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``cocalc-tasks serve`` options (all default to None: see settings_from_args)."""
    a = parser.add_argument
    a("--host", help="bind address (default 127.0.0.1; env COCALC_SERVER_HOST)")
    a("--port", type=int, help="port, 0 for any free one (default 8765)")
    a("--pool-size", type=int, help="warm kernels per kernelspec (default 2)")
    a(
        "--kernel-pool",
        action="append",
        default=[],
        metavar="SPEC=N",
        help="pool size for one kernelspec, e.g. sagemath=1 (repeatable)",
    )
    a("--kernels", help="kernels to keep warm from start-up, comma-separated (default python3)")
    a(
        "--kernel-alias",
        action="append",
        default=[],
        metavar="NAME=KERNELSPEC",
        help="serve a kernelspec under another name, e.g. sage-10.4=sagemath (repeatable)",
    )
    a("--data-dir", type=Path, help="cache, kernel state and scratch space")
    a("--projects-root", type=Path, help="one directory per project_id (default DATA/projects)")
    a(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accepted account key (repeatable; prefer COCALC_SERVER_API_KEYS)",
    )
    a(
        "--project-key",
        action="append",
        default=[],
        metavar="KEY=PROJECT_ID",
        help="key valid only for one project (repeatable)",
    )
    anon = parser.add_mutually_exclusive_group()
    anon.add_argument(
        "--allow-anonymous",
        dest="allow_anonymous",
        action="store_true",
        default=None,
        help="serve the global pool without a key (default)",
    )
    anon.add_argument(
        "--no-anonymous",
        dest="allow_anonymous",
        action="store_false",
        help="require a key for every call",
    )
    a("--cell-timeout", type=float, help="per-cell seconds in the global pool (default 15)")
    a("--project-cell-timeout", type=float, help="per-cell seconds in a project (default 30)")
    a("--max-concurrency", type=int, help="executions running at once (default 8)")
    a("--kernel-start-timeout", type=float, help="seconds a kernel may take to start (default 60)")
    a(
        "--fork-kernels",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start ipykernel/bash kernels by forking a pre-imported process (default: on); "
        "--no-fork-kernels starts each kernel as its own program, as jupyter_client does",
    )
    a("--config", type=Path, help="JSON file with any of these settings (keys as in the env)")


_ENV_FIELDS: dict[str, str] = {
    "host": "HOST",
    "port": "PORT",
    "pool_size": "POOL_SIZE",
    "kernels": "KERNELS",
    "kernel_aliases": "KERNEL_ALIASES",
    "kernel_pool_sizes": "KERNEL_POOLS",
    "data_dir": "DATA_DIR",
    "projects_root": "PROJECTS_ROOT",
    "api_keys": "API_KEYS",
    "project_keys": "PROJECT_KEYS",
    "allow_anonymous": "ALLOW_ANONYMOUS",
    "cell_timeout": "CELL_TIMEOUT",
    "project_cell_timeout": "PROJECT_CELL_TIMEOUT",
    "max_concurrency": "MAX_CONCURRENCY",
    "kernel_start_timeout": "KERNEL_START_TIMEOUT",
    "fork_kernels": "FORK_KERNELS",
}


def _from_text(name: str, raw: Any) -> Any:
    """Convert an environment or config-file value to the field's type."""
    if name in {"kernels", "api_keys"}:
        return tuple(raw if isinstance(raw, list) else _split(str(raw)))
    if name in {"kernel_aliases", "project_keys"}:
        return dict(raw) if isinstance(raw, dict) else _pairs(_split(str(raw)), name)
    if name == "kernel_pool_sizes":
        pairs = dict(raw) if isinstance(raw, dict) else _pairs(_split(str(raw)), name)
        return {k: int(v) for k, v in pairs.items()}
    if name in {"data_dir", "projects_root"}:
        return Path(str(raw)).expanduser()
    if name in {"allow_anonymous", "fork_kernels"}:
        return raw if isinstance(raw, bool) else _bool(str(raw))
    if name in {"port", "pool_size", "max_concurrency"}:
        return int(raw)
    if name in {"cell_timeout", "project_cell_timeout", "kernel_start_timeout"}:
        return float(raw)
    return str(raw)


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = args.config or (
        Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    )
    try:
        if config_path is not None:
            try:
                config = json.loads(Path(config_path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SettingsError(f"cannot read config file {config_path}: {exc}") from None
            for name, suffix in _ENV_FIELDS.items():
                if suffix in config:
                    values[name] = _from_text(name, config[suffix])
        for name, suffix in _ENV_FIELDS.items():
            if env.get(ENV_PREFIX + suffix):
                values[name] = _from_text(name, env[ENV_PREFIX + suffix])
        cli: dict[str, Any] = {
            "host": args.host,
            "port": args.port,
            "pool_size": args.pool_size,
            "kernels": tuple(_split(args.kernels)) if args.kernels else None,
            "data_dir": args.data_dir,
            "projects_root": args.projects_root,
            "allow_anonymous": args.allow_anonymous,
            "cell_timeout": args.cell_timeout,
            "project_cell_timeout": args.project_cell_timeout,
            "max_concurrency": args.max_concurrency,
            "kernel_start_timeout": args.kernel_start_timeout,
            "fork_kernels": args.fork_kernels,
        }
        values.update({k: v for k, v in cli.items() if v is not None})
        if args.api_key:
            values["api_keys"] = tuple(values.get("api_keys", ())) + tuple(args.api_key)
        if args.project_key:
            values["project_keys"] = {
                **values.get("project_keys", {}),
                **_pairs(args.project_key, "--project-key"),
            }
        if args.kernel_alias:
            values["kernel_aliases"] = {
                **values.get("kernel_aliases", {}),
                **_pairs(args.kernel_alias, "--kernel-alias"),
            }
        if args.kernel_pool:
            pools = _pairs(args.kernel_pool, "--kernel-pool")
            values["kernel_pool_sizes"] = {
                **values.get("kernel_pool_sizes", {}),
                **{k: int(v) for k, v in pools.items()},
            }
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    settings = ServerSettings(**values)
    for name in ("pool_size", "max_concurrency"):
        if getattr(settings, name) < (0 if name == "pool_size" else 1):
            raise SettingsError(f"{name} is out of range: {getattr(settings, name)}")
    if (
        min(settings.cell_timeout, settings.project_cell_timeout, settings.kernel_start_timeout)
        <= 0
    ):
        raise SettingsError("timeouts must be positive")
    return settings
