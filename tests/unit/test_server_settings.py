"""Server options: command line over COCALC_SERVER_* variables over a JSON config file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cocalc_tasks.server.settings import (
    ServerSettings,
    SettingsError,
    add_serve_arguments,
    settings_from_args,
)


def parse(*argv: str, env: dict[str, str] | None = None) -> ServerSettings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return settings_from_args(parser.parse_args(list(argv)), env or {})


def test_defaults_are_loopback_and_cocalcs_limits() -> None:
    s = parse()
    assert (s.host, s.port, s.allow_anonymous) == ("127.0.0.1", 8765, True)
    assert (s.cell_timeout, s.project_cell_timeout) == (15.0, 30.0)
    assert (s.max_output_per_cell, s.max_output) == (500_000, 2_500_000)
    assert s.projects_dir == s.data_dir / "projects"


def test_precedence_cli_over_env_over_config(tmp_path: Path) -> None:
    config = tmp_path / "server.json"
    config.write_text(
        json.dumps(
            {
                "PORT": 1111,
                "POOL_SIZE": 5,
                "API_KEYS": ["sk-config-1"],
                "KERNEL_ALIASES": {"sage": "sagemath"},
            }
        )
    )
    env = {
        "COCALC_SERVER_CONFIG": str(config),
        "COCALC_SERVER_PORT": "2222",
        "COCALC_SERVER_ALLOW_ANONYMOUS": "false",
        "COCALC_SERVER_PROJECT_KEYS": "sk-p1=6e75dbf1-0342-4249-9dce-6b21648656e9",
    }
    s = parse(
        "--port", "3333", "--api-key", "sk-cli-1", "--kernel-alias", "sage-9.8=sagemath", env=env
    )
    assert s.port == 3333 and s.pool_size == 5 and s.allow_anonymous is False
    assert s.api_keys == ("sk-config-1", "sk-cli-1")
    assert s.kernel_aliases == {"sage": "sagemath", "sage-9.8": "sagemath"}
    assert s.project_keys == {"sk-p1": "6e75dbf1-0342-4249-9dce-6b21648656e9"}
    assert "sk-cli-1" not in repr(s) and "sk-p1" not in repr(s)


def test_fork_kernels_is_on_by_default_and_can_be_switched_off() -> None:
    assert parse().fork_kernels is True
    assert parse("--no-fork-kernels").fork_kernels is False
    assert parse(env={"COCALC_SERVER_FORK_KERNELS": "off"}).fork_kernels is False
    on = parse("--fork-kernels", env={"COCALC_SERVER_FORK_KERNELS": "0"})
    assert on.fork_kernels is True


def test_sage_pools_default_to_one_kernel() -> None:
    s = parse("--pool-size", "3", "--kernel-pool", "bash=0")
    assert s.pool_size_for("python3", "python") == 3
    assert s.pool_size_for("sagemath", "sage") == 1
    assert s.pool_size_for("bash", "bash") == 0


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--kernel-alias", "sage"], {}, "NAME=VALUE"),
        (["--cell-timeout", "0"], {}, "timeouts must be positive"),
        ([], {"COCALC_SERVER_ALLOW_ANONYMOUS": "maybe"}, "true or false"),
        ([], {"COCALC_SERVER_PORT": "http"}, "invalid literal"),
        ([], {"COCALC_SERVER_CONFIG": "/no/such/file.json"}, "cannot read config file"),
        (["--max-concurrency", "0"], {}, "out of range"),
    ],
)
def test_invalid_settings_are_named(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        parse(*argv, env=env)
