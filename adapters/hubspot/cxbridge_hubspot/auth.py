"""Authentication: private-app tokens and OAuth 2.0 with refresh ahead of expiry and once on expiry.

OAuth access tokens are short-lived; ``expires_in`` (seconds) comes with each token and HubSpot asks apps to
refresh from it rather than waiting for a 401. Source: https://developers.hubspot.com/apps/api_guidelines and
https://developers.hubspot.com/docs/methods/oauth2/refresh-access-token (``POST /oauth/v1/token`` with
``grant_type=refresh_token``). An expired token is answered with 401 and category ``EXPIRED_AUTHENTICATION``;
then the token is refreshed once and the request repeated. A refresh may return a new refresh token; it is
persisted in the source state (``oauth.refresh_token``) so a restart -- or another worker -- uses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from datetime import datetime

import httpx

from cxbridge.adapters import StateStore
from cxbridge.errors import AuthError
from cxbridge.secrets import registry as secret_registry

from .config import HubSpotConfig, OAuthAuth

__all__ = ["HubSpotAuth", "OAuthTokens", "StaticToken", "TokenSource", "make_token_source"]

log = logging.getLogger(__name__)
STATE_REFRESH_TOKEN = "oauth.refresh_token"


class TokenSource:
    """Hands out the current access token."""

    refreshable = False

    def access_token(self) -> str:
        raise NotImplementedError

    def refresh(self) -> None:
        """Get a new access token (OAuth only)."""


class StaticToken(TokenSource):
    """A private-app access token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token


class OAuthTokens(TokenSource):
    """OAuth access tokens refreshed ahead of ``expires_in`` minus a margin, with rotation persisted."""

    refreshable = True

    def __init__(
        self,
        auth: OAuthAuth,
        *,
        post_form: Callable[[str, dict[str, str]], httpx.Response],
        state: StateStore,
        now: Callable[[], datetime],
        source: str,
    ) -> None:
        self._auth, self._post, self._state, self._now, self._source = auth, post_form, state, now, source
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.refreshes = 0

    def _refresh_token(self) -> str:
        stored = self._state.get(STATE_REFRESH_TOKEN)
        return str(stored) if stored else self._auth.refresh_token.get_secret_value()

    def access_token(self) -> str:
        with self._lock:
            due = self._expires_at - self._auth.refresh_margin_seconds
            if self._token is None or self._now().timestamp() >= due:
                self._refresh_locked()
            assert self._token is not None
            return self._token

    def refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        used = self._refresh_token()
        resp = self._exchange(used)
        if resp.status_code == 400 and self._refresh_token() != used:
            resp = self._exchange(self._refresh_token())  # another worker rotated it meanwhile
        if resp.status_code != 200:
            try:
                status = resp.json().get("status", "")
            except ValueError:
                status = ""
            raise AuthError(
                f"OAuth token refresh failed ({resp.status_code} {status}); re-install the HubSpot app and "
                "update auth.refresh_token",
                source=self._source,
                status=resp.status_code,
            )
        data = resp.json()
        self._token = str(data["access_token"])
        secret_registry.update([self._token, data.get("refresh_token")])  # never in logs or errors
        self._expires_at = self._now().timestamp() + float(data.get("expires_in", 1800))
        self.refreshes += 1
        new_refresh = data.get("refresh_token")
        if new_refresh and new_refresh != used:
            self._state.set(STATE_REFRESH_TOKEN, new_refresh)
            log.info("hubspot OAuth refresh token rotated", extra={"source": self._source})

    def _exchange(self, refresh_token: str) -> httpx.Response:
        return self._post(
            "/oauth/v1/token",
            {
                "grant_type": "refresh_token",
                "client_id": self._auth.client_id,
                "client_secret": self._auth.client_secret.get_secret_value(),
                "refresh_token": refresh_token,
            },
        )


def _category(response: httpx.Response) -> str:
    try:
        return str(response.json().get("category", ""))
    except ValueError:
        return ""


class HubSpotAuth(httpx.Auth):
    """Bearer auth; on 401 ``EXPIRED_AUTHENTICATION`` refreshes once and repeats the request."""

    requires_response_body = True

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.tokens.access_token()}"
        response = yield request
        expired = response.status_code == 401 and _category(response) == "EXPIRED_AUTHENTICATION"
        if expired and self.tokens.refreshable:
            self.tokens.refresh()
            request.headers["Authorization"] = f"Bearer {self.tokens.access_token()}"
            yield request


def make_token_source(
    config: HubSpotConfig,
    *,
    post_form: Callable[[str, dict[str, str]], httpx.Response],
    state: StateStore,
    now: Callable[[], datetime],
    source: str,
) -> TokenSource:
    """The token source for the configured auth flow."""
    if isinstance(config.auth, OAuthAuth):
        return OAuthTokens(config.auth, post_form=post_form, state=state, now=now, source=source)
    return StaticToken(config.auth.token.get_secret_value())
