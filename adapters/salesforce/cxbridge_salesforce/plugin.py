"""Registers the Salesforce adapter with cxbridge (entry point group ``cxbridge``, name ``salesforce``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cxbridge import hookimpl
from cxbridge.adapters import AdapterContext, AdapterInfo

from .config import SalesforceConfig

__all__ = ["register_adapters"]


def _factory(config: Any, context: AdapterContext) -> Any:
    from .adapter import SalesforceAdapter  # lazy: simple-salesforce/requests load only when used

    return SalesforceAdapter(config, context)


@hookimpl
def register_adapters() -> Iterable[AdapterInfo]:
    """The ``salesforce`` adapter."""
    return [
        AdapterInfo(
            name="salesforce",
            config_model=SalesforceConfig,
            factory=_factory,
            description="Salesforce REST (queryAll, incremental on SystemModstamp), Bulk API 2.0 initial loads, "
            "sObject Collections write-back",
        )
    ]
