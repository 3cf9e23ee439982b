"""HubSpot CRM adapter for cxbridge.

Reads contacts, companies, deals, tickets and engagements (notes, calls, emails, meetings, tasks) through the
CRM v3 objects / search APIs, writes properties back through the batch APIs, and receives webhooks.
See ``docs/hubspot.md`` for configuration. Names are imported lazily so ``cxbridge --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["HubSpotAdapter", "HubSpotConfig"]

if TYPE_CHECKING:
    from .adapter import HubSpotAdapter
    from .config import HubSpotConfig


def __getattr__(name: str) -> Any:
    if name == "HubSpotAdapter":
        from .adapter import HubSpotAdapter

        return HubSpotAdapter
    if name == "HubSpotConfig":
        from .config import HubSpotConfig

        return HubSpotConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
