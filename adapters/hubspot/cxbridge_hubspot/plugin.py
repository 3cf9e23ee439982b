"""cxbridge plugin entry point of the HubSpot adapter (entry point group ``cxbridge``, name ``hubspot``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cxbridge import hookimpl

if TYPE_CHECKING:
    from cxbridge.adapters import AdapterContext, AdapterInfo
    from cxbridge.hooktypes import RouteInfo

    from .adapter import HubSpotAdapter
    from .config import HubSpotConfig

__all__ = ["make_adapter", "register_adapters", "register_routes"]


def make_adapter(config: HubSpotConfig, context: AdapterContext) -> HubSpotAdapter:
    """The adapter factory (imports the HTTP stack only when a HubSpot source is built)."""
    from .adapter import HubSpotAdapter

    return HubSpotAdapter(config, context)


@hookimpl
def register_adapters() -> Iterable[AdapterInfo]:
    # Imported here: the plugin module is imported at every start, the config model only when needed.
    from cxbridge.adapters import AdapterInfo

    from .config import HubSpotConfig

    return [
        AdapterInfo(
            name="hubspot",
            config_model=HubSpotConfig,
            factory=make_adapter,
            description="HubSpot CRM (contacts, companies, deals, tickets, engagements; write-back; webhooks)",
        )
    ]


@hookimpl
def register_routes() -> Iterable[RouteInfo]:
    from cxbridge.hooktypes import RouteInfo

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
