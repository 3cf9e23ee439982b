"""Persistent per-source key/value state (the adapters' :class:`~cxbridge.adapters.StateStore`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from . import schema
from .engine import Store
from .ops import upsert, utcnow

__all__ = ["SourceState"]


class SourceState:
    """Key/value state of one source in the ``source_state`` table (OAuth tokens that rotate, quota resets).

    Each :meth:`set` commits in its own transaction, so a rotated refresh token survives a crash that
    happens right after it was received.

    :param store: the store.
    :param source: the configured source name.
    """

    def __init__(self, store: Store, source: str) -> None:
        self.store = store
        self.source = source

    def get(self, key: str) -> Any:
        """The stored value of ``key`` (JSON), or None."""
        t = schema.source_state
        with self.store.connect() as conn:
            return conn.execute(
                select(t.c.value).where(t.c.source == self.source, t.c.key == key)
            ).scalar_one_or_none()

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serializable) under ``key``; ``None`` deletes it."""
        t = schema.source_state
        with self.store.begin() as conn:
            if value is None:
                conn.execute(t.delete().where(t.c.source == self.source, t.c.key == key))
                return
            upsert(
                conn,
                t,
                [{"source": self.source, "key": key, "value": value, "updated_at": utcnow()}],
                key_cols=["source", "key"],
            )
