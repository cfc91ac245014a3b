"""Installed kernelspecs in CoCalc's shape, plus aliases.

Specs come from jupyter_client's search path. A bundled ``bash`` spec is added when
bash_kernel is importable but its spec was never installed, so ``pip install
cocalc-tasks[server]`` is enough for both python3 and bash.

Aliases serve a spec under another name, so code written for cocalc.com names (``sage-10.4``,
``sage-9.8``) runs unchanged; both are served by default wherever passagemath's ``sagemath``
kernel is installed. The caller's name is what the cache hash uses.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from cocalc_tasks.server.processes.zygotes import PROVISIONER_NAME

__all__ = ["KernelCatalog", "UnknownKernel"]

_BUNDLED = Path(__file__).with_name("bundled_kernelspecs")
log = logging.getLogger("cocalc_tasks.server.jupyter.kernelspecs")


#: The Sage kernelspec (passagemath's), and the cocalc.com names served as aliases of it.
SAGE_SPEC = "sagemath"
SAGE_ALIASES = ("sage-9.8", "sage-10.4")
SAGE_MISSING = (
    ". SageMath is not installed where this server runs: in a clone, `make sage-env` and then "
    "`make serve-sage`; elsewhere, pip install 'cocalc-tasks[sage,server]' into the server's "
    "environment"
)


def _is_sage_name(name: str) -> bool:
    return name.lower().startswith("sage")


class UnknownKernel(LookupError):
    """The requested kernel name is neither a kernelspec nor an alias."""


@dataclass(frozen=True)
class ResolvedKernel:
    spec_name: str
    language: str


def _provisioner_installed() -> bool:
    """False when cocalc-tasks runs from a tree whose entry points were never installed."""
    found = entry_points(group="jupyter_client.kernel_provisioners", name=PROVISIONER_NAME)
    if not found:
        log.warning(
            "the %r kernel provisioner is not installed: kernels are not forked", PROVISIONER_NAME
        )
    return bool(found)


class _SpecManager(KernelSpecManager):
    """Names the server's provisioner in every spec that does not name one of its own."""

    def get_kernel_spec(self, kernel_name: str) -> Any:
        spec = super().get_kernel_spec(kernel_name)
        if not _PROVISIONER:
            return spec
        if "provisioner_name" not in spec.metadata.get("kernel_provisioner", {}):
            spec.metadata["kernel_provisioner"] = {
                "provisioner_name": PROVISIONER_NAME,
                "config": {},
            }
        return spec


_PROVISIONER = _provisioner_installed()


class KernelCatalog:
    """Resolves kernel names and lists them as CoCalc's ``/kernels`` does."""

    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self.manager = _SpecManager()
        if importlib.util.find_spec("bash_kernel") is not None:
            self.manager.kernel_dirs.append(str(_BUNDLED))
        self._specs: dict[str, dict[str, Any]] = {}
        self.refresh()
        self.aliases = {name.lower(): target for name, target in (aliases or {}).items()}
        for alias, target in self.aliases.items():
            if target not in self._specs:
                raise UnknownKernel(
                    f"kernel alias {alias}={target}: no kernelspec named {target!r} "
                    f"(installed: {', '.join(sorted(self._specs)) or 'none'})"
                    + (SAGE_MISSING if _is_sage_name(target) else "")
                )
        # cocalc.com's Sage names, wherever a Sage kernel is installed (unless configured).
        if SAGE_SPEC in self._specs:
            for alias in SAGE_ALIASES:
                if alias not in self._specs:
                    self.aliases.setdefault(alias, SAGE_SPEC)

    def refresh(self) -> None:
        found = self.manager.get_all_specs()
        self._specs = {name.lower(): info for name, info in found.items()}

    def resolve(self, name: str) -> ResolvedKernel:
        key = name.strip().lower()
        spec_name = self.aliases.get(key, key)
        info = self._specs.get(spec_name)
        if info is None:
            self.refresh()
            info = self._specs.get(spec_name)
        if info is None:
            raise UnknownKernel(
                f'No spec available for kernel "{name}".  Available specs: '
                f"{sorted([*self._specs, *self.aliases])}"
                + (SAGE_MISSING if _is_sage_name(spec_name) else "")
            )
        return ResolvedKernel(spec_name, str(info["spec"].get("language", "")))

    def kernel_dirs_for(self, tools: Path) -> list[str]:
        """The kernelspec folders, as programs in a project see them (the notebook runner):
        the bundled specs, which live in the package, are copied into ``tools`` (the folder
        every sandbox sees), and the rest are where they are."""
        dirs = []
        for directory in self.manager.kernel_dirs:
            if Path(directory) == _BUNDLED:
                copy = tools / "kernels"
                shutil.copytree(_BUNDLED, copy, dirs_exist_ok=True)
                directory = str(copy)
            dirs.append(str(directory))
        return dirs

    def language(self, spec_name: str) -> str:
        """The spec's language, from the cached listing (no disk read)."""
        info = self._specs.get(spec_name)
        return str(info["spec"].get("language", "")) if info else ""

    def get_spec(self, spec_name: str) -> Any:
        try:
            return self.manager.get_kernel_spec(spec_name)
        except NoSuchKernel as exc:  # pragma: no cover - resolve() checked it
            raise UnknownKernel(str(exc)) from None

    def listing(self) -> list[dict[str, Any]]:
        """CoCalc's kernel list: specs and aliases, sorted by display name."""
        entries = [_cocalc_shape(name, info) for name, info in self._specs.items()]
        for alias, target in self.aliases.items():
            entry = _cocalc_shape(alias, self._specs[target])
            entry["metadata"] = {**entry.get("metadata", {}), "alias_of": target}
            entries.append(entry)
        return sorted(entries, key=lambda e: (e["display_name"], e["name"]))


def _cocalc_shape(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    spec = info["spec"]
    language = spec.get("language", "")
    entry: dict[str, Any] = {
        "name": name,
        "display_name": spec.get("display_name", name),
        "language": "Macaulay2" if language == "text/x-macaulay2" else language,
    }
    if spec.get("interrupt_mode"):
        entry["interrupt_mode"] = spec["interrupt_mode"]
    entry["env"] = dict(spec.get("env") or {})
    if spec.get("metadata"):
        entry["metadata"] = dict(spec["metadata"])
    entry["resource_dir"] = info.get("resource_dir", "")
    entry["argv"] = list(spec.get("argv") or [])
    return entry
