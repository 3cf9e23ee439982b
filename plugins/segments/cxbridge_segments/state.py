"""Where the fitted model state lives: in the store, through the plugin-state API.

The state (quintile boundaries, BG/NBD and Gamma-Gamma parameters, tier boundaries, when it was fitted and on
how many purchasers) is small JSON stored with :meth:`~cxbridge.hooktypes.PluginContext.set_state` under
``segments.model``, so every process and worker sharing the store scores against the same fit and none has to
refit on start. It is written the moment it is fitted (the core commits ``set_state`` immediately) and
carries a fingerprint of the settings it depends on: a state fitted with other settings is ignored.

Layout of the stored value::

    {"fingerprint": "<blake2b of the settings>", "state": ModelState.as_dict()}
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .engine import ModelState
from .settings import SegmentsSettings

__all__ = ["STATE_KEY", "clear_states", "get_state", "put_state", "settings_fingerprint"]

#: The plugin-state key of the fitted model.
STATE_KEY = "segments.model"


def settings_fingerprint(settings: SegmentsSettings) -> str:
    """Hash of the settings a fitted state depends on (rules and refit policy excluded)."""
    data = settings.model_dump(mode="json", exclude={"rules", "refit_every_seconds", "refit_growth_share"})
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=12).hexdigest()


def _finite(value: Any) -> Any:
    """JSON-portable: PostgreSQL's json type rejects NaN / Infinity, so non-finite floats become strings
    (``float("inf")`` reads them back)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars (fit diagnostics) are not JSON
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def get_state(context: Any, settings: SegmentsSettings) -> ModelState | None:
    """The stored state, if there is one fitted with the same settings."""
    stored = context.get_state(STATE_KEY)
    if not isinstance(stored, dict) or stored.get("fingerprint") != settings_fingerprint(settings):
        return None
    try:
        return ModelState.from_dict(stored["state"])
    except (KeyError, TypeError, ValueError) as exc:  # written by an incompatible version: refit
        import logging

        logging.getLogger(__name__).warning("stored segments model unreadable, refitting: %s", exc)
        return None


def put_state(context: Any, settings: SegmentsSettings, state: ModelState) -> None:
    """Store ``state`` for every process (committed immediately by the context)."""
    value = {"fingerprint": settings_fingerprint(settings), "state": _finite(state.as_dict())}
    context.set_state(STATE_KEY, value)


def clear_states(context: Any = None) -> None:
    """Forget the stored state of ``context`` (tests; the next scoring refits). Without a context: no-op,
    kept for callers of the former in-process cache."""
    if context is not None:
        context.set_state(STATE_KEY, None)
