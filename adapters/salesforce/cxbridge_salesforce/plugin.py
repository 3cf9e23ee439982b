"""Registers the Salesforce adapter with cxbridge (entry point group ``cxbridge``, name ``salesforce``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cxbridge import hookimpl

if TYPE_CHECKING:
    from cxbridge.adapters import AdapterContext, AdapterInfo

__all__ = ["register_adapters"]


def _factory(config: Any, context: AdapterContext) -> Any:
    from .adapter import SalesforceAdapter  # lazy: simple-salesforce/requests load only when used

    return SalesforceAdapter(config, context)


@hookimpl
def register_adapters() -> Iterable[AdapterInfo]:
    """The ``salesforce`` adapter."""
    # Imported here, not at module level: cxbridge imports every plugin module at start.
    from cxbridge.adapters import AdapterInfo

    from .config import SalesforceConfig

    return [
        AdapterInfo(
            name="salesforce",
            config_model=SalesforceConfig,
            factory=_factory,
            description="Salesforce REST (queryAll, incremental on SystemModstamp), Bulk API 2.0 initial loads, "
            "sObject Collections write-back",
        )
    ]
