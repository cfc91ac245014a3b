"""Server options: command line over COCALC_SERVER_* variables over a JSON config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from cocalc_tasks.server.settings import (
    ServerSettings,
    SettingsError,
    add_serve_arguments,
    declarations,
    settings_from_args,
    settings_table,
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


def test_sage_pools_default_to_one_exec_d_kernel() -> None:
    """A forked Sage kernel is cheap (it shares its zygote's pages): pools as any other; an
    exec'd one is not: one warm kernel unless told otherwise."""
    s = parse("--pool-size", "3", "--kernel-pool", "bash=0")
    assert s.pool_size_for("python3", "python") == 3
    assert s.pool_size_for("sagemath", "sage") == 3
    assert s.pool_size_for("bash", "bash") == 0
    for execd in (("--no-fork-kernels",), ("--sage-threads", "4")):
        s = parse("--pool-size", "3", *execd)
        assert s.pool_size_for("sagemath", "sage") == 1 and s.pool_size_for("python3") == 3
    assert (
        parse("--kernel-pool", "sagemath=4", "--no-fork-kernels").pool_size_for("sagemath", "sage")
        == 4
    )


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--kernel-alias", "sage"], {}, "--kernel-alias: expected NAME=VALUE"),
        (
            ["--cell-timeout", "0"],
            {},
            r"--cell-timeout \(COCALC_SERVER_CELL_TIMEOUT\) must be positive",
        ),
        (
            [],
            {"COCALC_SERVER_ALLOW_ANONYMOUS": "maybe"},
            "COCALC_SERVER_ALLOW_ANONYMOUS: expected true or false",
        ),
        (
            [],
            {"COCALC_SERVER_PORT": "http"},
            "COCALC_SERVER_PORT: expected a whole number, got 'http'",
        ),
        (["--port", "-1"], {}, r"--port \(COCALC_SERVER_PORT\) must be at least 0"),
        ([], {"COCALC_SERVER_CONFIG": "/no/such/file.json"}, "cannot read config file"),
        (
            ["--max-concurrency", "0"],
            {},
            r"--max-concurrency \(COCALC_SERVER_MAX_CONCURRENCY\) must be at least 1",
        ),
        (["--kernel-pool", "bash=x"], {}, "--kernel-pool: expected a whole number"),
        ([], {"COCALC_SERVER_KERNEL_POOLS": "bash=-1"}, "must be at least 0"),
        (
            [],
            {"COCALC_SERVER_MAX_BODY_BYTES": "1.5"},
            "COCALC_SERVER_MAX_BODY_BYTES: expected a whole number",
        ),
    ],
)
def test_invalid_settings_are_named(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        parse(*argv, env=env)


def test_invalid_config_values_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"CELL_TIMEOUT": "soon"}))
    with pytest.raises(SettingsError, match=f"CELL_TIMEOUT in {config}: expected a number"):
        parse("--config", str(config))


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="--max-concurrency"):
        ServerSettings(max_concurrency=0)
    with pytest.raises(SettingsError, match="--kernel-start-timeout"):
        ServerSettings(kernel_start_timeout=-1.0)


def test_relative_directories_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = parse("--data-dir", "rel-data", "--projects-root", "rel-projects")
    assert s.data_dir == tmp_path / "rel-data" and s.data_dir.is_absolute()
    assert s.projects_dir == tmp_path / "rel-projects"


def test_every_setting_is_reachable_from_flag_env_and_config(tmp_path: Path) -> None:
    """Each declared setting round-trips through all three layers to the same value."""
    samples = {
        "str": ("10.0.0.1", "10.0.0.1"),
        "int": ("7", 7),
        "float": ("2.5", 2.5),
        "bool": ("false", False),
        "path": (str(tmp_path / "x"), tmp_path / "x"),
        "list": ("a,b", ("a", "b")),
        "pairs": ("k=v", {"k": "v"}),
        "int_pairs": ("k=3", {"k": 3}),
    }
    for decl in declarations():
        text, expected = samples[decl.kind]
        if decl.choices:  # a value the setting accepts
            text = expected = decl.choices[-1]
        elif decl.value is not None:  # a value of the kind it parses
            one = {
                "limits": "nofile=10",
                "caps": "memory=1G",
                "network": "host",
                "uids": "70000-80000",
            }[decl.value]
            text = f"k={one}" if decl.kind == "pairs" else one
            expected = {"k": one} if decl.kind == "pairs" else one
        argv = [decl.flag, text] if decl.kind != "bool" else [f"--no-{decl.flag[2:]}"]
        from_flag = getattr(parse(*argv), decl.name)
        from_env = getattr(parse(env={decl.env: text}), decl.name)
        config = tmp_path / f"{decl.name}.json"
        config.write_text(json.dumps({decl.config_key: text}))
        from_config = getattr(parse("--config", str(config)), decl.name)
        assert from_flag == from_env == from_config == expected, decl.name


def test_the_configuration_reference_is_generated_from_the_declarations() -> None:
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs/server/configuration.md").read_text(encoding="utf-8")
    start, end = "<!-- settings:start -->\n", "<!-- settings:end -->"
    assert start in page and end in page
    shown = page.split(start, 1)[1].split(end, 1)[0]
    assert shown == settings_table(), (
        "docs/server/configuration.md is stale: python -m cocalc_tasks.server.settings prints it"
    )
    assert all(decl.env in shown and decl.flag in shown for decl in declarations())


def test_help_lists_every_flag_and_variable() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    text = " ".join(parser.format_help().split())
    for decl in declarations():
        assert decl.flag in text and decl.env in text, decl.name


def test_every_setting_is_in_exactly_one_help_group() -> None:
    from cocalc_tasks.server.settings import GROUPS, ServerSettings

    listed = [name for names in GROUPS.values() for name in names]
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(ServerSettings))
    assert len(listed) == len(set(listed))


def test_serve_help_shows_the_groups_in_order() -> None:
    from cocalc_tasks.server.settings import GROUPS

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    text = parser.format_help()
    positions = [text.index(f"\n{group}:\n") for group in GROUPS]
    assert positions == sorted(positions)
    assert list(GROUPS) == [
        "network and auth",
        "kernels and pools",
        "limits",
        "sandbox",
        "exec jobs",
        "storage and replicas",
        "quotas",
    ]
    quotas = text.split("\nquotas:\n", 1)[1]
    assert "--quota-period" in quotas and "--port" not in quotas
