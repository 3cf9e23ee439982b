"""The HubSpot API client: one place for auth, pacing, retries and error classification.

HTTP goes through the framework's client factory (``context.http``), so TLS trust, logging and redaction are
the framework's; this layer adds what is HubSpot-specific: the portal budget, the meaning of each 429
policy, 401 ``EXPIRED_AUTHENTICATION`` and the transient statuses 5xx / 423 / 477.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import httpx

from cxbridge.adapters import AdapterContext
from cxbridge.errors import AuthError, RateLimited, RemoteError

from .auth import HubSpotAuth, TokenSource, make_token_source
from .config import HubSpotConfig
from .limits import RETRYABLE_STATUS, RateGovernor, policy_of

__all__ = ["HubSpotClient"]

log = logging.getLogger(__name__)
_SAFE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # request never left


class HubSpotClient:
    """Sends requests to one HubSpot portal.

    :param config: the source's connection settings.
    :param context: the adapter context (HTTP factory, state, budgets, sleep, clock).
    """

    def __init__(self, config: HubSpotConfig, context: AdapterContext) -> None:
        self.config, self.context = config, context
        self.source = context.source
        self.api_calls = 0
        self.retries = 0
        self.rate_limited = 0
        self.limits = RateGovernor(config, context.budget_factory, now=context.now, source=context.source,
                                   state=context.state)
        self._raw = self._build(auth=None)
        self.tokens: TokenSource = make_token_source(
            config, post_form=self._post_form, state=context.state, now=context.now, source=context.source
        )
        self.http = self._build(auth=HubSpotAuth(self.tokens))

    def _build(self, auth: httpx.Auth | None) -> httpx.Client:
        kwargs: dict[str, Any] = {"base_url": self.config.base_url, "timeout": self.config.timeout_seconds}
        if auth is not None:
            kwargs["auth"] = auth
        from cxbridge.http import RetryPolicy

        # The framework client, without its retries: HubSpot's 429 policies need their own handling (DAILY
        # must not be retried), which this client does.
        kwargs["retry"] = RetryPolicy(max_attempts=1)
        return self.context.http(**kwargs)

    def _post_form(self, path: str, data: dict[str, str]) -> httpx.Response:
        """Token requests: transient failures (connection, 429, 5xx) are retried like API calls."""
        response: httpx.Response | None = None
        for attempt in range(1, self.config.max_attempts + 1):
            self.limits.before("auth")
            self.api_calls += 1
            try:
                response = self._raw.post(path, data=data)
            except httpx.TransportError as exc:
                if attempt == self.config.max_attempts:
                    raise AuthError(f"OAuth token endpoint unreachable: {type(exc).__name__}",
                                    source=self.source, url=path) from exc
                self._backoff(attempt, type(exc).__name__, path)
                continue
            if response.status_code != 429 and response.status_code not in RETRYABLE_STATUS:
                return response
            self._backoff(attempt, f"HTTP {response.status_code}", path)
        assert response is not None
        return response

    def close(self) -> None:
        self.http.close()
        self._raw.close()

    # ------------------------------------------------------------------------------------------- requests
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        kind: str = "default",
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one request with pacing and retries; return any answer that is not transient.

        The caller handles 2xx, 207, 400, 404 and 409. Raises :class:`QuotaExhausted` on the daily limit,
        :class:`AuthError` on 401/403, :class:`RateLimited` / :class:`RemoteError` when retries run out.

        :param kind: ``search`` also takes the search budget (5 per second).
        :param idempotent: whether a request that may have reached HubSpot can be repeated (not for creates).
        """
        attempts = self.config.max_attempts
        last: str = ""
        for attempt in range(1, attempts + 1):
            self.limits.before(kind, self.context.sleep)
            self.api_calls += 1
            try:
                response = self.http.request(method, path, params=params, json=json)
            except _SAFE_TRANSPORT as exc:
                last = f"connection failed: {type(exc).__name__}"
                self._backoff(attempt, last, path)
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise RemoteError(f"{method} {path}: {type(exc).__name__} after sending; not repeated "
                                      "because the request is not idempotent",
                                      source=self.source, url=path) from exc
                last = f"transport error: {type(exc).__name__}"
                self._backoff(attempt, last, path)
                continue
            self.limits.after(response)
            status = response.status_code
            if status == 429:
                self.rate_limited += 1
                policy = policy_of(response)
                if policy == "DAILY":
                    raise self.limits.quota_error("HubSpot answered 429 DAILY (daily limit reached)")
                wait = self.limits.wait_for(policy, response)
                last = f"429 {policy}"
                log.info("hubspot rate limited", extra={"source": self.source, "policy": policy, "wait": wait})
                self.retries += 1
                self.context.sleep(wait)
                continue
            if status in RETRYABLE_STATUS:
                last = f"HTTP {status}"
                if not idempotent and status >= 500:
                    raise RemoteError(f"{method} {path}: HTTP {status}; not repeated (not idempotent)",
                                      source=self.source, status=status, url=path, body=response.text[:500])
                self._backoff(attempt, last, path)
                continue
            if status in (401, 403):
                raise AuthError(self._describe(response, method, path), source=self.source, status=status,
                                url=path)
            return response
        if last.startswith("429"):
            raise RateLimited(f"{method} {path}: still rate limited after {attempts} attempts ({last})",
                              source=self.source, url=path)
        raise RemoteError(f"{method} {path}: gave up after {attempts} attempts ({last})", source=self.source,
                          url=path)

    def _backoff(self, attempt: int, reason: str, path: str) -> None:
        self.retries += 1
        wait = min(60.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        log.info("hubspot transient failure, retrying",
                 extra={"source": self.source, "reason": reason, "path": path, "wait": round(wait, 2)})
        self.context.sleep(wait)

    @staticmethod
    def _describe(response: httpx.Response, method: str, path: str) -> str:
        try:
            body = response.json()
            detail = f"{body.get('category', '')}: {body.get('message', '')}".strip(": ")
        except ValueError:
            detail = response.text[:200]
        hint = " (missing scope?)" if response.status_code == 403 else ""
        return f"{method} {path}: HTTP {response.status_code} {detail}{hint}"

    @staticmethod
    def error(response: httpx.Response, what: str, source: str) -> RemoteError:
        """A RemoteError describing an unexpected answer."""
        return RemoteError(f"{what}: HTTP {response.status_code}", source=source, status=response.status_code,
                           url=str(response.request.url.path) if response.request else None,
                           body=response.text[:1000])
