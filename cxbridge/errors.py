"""Errors raised by cxbridge.

Every error a user can cause or meet carries enough context to act on it, and prints as one clear line
(``str(error)``). The CLI shows that line; ``--debug`` adds the traceback.

Hierarchy::

    CxbridgeError                     base of everything cxbridge raises on purpose
    ├── ConfigError                   bad or missing configuration; names the key (``key``) -- user must fix
    ├── PluginError                   a plugin could not be loaded or registered badly (``distribution``)
    ├── StoreError                    the store cannot be opened or migrated (``url`` redacted)
    ├── AdapterError                  a source failed (``source``, ``kind``: config / transient / system)
    │   ├── AuthError                 credentials rejected or expired beyond refresh        (kind=config)
    │   ├── RateLimited               the vendor answered 429 / quota; ``retry_after``      (kind=transient)
    │   ├── QuotaExhausted            daily allowance (or our configured share) is used up  (kind=transient)
    │   └── RemoteError               any other vendor answer (``status``, ``url``, ``body``)
    ├── RecordError                   one record cannot be mapped / validated; it is quarantined, the run goes on
    └── NotFound                      a customer, source, run... that the user named does not exist

``kind`` follows Airbyte's failure types so the CLI can say who must act: ``config`` (the user), ``transient``
(try later; cxbridge retries by itself), ``system`` (a bug or an outage).
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AdapterError",
    "AuthError",
    "ConfigError",
    "CxbridgeError",
    "FailureKind",
    "NotFound",
    "PluginError",
    "QuotaExhausted",
    "RateLimited",
    "RecordError",
    "RemoteError",
    "StoreError",
]

FailureKind = Literal["config", "transient", "system"]


class CxbridgeError(Exception):
    """Base class of every error cxbridge raises on purpose."""

    kind: FailureKind = "system"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CxbridgeError):
    """Bad configuration. ``key`` is the dotted path of the offending key (``sources.shop.url``)."""

    kind: FailureKind = "config"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"config error at {key}: {message}" if key else f"config error: {message}")
        self.key = key


class PluginError(CxbridgeError):
    """A plugin failed to load or registered something invalid."""

    def __init__(self, message: str, *, distribution: str | None = None) -> None:
        super().__init__(message)
        self.distribution = distribution


class StoreError(CxbridgeError):
    """The store cannot be opened, migrated or written."""


class AdapterError(CxbridgeError):
    """A source (CRM) failed. ``source`` is the configured source name."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        kind: FailureKind | None = None,
        status: int | None = None,
        url: str | None = None,
    ) -> None:
        prefix = f"source {source!r}: " if source else ""
        super().__init__(prefix + message)
        self.source = source
        self.status = status
        self.url = url
        if kind is not None:
            self.kind = kind


class AuthError(AdapterError):
    """Credentials were rejected, or expired and could not be refreshed."""

    kind: FailureKind = "config"


class RateLimited(AdapterError):
    """The vendor asked us to slow down. ``retry_after`` is in seconds when known."""

    kind: FailureKind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class QuotaExhausted(AdapterError):
    """A daily (or configured share of a daily) allowance is used up; the stream stops cleanly."""

    kind: FailureKind = "transient"

    def __init__(self, message: str, *, resets_at: object | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.resets_at = resets_at


class RemoteError(AdapterError):
    """Any other error answer of a vendor API. ``body`` is the (redacted, truncated) response body."""

    def __init__(self, message: str, *, body: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.body = body


class RecordError(CxbridgeError):
    """One record cannot be used. The sync engine quarantines it with this message and goes on."""

    kind: FailureKind = "config"

    def __init__(self, message: str, *, source_id: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.source_id = source_id
        self.field = field


class NotFound(CxbridgeError):
    """Something the user named (customer, source, run, outbox item) does not exist."""

    kind: FailureKind = "config"
