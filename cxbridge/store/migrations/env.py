"""Alembic environment for cxbridge's store (see :mod:`cxbridge.store.migrate`)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import String

from cxbridge.store.schema import UTCDateTime, metadata

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
    # Render our TypeDecorator by its importable name so generated migrations run from an installed package.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from cxbridge.store.schema import UTCDateTime")
        return "UTCDateTime()"
    variants = getattr(obj, "_variant_mapping", None) if type_ == "type" and isinstance(obj, String) else None
    if variants and "mysql" in variants:
        autogen_context.imports.add("from cxbridge.store.schema import key_string")
        mysql_length = variants["mysql"].length
        if mysql_length == obj.length:
            return f"key_string({obj.length})"
        return f"key_string({obj.length}, {mysql_length})"
    return False


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Used when a developer runs alembic against a URL (e.g. to autogenerate a new revision).
    from cxbridge.store.engine import create_store_engine

    engine = create_store_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("cxbridge migrations run online only (cxbridge db upgrade)")
run_migrations_online()
