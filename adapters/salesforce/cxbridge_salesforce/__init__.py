"""cxbridge adapter for Salesforce (distribution ``cxbridge-salesforce``).

See docs/salesforce.md for configuration (each auth flow), permissions and write-back fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .adapter import SalesforceAdapter
    from .config import (
        ClientCredentialsAuth,
        JwtBearerAuth,
        PasswordAuth,
        RefreshTokenAuth,
        SalesforceConfig,
    )

__all__ = [
    "ClientCredentialsAuth",
    "JwtBearerAuth",
    "PasswordAuth",
    "RefreshTokenAuth",
    "SalesforceAdapter",
    "SalesforceConfig",
]


def __getattr__(name: str) -> object:
    # Lazy: the plugin module is imported whenever cxbridge starts (`cxbridge --help` included), and pydantic
    # models and simple-salesforce are only needed once a Salesforce source is configured.
    if name == "SalesforceAdapter":
        from .adapter import SalesforceAdapter

        return SalesforceAdapter
    if name in __all__:
        from . import config

        return getattr(config, name)
    raise AttributeError(name)
