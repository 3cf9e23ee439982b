"""cxbridge plugin entry point of the HubSpot adapter (entry point group ``cxbridge``, name ``hubspot``)."""

from __future__ import annotations

from collections.abc import Iterable

from cxbridge import hookimpl
from cxbridge.adapters import AdapterInfo
from cxbridge.hooktypes import RouteInfo

from .adapter import HubSpotAdapter
from .config import HubSpotConfig

__all__ = ["register_adapters", "register_routes"]


@hookimpl
def register_adapters() -> Iterable[AdapterInfo]:
    return [
        AdapterInfo(
            name="hubspot",
            config_model=HubSpotConfig,
            factory=HubSpotAdapter,
            description="HubSpot CRM (contacts, companies, deals, tickets, engagements; write-back; webhooks)",
        )
    ]


@hookimpl
def register_routes() -> Iterable[RouteInfo]:
    from .webhooks import webhook_endpoint

    return [
        RouteInfo(
            path="/webhooks/hubspot/{source}",
            endpoint=webhook_endpoint,
            methods=("POST",),
            name="hubspot-webhook",
            auth=False,
        )
    ]
