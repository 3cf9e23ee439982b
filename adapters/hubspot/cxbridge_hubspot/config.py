"""Connection settings of a HubSpot source (``[sources.<name>.connection]`` in ``cxbridge.toml``).

Two auth flows, one model each (selected by ``auth.type``):

- ``private_app``: a private-app access token (static; rotate it in HubSpot and in the environment).
- ``oauth``: an OAuth 2.0 app install (client id/secret + refresh token). Access tokens are refreshed ahead
  of ``expires_in``; HubSpot may hand out a new refresh token, which is persisted in the source's state.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["TIER_LIMITS", "HubSpotConfig", "OAuthAuth", "PrivateAppAuth"]

#: Requests per 10 seconds by subscription tier (private apps; burst limit shared by the portal).
#: Source: https://developers.hubspot.com/changelog/increasing-our-api-limits (Free/Starter 100,
#: Professional and Enterprise 190, API limit increase capacity pack 250 per 10 s).
TIER_LIMITS: dict[str, int] = {
    "free": 100,
    "starter": 100,
    "professional": 190,
    "enterprise": 190,
    "api_add_on": 250,
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrivateAppAuth(_Base):
    """Private-app access token."""

    type: Literal["private_app"] = "private_app"
    token: SecretStr = Field(description="Private-app access token (pat-...). Use { env = \"VAR\" }.")


class OAuthAuth(_Base):
    """OAuth 2.0 app install, refreshed with ``POST /oauth/v1/token``."""

    type: Literal["oauth"] = "oauth"
    client_id: str = Field(description="OAuth app client id.")
    client_secret: SecretStr = Field(description="OAuth app client secret.")
    refresh_token: SecretStr = Field(
        description="Refresh token from the install; a rotated one is kept in the source state afterwards."
    )
    refresh_margin_seconds: int = Field(
        300, ge=0, description="Refresh this many seconds before the access token expires."
    )


class HubSpotConfig(_Base):
    """Connection settings of a HubSpot source."""

    auth: Annotated[PrivateAppAuth | OAuthAuth, Field(discriminator="type")]
    base_url: str = Field(
        "https://api.hubapi.com",
        description="API base URL (proxies, regional data centres, test servers). TLS trust comes from the "
        "standard environment (SSL_CERT_FILE).",
    )
    portal_id: str | None = Field(
        None, description="Portal (hub) id; names the shared rate budget. Default: derived from the credentials."
    )
    tier: Literal["free", "starter", "professional", "enterprise", "api_add_on"] = Field(
        "free", description="Subscription tier; sets the ten-secondly request limit (100 / 190 / 250)."
    )
    requests_per_10s: int | None = Field(
        None, ge=1, description="Override of the ten-secondly limit (default: from the tier)."
    )
    rate_share: float = Field(
        1.0, gt=0, le=1, description="Share of the ten-secondly limit this source may use (headroom for others)."
    )
    search_per_second: int = Field(
        5, ge=1, le=5, description="Search API requests per second (HubSpot allows 5 per account)."
    )
    daily_quota_share: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Stop cleanly once this share of the daily quota is used (read from response headers).",
    )
    streams: list[str] = Field(
        default_factory=lambda: ["contacts", "companies", "deals", "tickets", "notes", "calls", "emails",
                                 "meetings", "tasks"],
        description="Streams to offer, in sync order.",
    )
    extra_properties: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Additional HubSpot-defined properties to read per stream (custom properties are "
        "discovered through the properties API and read automatically).",
    )
    discover_custom_properties: bool = Field(
        True, description="Read every custom (non HubSpot-defined) property found through the properties API."
    )
    archived_sweep_seconds: int = Field(
        3600, ge=0, description="How often an incremental read also lists archived records (tombstones)."
    )
    webhook_client_secret: SecretStr | None = Field(
        None, description="App client secret that signs webhooks (X-HubSpot-Signature-v3). Default: the "
        "OAuth client secret."
    )
    webhook_url: str | None = Field(
        None, description="The exact public URL HubSpot posts webhooks to, when a proxy changes what the server "
        "sees (the v3 signature covers the URL)."
    )
    list_page_size: int = Field(100, ge=1, le=100, description="Records per list call (HubSpot maximum 100).")
    search_page_size: int = Field(200, ge=1, le=200, description="Records per search call (HubSpot maximum 200).")
    timeout_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(8, ge=1, description="Attempts per request on 429 / 5xx / connection errors.")

    @property
    def ten_secondly_limit(self) -> int:
        """Requests per 10 s this source paces itself to."""
        base = self.requests_per_10s or TIER_LIMITS[self.tier]
        return max(1, int(base * self.rate_share))

    def signing_secret(self) -> str | None:
        """The secret that signs webhook requests, if configured."""
        if self.webhook_client_secret is not None:
            return self.webhook_client_secret.get_secret_value()
        if isinstance(self.auth, OAuthAuth):
            return self.auth.client_secret.get_secret_value()
        return None
