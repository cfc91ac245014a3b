"""The bubblewrap command line a project's sandbox gets (the real thing runs in tests/server)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from cocalc_tasks.server.sandbox import Isolation, Limits, Sandbox
from cocalc_tasks.server.sandbox.users import Owner


def sandbox(tmp_path: Path, hidden: list[Path]) -> Sandbox:
    box = Sandbox(
        "none",
        data_dir=tmp_path / "data",
        projects_dir=tmp_path / "data" / "projects",
        anonymous_home=tmp_path / "data" / "sandbox",
        hidden=hidden,
    )
    box.bwrap = "/usr/bin/bwrap"
    return box


def test_areas_data_dir_and_hidden_files(tmp_path: Path) -> None:
    config = Path(sys.prefix) / "pyvenv.cfg"  # a file under a path mounted read-only
    box = sandbox(tmp_path, [config, tmp_path / "missing.json"])
    area = box.area("6E75DBF1-0342-4249-9DCE-6B21648656E9")
    args = box._prefix(area, area.home)
    assert area.name == "6e75dbf1-0342-4249-9dce-6b21648656e9"
    assert area.home == tmp_path / "data" / "projects" / area.name
    text = " ".join(args)
    assert f"--ro-bind /dev/null {config}" in text  # hidden where it would be visible
    assert "missing.json" not in text
    assert f"--tmpfs {tmp_path / 'data'}" in text  # the data dir is empty inside...
    assert f"--tmpfs {tmp_path / 'data' / 'projects'}" not in text  # (once: it is inside)
    for own in (area.home, area.scratch, area.state):
        assert f"--bind {own} {own}" in text  # ...but for the area's own directories
    assert args.index(f"{tmp_path / 'data'}") < args.index("--remount-ro")
    assert args[-3:] == ["--chdir", str(area.home), "--"]
    assert {"--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net"} <= set(args)
    assert args[args.index("--cap-drop") + 1] == "ALL" and "--cap-add" not in args
    assert "setpriv" not in text  # the server's own user: one bwrap


def test_as_root_an_outer_bwrap_builds_the_view_and_the_inner_one_runs_as_the_project(
    tmp_path: Path,
) -> None:
    box = sandbox(tmp_path, [])
    project = "6e75dbf1-0342-4249-9dce-6b21648656e9"
    box.isolation = Isolation(network_for={project: "host"})
    owner = Owner(70001, 70001)
    area = dataclasses.replace(box.area(project), owner=owner)
    args = box._prefix(area, area.home)
    drop = next(i for i, a in enumerate(args) if a.endswith("setpriv"))
    outer, inner = args[:drop], args[drop:]
    assert outer[-3:] == ["--chdir", "/", "--"]  # root without DAC override: not the area's
    assert outer.count("--cap-add") == 2 and "CAP_SETUID" in outer and "--unshare-user" not in outer
    assert f"--bind {area.home} {area.home}" in " ".join(outer)
    assert inner[1:5] == ["--reuid=70001", "--regid=70001", "--clear-groups", "--inh-caps=-all"]
    assert {"--unshare-user", "--disable-userns", "--unshare-pid"} <= set(inner)
    assert "--unshare-net" not in inner  # this project was given the host's network
    assert inner[-3:] == ["--chdir", str(area.home), "--"]
    other = dataclasses.replace(box.area(None), owner=owner)
    assert "--unshare-net" in box._prefix(other, other.home)


def test_limits_parse_and_merge() -> None:
    base = Limits.parse("nofile=1000 fsize=10485760 cpu=30 as=3000000")
    merged = base.merged(Limits.parse("as=6000000"))
    assert merged.values == {"nofile": 1000, "fsize": 10485760, "cpu": 30, "as": 6000000}
    assert Limits.parse("none").rlimits() == []
    with pytest.raises(ValueError, match="is not a limit"):
        Limits.parse("mem=1")
    with pytest.raises(ValueError, match="positive"):
        Limits.parse("cpu=0")


def test_the_private_tmp_comes_before_environments_that_may_live_under_it(tmp_path: Path) -> None:
    """A checkout in /tmp has its venv there: mounting /tmp after it would hide Python."""
    box = sandbox(tmp_path, [])
    venv = Path("/tmp/some-checkout/.venv")
    box._readonly = [venv]
    args = box._prefix(box.area(None), tmp_path)
    tmp_at = args.index("--tmpfs")
    assert args[tmp_at + 1] == "/tmp"
    assert args.index(str(venv)) > tmp_at
