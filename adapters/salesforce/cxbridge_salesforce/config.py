"""Configuration of a Salesforce source (the ``[sources.<name>.connection]`` table).

One pydantic class per OAuth / login flow, selected by ``auth.flow`` (a discriminated union), every model with
``extra="forbid"`` so a misspelled key is an error naming it::

    [sources.sfdc.connection]
    login_url = "https://acme.my.salesforce.com"      # My Domain; sandbox: https://test.salesforce.com
    [sources.sfdc.connection.auth]
    flow = "jwt_bearer"
    client_id = "3MVG9..."
    username = "integration@acme.com"
    private_key_file = "/etc/cxbridge/sf.key"

TLS trust comes from the standard environment: ``requests`` honours ``REQUESTS_CA_BUNDLE`` (and
``CURL_CA_BUNDLE``); ``ca_bundle`` overrides it per source.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "ClientCredentialsAuth",
    "JwtBearerAuth",
    "PasswordAuth",
    "RefreshTokenAuth",
    "SalesforceAuth",
    "SalesforceConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefreshTokenAuth(_Strict):
    """OAuth 2.0 refresh token flow (web-server flow done once by an admin; the refresh token is stored)."""

    flow: Literal["refresh_token"] = "refresh_token"
    client_id: str = Field(description="Consumer key of the connected app.")
    client_secret: SecretStr | None = Field(None, description="Consumer secret (if the app requires it).")
    refresh_token: SecretStr = Field(description="Refresh token issued to the integration user.")


class ClientCredentialsAuth(_Strict):
    """OAuth 2.0 client credentials flow; needs a My Domain login URL and a 'Run As' user on the app."""

    flow: Literal["client_credentials"] = "client_credentials"
    client_id: str = Field(description="Consumer key of the connected app.")
    client_secret: SecretStr = Field(description="Consumer secret of the connected app.")


class JwtBearerAuth(_Strict):
    """OAuth 2.0 JWT bearer flow: a certificate uploaded to the connected app, the user pre-authorized."""

    flow: Literal["jwt_bearer"] = "jwt_bearer"
    client_id: str = Field(description="Consumer key of the connected app (the JWT 'iss').")
    username: str = Field(description="Integration user (the JWT 'sub').")
    private_key: SecretStr | None = Field(None, description="PEM private key (RS256).")
    private_key_file: str | None = Field(None, description="Path to the PEM private key (RS256).")
    audience: str | None = Field(
        None,
        description="JWT 'aud'; default https://login.salesforce.com, or https://test.salesforce.com when the "
        "login URL is a sandbox.",
    )

    @model_validator(mode="after")
    def _one_key(self) -> JwtBearerAuth:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of private_key or private_key_file")
        return self


class PasswordAuth(_Strict):
    """Username + password + security token through the SOAP ``login()`` call (legacy; prefer OAuth)."""

    flow: Literal["password"] = "password"
    username: str
    password: SecretStr
    security_token: SecretStr = Field(
        SecretStr(""), description="Security token (empty when the caller's IP range is trusted)."
    )


SalesforceAuth = Annotated[
    RefreshTokenAuth | ClientCredentialsAuth | JwtBearerAuth | PasswordAuth, Field(discriminator="flow")
]


class SalesforceConfig(_Strict):
    """Connection and behaviour of one Salesforce org."""

    auth: SalesforceAuth
    login_url: str = Field(
        "https://login.salesforce.com",
        description="Where to log in: https://login.salesforce.com, https://test.salesforce.com (sandbox) or "
        "your My Domain (https://acme.my.salesforce.com). Any https URL works (test servers).",
    )
    instance_url: str | None = Field(
        None, description="Override the instance URL the login returns (proxies, test servers)."
    )
    api_version: str = Field("59.0", description="REST API version without the 'v'.")
    ca_bundle: str | None = Field(None, description="CA bundle path; default: REQUESTS_CA_BUNDLE / certifi.")
    timeout_seconds: float = Field(60.0, gt=0)
    objects: list[str] = Field(
        default_factory=lambda: ["Account", "Contact", "Lead", "Opportunity", "Task", "Event", "Case"],
        description="Objects to sync (streams are named after them in lower case plural: contacts, leads...).",
    )
    extra_fields: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra fields to read per object, e.g. {Contact = ['Loyalty_Tier__c']}. Custom (__c) "
        "fields found by describe are read anyway when include_custom_fields is true.",
    )
    include_custom_fields: bool = Field(True, description="Read every custom (__c) field describe reports.")
    bulk_threshold: int = Field(
        50_000,
        ge=0,
        description="Initial loads counting more rows than this (SELECT COUNT()) use a Bulk API 2.0 query job.",
    )
    bulk_max_records: int | None = Field(
        None, gt=0, description="maxRecords per Bulk 2.0 results request (default: let Salesforce decide)."
    )
    bulk_poll_seconds: float = Field(2.0, gt=0, description="First poll interval of a Bulk job (backs off).")
    bulk_poll_max_seconds: float = Field(30.0, gt=0)
    bulk_timeout_seconds: float = Field(6 * 3600.0, gt=0)
    page_size: int = Field(
        2000, ge=1, le=50_000, description="Records per yielded page of a Bulk load (REST pages are Salesforce's "
        "own batches of up to 2,000)."
    )
    quota_share: float = Field(
        0.8, gt=0, le=1, description="Stop cleanly once this share of the daily API allowance is used."
    )
    max_attempts: int = Field(5, ge=1, description="Attempts for 5xx / connection errors (with backoff).")
    max_wait_seconds: float = Field(60.0, gt=0, description="Cap of one backoff wait.")
    deleted_window_days: int = Field(
        15, ge=1, le=30, description="How far back the deleted/ resource reaches (15 days by Salesforce docs)."
    )
    task_key_field: str | None = Field(
        None,
        description="External-id field on Task (e.g. cxbridge_key__c) used to create closed-loop tasks "
        "idempotently (upsert by the action key). Without it a create retried after a lost answer may "
        "create a duplicate task.",
    )

    @field_validator("login_url", "instance_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith("https://"):
            raise ValueError(f"must be an https:// URL, got {value!r}")
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.lstrip("v")
        try:
            float(value)
        except ValueError:
            raise ValueError(f"api_version must look like '59.0', got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _client_credentials_need_my_domain(self) -> SalesforceConfig:
        if isinstance(self.auth, ClientCredentialsAuth) and self.login_url in (
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        ):
            raise ValueError(
                "auth.flow = 'client_credentials' needs login_url set to your My Domain "
                "(https://<domain>.my.salesforce.com); login/test.salesforce.com reject this grant"
            )
        return self

    def secret_values(self) -> list[str]:
        """Every secret in this config (for log redaction)."""
        out = []
        for name in ("client_secret", "refresh_token", "private_key", "password", "security_token"):
            value = getattr(self.auth, name, None)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out
