"""The parts of project isolation that need no root: caps, uid ranges, settings, cgroup files.

The real sandbox, users, network namespaces and cgroups run in tests/server/test_isolation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cocalc_tasks.server.sandbox import Caps
from cocalc_tasks.server.sandbox.caps import DEFAULT_POOL_CAPS, DEFAULT_PROJECT_CAPS
from cocalc_tasks.server.sandbox.cgroups import Cgroups
from cocalc_tasks.server.sandbox.users import DEFAULT_UID_RANGE, ProjectUsers, parse_uid_range
from cocalc_tasks.server.settings import SettingsError
from tests.unit.test_server_settings import parse


def test_the_settings_defaults_are_the_sandboxs() -> None:
    settings = parse()
    assert settings.project_limits == DEFAULT_PROJECT_CAPS
    assert settings.pool_limits == DEFAULT_POOL_CAPS
    assert settings.project_uids == DEFAULT_UID_RANGE
    assert settings.project_network == "none"


def test_caps_parse_sizes_and_say_what_is_wrong() -> None:
    caps = Caps.parse("memory=512M processes=64")
    assert (caps.memory, caps.processes) == (512 << 20, 64)
    assert caps.as_text() == "memory=512M processes=64"
    assert Caps.parse("memory=2G").as_text() == "memory=2G"
    assert not Caps.parse("none").any and Caps.parse("processes=none").processes is None
    with pytest.raises(ValueError, match="'memory=lots': the value must be a size"):
        Caps.parse("memory=lots")
    with pytest.raises(ValueError, match="'cpu=1' is not a cap"):
        Caps.parse("cpu=1")
    with pytest.raises(ValueError, match="positive whole number"):
        Caps.parse("processes=0")


def test_uids_are_derived_per_project_within_the_range() -> None:
    users = ProjectUsers("100000-100009", switch=True)
    a = users.owner("AAAAAAAA-0000-4000-8000-00000000000A")
    assert a == users.owner("aaaaaaaa-0000-4000-8000-00000000000a")  # case does not matter
    assert users.owner(None) is not None and users.owner(None).uid == 100000  # type: ignore[union-attr]
    seen = {users.owner(f"{n:08x}-0000-4000-8000-000000000000").uid for n in range(200)}  # type: ignore[union-attr]
    assert seen == set(range(100001, 100010))  # every project uid is in the range, above the pool's
    assert ProjectUsers(switch=False).owner("aaaaaaaa-0000-4000-8000-00000000000a") is None
    for bad in ("0-10", "10-10", "x-y", "65536"):
        with pytest.raises(ValueError):
            parse_uid_range(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--project-limits", "memory=lots"], "--project-limits (COCALC_SERVER_PROJECT_LIMITS): "),
        (["--project-network", "lan"], "'lan' is not a network mode: use none or host"),
        (["--project-network-for", "p=wifi"], "--project-network-for"),
        (["--project-uids", "0-5"], "need 1 <= START < END"),
    ],
)
def test_bad_isolation_settings_are_refused_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(*argv)


def test_cgroup_v2_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v2 cannot be mounted on this machine (v1 is): the files it writes, on a copy of the tree."""
    own = tmp_path / "system.slice" / "cocalc.service"
    own.mkdir(parents=True)
    for directory in (tmp_path, own):
        (directory / "cgroup.controllers").write_text("cpu memory pids\n")
        (directory / "cgroup.subtree_control").write_text("")
    (own / "cgroup.procs").write_text("4242\n")
    monkeypatch.setattr(
        "cocalc_tasks.server.sandbox.cgroups._own_cgroups",
        lambda: {"": "/system.slice/cocalc.service"},
    )
    made: list[Path] = []
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:  # a cgroup has its files
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)
        for name in ("cgroup.procs", "cgroup.subtree_control", "memory.max", "pids.max"):
            (self / name).touch()

    monkeypatch.setattr(Path, "mkdir", mkdir)
    groups = Cgroups(tmp_path, pid=99)
    assert groups.kind == "v2", groups.problem
    assert (own / "cocalc-tasks-server-99" / "cgroup.procs").read_text() == "4242"  # moved out
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids"
    files = groups.join_files("p1", Caps.parse("memory=1G processes=10"))
    area = own / "cocalc-tasks-99" / "p1"
    assert files == [str(area / "cgroup.procs")]
    assert (area / "memory.max").read_text() == str(1 << 30)
    assert (area / "pids.max").read_text() == "10"
    (area / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert groups.oom_kills("p1") == 1


def test_without_any_cgroup_the_problem_is_named(tmp_path: Path) -> None:
    groups = Cgroups(tmp_path, pid=99)
    assert groups.kind is None and groups.problem is not None and str(tmp_path) in groups.problem
    assert groups.join_files("p1", Caps.parse("processes=5")) == []
