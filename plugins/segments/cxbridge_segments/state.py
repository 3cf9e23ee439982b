"""Where fitted model states live between hook calls.

The core has no plugin-state API yet, so fitted states are kept in a process-wide cache keyed by the store the
context belongs to (``context.store_key`` / ``store_url`` / the ``store`` object, whichever the context
offers; ``"default"`` otherwise). A process that has no state yet fits one on first use (see
:func:`cxbridge_segments.pipeline.ensure_state`); the ``segments.refit`` job refreshes it on schedule. The state
is small and JSON-serialisable (:meth:`ModelState.as_dict`), ready for a persistent plugin-state API.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from .engine import ModelState
from .settings import SegmentsSettings

__all__ = ["clear_states", "get_state", "put_state", "settings_fingerprint", "state_key"]

_LOCK = threading.Lock()
_STATES: dict[str, tuple[str, ModelState]] = {}


def state_key(context: Any) -> str:
    """A key identifying the store behind ``context``."""
    for attr in ("store_key", "store_url"):
        value = getattr(context, attr, None)
        if isinstance(value, str) and value:
            return value
    store = getattr(context, "store", None)
    if store is not None:
        url = getattr(store, "url", None)
        return str(url) if url is not None else f"store@{id(store)}"
    return "default"


def settings_fingerprint(settings: SegmentsSettings) -> str:
    """Hash of the settings a fitted state depends on (rules and refit interval excluded)."""
    data = settings.model_dump(mode="json", exclude={"rules", "refit_every_seconds"})
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=12).hexdigest()


def get_state(context: Any, settings: SegmentsSettings) -> ModelState | None:
    """The cached state for this store, if it was fitted with the same settings."""
    with _LOCK:
        entry = _STATES.get(state_key(context))
    if entry is None or entry[0] != settings_fingerprint(settings):
        return None
    return entry[1]


def put_state(context: Any, settings: SegmentsSettings, state: ModelState) -> None:
    with _LOCK:
        _STATES[state_key(context)] = (settings_fingerprint(settings), state)


def clear_states() -> None:
    """Forget every cached state (tests)."""
    with _LOCK:
        _STATES.clear()
