"""The ``cxbridge`` pytest plugin (registered through the ``pytest11`` entry point of the core distribution).

Fixtures:

- ``plugin_manager``: an isolated plugin manager -- hook specs and built-in plugins, no installed plugins.
- ``register_plugin``: ``register_plugin(plugin, name=None, pm=None)`` registers a plugin on ``plugin_manager``
  (or ``pm``) until the end of the test, or of the ``with`` block when used as a context manager.
- ``no_sleep``: a :class:`cxbridge.retry.RecordingSleep` -- pass it wherever a ``sleep`` is injected; its
  ``calls`` list the requested waits. ``no_sleep_retry``: a :class:`cxbridge.retry.RetryPolicy` using it.
- ``fake_crm``: a :class:`cxbridge.testing.fakes.FakeCRM` on ``https://crm.test``.
- ``plugin_context``: an empty :class:`cxbridge.testing.plugins.MemoryContext`.
- store fixtures (``sqlite_store``, ``postgres_store``, ``store``...) from :mod:`cxbridge.testing.stores` and the
  adapter contract suite's fixtures from :mod:`cxbridge.testing.contract`, when those modules exist.

This module is imported by every pytest run in an environment where cxbridge is installed, so it imports
nothing heavy at module level.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pluggy

    from cxbridge.retry import RecordingSleep, RetryPolicy
    from cxbridge.testing.fakes import FakeCRM
    from cxbridge.testing.plugins import MemoryContext


def _existing(*modules: str) -> list[str]:
    # The store and contract fixture modules are written by other parts of the code base; load each one
    # that exists. A module that exists but fails to import is an error, not skipped.
    return [m for m in modules if importlib.util.find_spec(m) is not None]


pytest_plugins = _existing("cxbridge.testing.stores", "cxbridge.testing.contract")


@pytest.fixture
def plugin_manager() -> pluggy.PluginManager:
    """An isolated plugin manager: hook specs and built-in plugins, no entry points."""
    from cxbridge.plugins import get_plugin_manager

    return get_plugin_manager(load_entrypoints=False)


class _Registration:
    """Registers at once; unregisters on ``__exit__`` or at the end of the test."""

    def __init__(self, pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
        from cxbridge.testing.plugins import register_plugin

        self._cm = register_plugin(pm, plugin, name)
        self.name = self._cm.__enter__()
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def register_plugin(plugin_manager: pluggy.PluginManager) -> Iterator[Callable[..., _Registration]]:
    """``register_plugin(plugin, name=None, pm=None)``: register a plugin for the test (or a ``with`` block)."""
    made: list[_Registration] = []

    def register(plugin: object, name: str | None = None, pm: pluggy.PluginManager | None = None) -> _Registration:
        registration = _Registration(pm or plugin_manager, plugin, name)
        made.append(registration)
        return registration

    yield register
    for registration in reversed(made):
        registration.close()


@pytest.fixture
def no_sleep() -> RecordingSleep:
    """A ``sleep`` replacement that records the requested seconds (``.calls``, ``.total``) and returns at once."""
    from cxbridge.retry import RecordingSleep

    return RecordingSleep()


@pytest.fixture
def no_sleep_retry(no_sleep: RecordingSleep) -> RetryPolicy:
    """The default retry policy, sleeping through ``no_sleep`` and with seeded jitter."""
    import random

    from cxbridge.retry import RetryPolicy

    return RetryPolicy(sleep=no_sleep, rng=random.Random(0))


@pytest.fixture
def fake_crm() -> FakeCRM:
    """A :class:`~cxbridge.testing.fakes.FakeCRM` on ``https://crm.test`` (use ``fake_crm.transport()``)."""
    from cxbridge.testing.fakes import FakeCRM

    return FakeCRM("https://crm.test")


@pytest.fixture
def plugin_context() -> MemoryContext:
    """An empty in-memory plugin context; add customers with ``plugin_context.customers[id] = Customer(...)``."""
    from cxbridge.testing.plugins import MemoryContext

    return MemoryContext()
