"""The bubblewrap command line a project's sandbox gets (the real thing runs in tests/server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cocalc_tasks.server.sandbox import Limits, Sandbox


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
    assert "--unshare-pid" in args and args[4:6] == ["--cap-drop", "ALL"]


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
