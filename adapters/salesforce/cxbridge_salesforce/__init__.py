"""cxbridge adapter for Salesforce (distribution ``cxbridge-salesforce``).

See docs/salesforce.md for configuration (each auth flow), permissions and write-back fields.
"""

from __future__ import annotations

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
    if name == "SalesforceAdapter":
        from .adapter import SalesforceAdapter

        return SalesforceAdapter
    raise AttributeError(name)
