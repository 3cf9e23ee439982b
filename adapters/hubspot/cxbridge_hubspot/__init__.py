"""HubSpot CRM adapter for cxbridge.

Reads contacts, companies, deals, tickets and engagements (notes, calls, emails, meetings, tasks) through the
CRM v3 objects / search APIs, writes properties back through the batch APIs, and receives webhooks.
See ``docs/hubspot.md`` for configuration.
"""

from __future__ import annotations

from .adapter import HubSpotAdapter
from .config import HubSpotConfig

__all__ = ["HubSpotAdapter", "HubSpotConfig"]
