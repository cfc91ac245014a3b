"""The lock file stays inside the ranges pyproject.toml declares where they matter."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT


def _locked(name: str) -> Version:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {Version(p["version"]) for p in lock["package"] if p["name"] == name}
    assert len(versions) == 1, versions
    return versions.pop()


def _declared(extra: str, name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if requirement.name.replace("_", "-") == name:
            return requirement
    raise AssertionError(f"{name} is not declared in the {extra} extra")


def test_jupyter_client_has_an_upper_bound_that_the_lock_satisfies() -> None:
    """The zygotes are started by a jupyter_client provisioner: a new major release is a decision."""
    requirement = _declared("server", "jupyter-client")
    assert any(spec.operator in ("<", "<=", "~=") for spec in requirement.specifier)
    assert requirement.specifier.contains(_locked("jupyter-client"))
