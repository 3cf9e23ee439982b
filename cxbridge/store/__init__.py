"""The cxbridge store: SQLAlchemy 2 Core tables, Alembic migrations and portable helpers. ARCHITECTURE §5.

Typical use::

    from cxbridge.store import open_store, schema
    from cxbridge.store.ops import upsert, utcnow

    store = open_store("sqlite:///cxbridge.db")  # migrated on first use
    with store.begin() as conn:                   # one transaction
        upsert(conn, schema.source_state, [{"source": "shop", "key": "k", "value": 1, "updated_at": utcnow()}],
               key_cols=["source", "key"])
"""

from __future__ import annotations

from . import schema
from .engine import Store, create_store_engine, open_store, redact_url

__all__ = ["Store", "create_store_engine", "open_store", "redact_url", "schema"]
