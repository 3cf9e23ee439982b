"""The framework's configuration models (the shape of ``cxbridge.toml``).

Every model forbids unknown keys, so a typo fails at start naming the key. A source's ``connection`` table and
each ``[plugins.<namespace>]`` table are validated in a second step by the models the adapter and plugin
registered (see :func:`cxbridge.config.load_config`); until then they hold the raw tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

__all__ = [
    "Config",
    "DaemonConfig",
    "IdentityConfig",
    "SourceConfig",
    "StoreConfig",
    "StreamConfig",
    "SyncConfig",
    "WritebackRule",
]

_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StoreConfig(_Strict):
    """``[store]``: where cxbridge keeps its data."""

    url: str = Field(
        default="sqlite:///cxbridge.db",
        description="SQLAlchemy URL. Relative SQLite paths are relative to the workspace (the config file's "
        "folder). PostgreSQL for production: postgresql+psycopg://user@host/db.",
        repr=False,
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging).")


class IdentityConfig(_Strict):
    """``[identity]``: how source records are matched into golden customers."""

    match_on: list[Literal["email", "phone"]] = Field(
        default=["email", "phone"], description="Deterministic match keys."
    )
    cross_ids: list[str] = Field(
        default_factory=list, description="external_ids.<name> values shared across systems (ERP numbers)."
    )
    survivorship: Literal["source_priority", "most_recent", "most_complete"] = Field(
        default="source_priority", description="Which source's value wins when sources disagree."
    )
    source_priority: list[str] = Field(
        default_factory=list, description="Source names, most trusted first (for survivorship=source_priority)."
    )
    default_region: str | None = Field(
        default=None, description="ISO 3166 region for phone numbers without a country code, e.g. 'DE'."
    )

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import phonenumbers  # lazy: keeps `cxbridge --help` fast

        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use an ISO 3166 alpha-2 code such as 'DE' or 'US'")
        return region


class SyncConfig(_Strict):
    """``[sync]``: defaults for every source's incremental reads."""

    lookback_seconds: int = Field(default=300, ge=0, description="Re-read this far behind the saved cursor.")
    safety_margin_seconds: int = Field(
        default=5, ge=0, description="A cursor never moves past the run's start minus this margin."
    )


class StreamConfig(_Strict):
    """``[sources.<name>.streams.<stream>]``: per-stream overrides."""

    enabled: bool = True
    mapping: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Canonical field -> source field(s); extends the adapter's default mapping.",
    )


class SourceConfig(_Strict):
    """``[sources.<name>]``: one connected CRM."""

    adapter: str = Field(description="Name of an installed adapter (see `cxbridge plugins list`).")
    enabled: bool = True
    interval_seconds: int = Field(default=900, gt=0, description="How often the daemon syncs this source.")
    lookback_seconds: int | None = Field(default=None, ge=0, description="Overrides [sync] lookback_seconds.")
    daily_quota_share: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Stop syncing once this share of the vendor's daily API quota is used.",
    )
    priority: int = Field(
        default=0,
        description="Survivorship rank for sources not listed in identity.source_priority (higher wins).",
    )
    streams: dict[str, StreamConfig] = Field(default_factory=dict)
    connection: Any = Field(
        default_factory=dict, description="The adapter's own settings, validated by the adapter's config model."
    )


class WritebackRule(_Strict):
    """``[[writeback]]``: write a trait into a CRM field."""

    trait: str = Field(description="Namespaced trait, e.g. 'segments.tier'.")
    source: str = Field(description="The source (CRM) to write to.")
    object_type: str = Field(description="The CRM object type, e.g. 'contacts' or 'Contact'.")
    field: str = Field(description="The CRM field (API name) to write.")
    overwrite_human_edits: bool = Field(
        default=False, description="Overwrite a value someone changed in the CRM after our last write."
    )
    consent: Literal["email", "phone", "sms", "processing", "writeback"] = Field(
        default="processing", description="Consent channel the write needs; opted-out customers are skipped."
    )
    transform: Literal["upper", "lower", "title", "string"] | dict[str, Any] | None = Field(
        default=None,
        description="'upper', 'lower', 'title', 'string', or a value map {trait value: CRM value, '*': default}.",
    )

    @field_validator("trait")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        if "." not in value.strip(".") or value != value.strip():
            raise ValueError(f"trait names are namespaced '<plugin>.<name>', got {value!r}")
        return value

    def apply(self, value: Any) -> Any:
        """The CRM value for a trait value, after :attr:`transform`."""
        transform = self.transform
        if transform is None or value is None:
            return value
        if isinstance(transform, dict):
            key = value if isinstance(value, str) else str(value)
            if key in transform:
                return transform[key]
            return transform.get("*", value)
        text = str(value)
        return {"upper": text.upper(), "lower": text.lower(), "title": text.title(), "string": text}[transform]


class DaemonConfig(_Strict):
    """``[daemon]``: the long-running process (scheduler, web app, workers)."""

    host: str = Field(default="127.0.0.1", description="Address the web app listens on.")
    port: int = Field(default=8765, ge=0, le=65535)
    web: bool = Field(default=True, description="Serve webhooks, survey pages, health, metrics and the dashboard.")
    public_url: str | None = Field(default=None, description="External base URL (links in survey e-mails).")
    auth_token: SecretStr | None = Field(
        default=None, description="Bearer token for the dashboard and admin endpoints ({ env = ... } recommended)."
    )
    job_engine: Literal["embedded", "procrastinate"] = Field(
        default="embedded",
        description="'embedded' (one machine) or 'procrastinate' (workers on many hosts, PostgreSQL).",
    )
    concurrency: int = Field(default=2, ge=1, description="Streams synced in parallel by one process.")
    shutdown_timeout_seconds: float = Field(
        default=30, gt=0, description="How long SIGTERM waits for the current page."
    )


class Config(_Strict):
    """A validated ``cxbridge.toml``.

    After :func:`~cxbridge.config.load_config`, ``sources[name].connection`` is the adapter's config model and
    ``plugins[namespace]`` the plugin's settings model (one per registered namespace, defaults if absent).
    """

    store: StoreConfig = Field(default_factory=lambda: StoreConfig())
    identity: IdentityConfig = Field(default_factory=lambda: IdentityConfig())
    sync: SyncConfig = Field(default_factory=lambda: SyncConfig())
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    plugins: dict[str, Any] = Field(default_factory=dict)
    writeback: list[WritebackRule] = Field(default_factory=list)
    daemon: DaemonConfig = Field(default_factory=lambda: DaemonConfig())

    _path: Path | None = PrivateAttr(None)
    _workspace: Path = PrivateAttr(default_factory=Path.cwd)
    _source_secrets: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in value:
            if not _SOURCE_NAME.match(name):
                raise ValueError(
                    f"source name {name!r} must be lowercase letters, digits, '-' or '_' (it appears in URLs)"
                )
        return value

    @property
    def path(self) -> Path | None:
        """The file this config was loaded from."""
        return self._path

    @property
    def workspace(self) -> Path:
        """The workspace folder (the config file's folder): relative paths are resolved against it."""
        return self._workspace

    def enabled_sources(self) -> dict[str, SourceConfig]:
        """The sources with ``enabled = true``, in config order."""
        return {name: src for name, src in self.sources.items() if src.enabled}

    def source_order(self) -> list[str]:
        """Source names from most to least trusted: identity.source_priority, then by ``priority``, then name."""
        listed = list(self.identity.source_priority)
        rest = sorted((n for n in self.sources if n not in listed), key=lambda n: (-self.sources[n].priority, n))
        return listed + rest

    def lookback_seconds(self, source: str) -> int:
        """The look-back window of ``source`` (its own or the global one)."""
        own = self.sources[source].lookback_seconds
        return self.sync.lookback_seconds if own is None else own

    def source_secrets(self, source: str) -> list[str]:
        """Secret values configured for ``source`` (to redact from its errors and logs)."""
        return list(self._source_secrets.get(source, ()))

    def writeback_for(self, source: str) -> list[WritebackRule]:
        """The write-back rules targeting ``source``."""
        return [rule for rule in self.writeback if rule.source == source]

    def required_fields(self, source: str) -> dict[str, list[str]]:
        """CRM object type -> fields the write-back rules for ``source`` write (checked by ``doctor``)."""
        out: dict[str, list[str]] = {}
        for rule in self.writeback_for(source):
            fields = out.setdefault(rule.object_type, [])
            if rule.field not in fields:
                fields.append(rule.field)
        return out
