"""cxbridge adapters for local / on-prem CRMs: ``local-sql`` (any SQLAlchemy database) and ``local-files``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CreateTarget",
    "FileObject",
    "LocalFilesConfig",
    "LocalSqlConfig",
    "RelatedTable",
    "SqlObject",
    "__version__",
]

if TYPE_CHECKING:
    from .config import CreateTarget, FileObject, LocalFilesConfig, LocalSqlConfig, RelatedTable, SqlObject


def __getattr__(name: str) -> Any:
    # Lazy: cxbridge imports every plugin module at start (`cxbridge --help` included); pydantic models load
    # only when a config names a local adapter.
    if name in __all__:
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
