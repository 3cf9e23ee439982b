"""The sync engine (ARCHITECTURE §2, §6): pages from adapters -> mapping -> mirror + identity -> hooks.

Public names: :class:`SyncEngine` (runs, quarantine replay), :class:`StoreContext` (the
:class:`~cxbridge.hooktypes.PluginContext` over a store), :func:`compile_mapping`.
"""

from __future__ import annotations

from .context import FlushReport, StoreContext
from .engine import ReplayReport, SyncEngine
from .mapping import CompiledMapping, compile_mapping

__all__ = ["CompiledMapping", "FlushReport", "ReplayReport", "StoreContext", "SyncEngine", "compile_mapping"]
