"""Shared fixtures of the core tests: real temporary distributions for plugin-loading tests."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: Installed entry points other than the ones a test creates may be work in progress; plugin-loading tests
#: restrict loading to the plugins they are about with CXBRIDGE_LOAD_PLUGINS.
PLUGIN_ENV = ("CXBRIDGE_LOAD_PLUGINS", "CXBRIDGE_DISABLE_PLUGINS", "CXBRIDGE_TRACE_PLUGINS")


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """``make_dist(name, modules={"pkg/plugin.py": src}, entry_points={"ep": "pkg.plugin"}, version="1.0")``.

    Writes the modules and a ``<name>.dist-info`` (METADATA + entry_points.txt) into a folder put on
    ``sys.path`` -- a real distribution as ``importlib.metadata`` discovers it, with no installer involved.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    created_modules: list[str] = []

    def make(
        name: str,
        *,
        modules: dict[str, str],
        entry_points: dict[str, str],
        version: str = "1.0",
        group: str = "cxbridge",
    ) -> Path:
        for rel, source in modules.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            parts = Path(rel).with_suffix("").parts
            created_modules.append(".".join(p for p in parts if p != "__init__"))
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        eps = "\n".join(f"{ep} = {target}" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{group}]\n{eps}\n")
        importlib.invalidate_caches()
        return info

    yield make
    for module in created_modules:
        sys.modules.pop(module, None)
