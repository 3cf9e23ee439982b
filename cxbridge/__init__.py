"""cxbridge: customer-experience features for the CRMs you already run.

The public API is re-exported here lazily, so ``import cxbridge`` (and ``cxbridge --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["Bridge", "__version__", "hookimpl"]

if TYPE_CHECKING:
    from .bridge import Bridge


def __getattr__(name: str) -> Any:
    if name == "Bridge":
        from .bridge import Bridge

        return Bridge
    raise AttributeError(f"module 'cxbridge' has no attribute {name!r}")
