"""cxbridge adapters for local / on-prem CRMs: ``local-sql`` (any SQLAlchemy database) and ``local-files``."""

from __future__ import annotations

from .config import CreateTarget, FileObject, LocalFilesConfig, LocalSqlConfig, RelatedTable, SqlObject

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
