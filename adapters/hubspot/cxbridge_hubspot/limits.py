"""Rate limits: pacing below HubSpot's published limits and reading its answers.

- Ten-secondly burst limit per portal by tier (100 / 190 / 250 per 10 s), shared by every stream and worker
  of the portal: a budget from ``context.budget_factory("hubspot:<portal>", limit, 10)``.
  Source: https://developers.hubspot.com/changelog/increasing-our-api-limits
- Search API: 5 requests per second per account, a second budget.
  Source: https://developers.hubspot.com/docs/api/crm/search ("Limitations")
- 429 bodies name the policy (``policyName``): ``TEN_SECONDLY_ROLLING`` -> wait the interval, ``SECONDLY`` ->
  about a second, ``DAILY`` -> stop cleanly (:class:`~cxbridge.errors.QuotaExhausted`) until the reset.
  Source: https://developers.hubspot.com/docs/api/usage-details
- ``X-HubSpot-RateLimit-Daily`` / ``-Daily-Remaining`` tell how much of the day is used: the source stops once
  ``daily_quota_share`` of it is gone, so other integrations of the portal keep working.
  Source: https://developers.hubspot.com/changelog/2018-11-06-rate-limit-information-headers-will-be-included-in-http-responses
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from cxbridge.adapters import RateBudget, StateStore
from cxbridge.errors import QuotaExhausted

from .config import HubSpotConfig, OAuthAuth

__all__ = ["RETRYABLE_STATUS", "STATE_BLOCKED_UNTIL", "RateGovernor", "budget_key", "policy_of"]

#: Source-state key: no request before this time (ISO 8601) after the daily quota ran out.
STATE_BLOCKED_UNTIL = "quota.blocked_until"
#: How long a source pauses after the daily quota ran out. HubSpot resets it at midnight in the account's
#: time zone, which the API does not tell; trying again hourly costs one call per stream per hour.
DAILY_RETRY = timedelta(hours=1)

#: 5xx, 423 Locked and 477 Migration in Progress are transient on HubSpot.
#: Source: https://developers.hubspot.com/docs/api-reference/error-handling
RETRYABLE_STATUS = frozenset({423, 477, 500, 502, 503, 504, 520, 521, 522, 523, 524})


def budget_key(config: HubSpotConfig) -> str:
    """The name of the portal's shared budget (portal id, else a hash of base URL + credential id)."""
    if config.portal_id:
        return f"hubspot:{config.portal_id}"
    ident = config.auth.client_id if isinstance(config.auth, OAuthAuth) else config.auth.token.get_secret_value()
    return "hubspot:" + hashlib.sha256(f"{config.base_url}|{ident}".encode()).hexdigest()[:16]


def policy_of(response: httpx.Response) -> str:
    """``policyName`` of a 429 body (``TEN_SECONDLY_ROLLING`` when absent)."""
    try:
        return str(response.json().get("policyName") or "TEN_SECONDLY_ROLLING")
    except ValueError:
        return "TEN_SECONDLY_ROLLING"


class RateGovernor:
    """Acquires budget before each request and learns from the rate-limit headers of each answer."""

    def __init__(
        self,
        config: HubSpotConfig,
        budget_factory: Callable[[str, int, float], RateBudget],
        *,
        now: Callable[[], datetime],
        source: str,
        state: StateStore | None = None,
    ) -> None:
        key = budget_key(config)
        self.state = state
        self._pause = 0.0
        self.general = budget_factory(key, config.ten_secondly_limit, 10.0)
        self.search = budget_factory(key + ":search", config.search_per_second, 1.0)
        self.daily_share = config.daily_quota_share
        self.now = now
        self.source = source
        self.daily_limit: int | None = None
        self.daily_remaining: int | None = None
        self.interval_seconds = 10.0

    def before(self, kind: str, sleep: Callable[[float], None] | None = None) -> None:
        """Block until the request may go; raise QuotaExhausted when the daily share is used up."""
        blocked = self.state.get(STATE_BLOCKED_UNTIL) if self.state is not None else None
        if blocked and datetime.fromisoformat(blocked) > self.now():
            raise QuotaExhausted(f"daily HubSpot quota used up; paused until {blocked}", source=self.source,
                                 resets_at=datetime.fromisoformat(blocked))
        if self.daily_limit and self.daily_remaining is not None:
            used = self.daily_limit - self.daily_remaining
            if used >= self.daily_share * self.daily_limit:
                raise self.quota_error(f"{used} of {self.daily_limit} daily HubSpot API calls used "
                                       f"(configured share {self.daily_share:.0%})")
        if self._pause and sleep is not None:
            sleep(self._pause)  # another integration emptied the portal's window
        self._pause = 0.0
        if kind == "search":
            self.search.acquire(1)
        self.general.acquire(1)

    def after(self, response: httpx.Response) -> None:
        headers = response.headers
        try:
            if "X-HubSpot-RateLimit-Daily" in headers:
                self.daily_limit = int(headers["X-HubSpot-RateLimit-Daily"])
            if "X-HubSpot-RateLimit-Daily-Remaining" in headers:
                self.daily_remaining = int(headers["X-HubSpot-RateLimit-Daily-Remaining"])
            if "X-HubSpot-RateLimit-Interval-Milliseconds" in headers:
                self.interval_seconds = int(headers["X-HubSpot-RateLimit-Interval-Milliseconds"]) / 1000
            if response.status_code < 400 and headers.get("X-HubSpot-RateLimit-Remaining") == "0":
                self._pause = 1.0
        except ValueError:
            pass  # malformed headers never break a sync

    def quota_error(self, message: str) -> QuotaExhausted:
        """The error that stops the stream; records the pause in the source state (see DAILY_RETRY)."""
        until = self.now().astimezone(UTC) + DAILY_RETRY
        if self.state is not None:
            self.state.set(STATE_BLOCKED_UNTIL, until.isoformat())
        return QuotaExhausted(message + f"; the stream stops and tries again after {until.isoformat()}",
                              source=self.source, resets_at=until)

    def wait_for(self, policy: str, response: httpx.Response) -> float:
        """Seconds to wait after a 429 of ``policy`` (DAILY is handled by the caller)."""
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        if policy == "SECONDLY":
            return 1.0
        return self.interval_seconds
