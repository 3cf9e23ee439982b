"""cxbridge's test kit, a pytest plugin (``cxbridge.testing.pytest_plugin``).

Public helpers (imported lazily, so ``import cxbridge.testing`` needs neither respx nor a store):

- :func:`register_plugin` -- register a plugin on a manager for a ``with`` block;
- :class:`MemoryContext` -- an in-memory :class:`~cxbridge.hooktypes.PluginContext` for plugin tests;
- :class:`FakeCRM` -- a respx-based fake CRM API with paging, tokens and injected faults;
- ``cxbridge.testing.stores`` -- store fixtures; ``cxbridge.testing.contract`` -- the adapter contract suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fakes import FakeCRM
    from .plugins import MemoryContext, register_plugin

__all__ = ["FakeCRM", "MemoryContext", "register_plugin"]

_LAZY = {"FakeCRM": ".fakes", "MemoryContext": ".plugins", "register_plugin": ".plugins"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)
