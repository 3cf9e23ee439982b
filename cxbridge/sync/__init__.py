"""The sync engine (ARCHITECTURE §2, §6): pages from adapters -> mapping -> mirror + identity -> hooks.

Public names (imported lazily, so submodules such as :mod:`cxbridge.sync.bulk` import without the engine):
:class:`SyncEngine` (runs, quarantine replay), :class:`StoreContext` (the
:class:`~cxbridge.hooktypes.PluginContext` over a store), :func:`compile_mapping`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CompiledMapping", "FlushReport", "ReplayReport", "StoreContext", "SyncEngine", "compile_mapping"]

if TYPE_CHECKING:
    from .context import FlushReport, StoreContext
    from .engine import ReplayReport, SyncEngine
    from .mapping import CompiledMapping, compile_mapping

_WHERE = {
    "FlushReport": "context", "StoreContext": "context", "ReplayReport": "engine", "SyncEngine": "engine",
    "CompiledMapping": "mapping", "compile_mapping": "mapping",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
