"""Registers the ``local-sql`` and ``local-files`` adapters with cxbridge (entry point ``cxbridge.local``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxbridge import hookimpl

if TYPE_CHECKING:
    from cxbridge.adapters import Adapter, AdapterContext, AdapterInfo

__all__ = ["register_adapters"]


def _sql(config: Any, context: AdapterContext) -> Adapter:
    from .sql import LocalSqlAdapter  # SQLAlchemy engines are built lazily: keeps `cxbridge --help` fast

    return LocalSqlAdapter(config, context)


def _files(config: Any, context: AdapterContext) -> Adapter:
    from .files import LocalFilesAdapter

    return LocalFilesAdapter(config, context)


@hookimpl
def register_adapters() -> list[AdapterInfo]:
    # Imported here: the plugin module is imported at every start, the config models only when needed.
    from cxbridge.adapters import AdapterInfo

    from .config import LocalFilesConfig, LocalSqlConfig

    return [
        AdapterInfo(
            name="local-sql",
            config_model=LocalSqlConfig,
            factory=_sql,
            description="On-prem CRM database (SQLite, PostgreSQL, MySQL/MariaDB) mapped table by table",
        ),
        AdapterInfo(
            name="local-files",
            config_model=LocalFilesConfig,
            factory=_files,
            description="Folder of CSV / JSONL exports, each file processed once",
        ),
    ]
