"""Logging in to Salesforce with each supported flow, through simple-salesforce's own login helpers.

simple-salesforce builds login URLs as ``https://{domain}.salesforce.com``; to allow any login URL (My Domain,
sandboxes, test servers) we call its ``token_login`` (OAuth token endpoint) and ``SalesforceLogin`` with
``scratch_url`` (SOAP ``login()``) with explicit URLs instead.

Flows (Salesforce Help, "OAuth Authorization Flows"; REST API Developer Guide, "Authorization"):

- refresh token: ``POST /services/oauth2/token`` ``grant_type=refresh_token``; when the connected app rotates
  refresh tokens the answer carries a new ``refresh_token`` and the old one stops working, so the new one is
  kept in the source's state (``oauth.refresh_token``) and used from then on;
- client credentials: ``grant_type=client_credentials`` with HTTP Basic client auth, only on a My Domain URL;
- JWT bearer: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an RS256 assertion
  (``iss`` = consumer key, ``sub`` = username, ``aud`` = login.salesforce.com / test.salesforce.com,
  ``exp`` within 3 minutes);
- username + password + security token: SOAP ``login()`` at ``/services/Soap/u/{version}``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin, token_login

from cxbridge import secrets
from cxbridge.adapters import StateStore
from cxbridge.errors import AuthError

from .config import (
    ClientCredentialsAuth,
    JwtBearerAuth,
    PasswordAuth,
    RefreshTokenAuth,
    SalesforceConfig,
)

__all__ = ["ROTATED_REFRESH_TOKEN", "Session", "login"]

#: Source-state key of a refresh token Salesforce rotated (it supersedes the configured one).
ROTATED_REFRESH_TOKEN = "oauth.refresh_token"


@dataclass(frozen=True)
class Session:
    """An access token and the instance it is valid for."""

    access_token: str
    instance_url: str


def _with_scheme(instance: str) -> str:
    return instance if instance.startswith("https://") else f"https://{instance}"


def _jwt_assertion(auth: JwtBearerAuth, login_url: str) -> str:
    import jwt  # pyjwt; imported lazily (cryptography is slow to import)

    if auth.private_key is not None:
        key: str | bytes = auth.private_key.get_secret_value()
    else:
        key = Path(auth.private_key_file or "").read_bytes()
    audience = auth.audience or (
        "https://test.salesforce.com" if "test.salesforce.com" in login_url or ".sandbox." in login_url
        else "https://login.salesforce.com"
    )
    claims = {"iss": auth.client_id, "sub": auth.username, "aud": audience, "exp": int(time.time()) + 180}
    return jwt.encode(claims, key, algorithm="RS256")


def _refresh(
    auth: RefreshTokenAuth, token_url: str, session: requests.Session, state: StateStore | None
) -> tuple[str, str]:
    """The refresh-token grant, keeping a rotated refresh token in ``state``.

    Posted directly (not through simple-salesforce's ``token_login``, which drops the answer's
    ``refresh_token``). A stored rotated token that Salesforce refuses (revoked, or the admin issued a new one
    in the config) is dropped and the configured token tried once.
    """
    configured = auth.refresh_token.get_secret_value()
    stored = state.get(ROTATED_REFRESH_TOKEN) if state is not None else None
    candidates = [t for t in (stored, configured) if t]
    if stored == configured:
        candidates = [configured]
    body: dict[str, Any] = {}
    for token in candidates:
        data = {"grant_type": "refresh_token", "client_id": auth.client_id, "refresh_token": token}
        if auth.client_secret is not None:
            data["client_secret"] = auth.client_secret.get_secret_value()
        response = session.post(token_url, data=data, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and body.get("access_token"):
            rotated = body.get("refresh_token")
            if rotated:
                secrets.registry.add(rotated)  # never logged, like the configured one
            if state is not None and rotated and rotated != configured:
                state.set(ROTATED_REFRESH_TOKEN, rotated)
            elif state is not None and token == configured and stored:
                state.set(ROTATED_REFRESH_TOKEN, None)
            return str(body["access_token"]), str(body.get("instance_url") or "")
    raise SalesforceAuthenticationFailed(body.get("error", "invalid_grant"), body.get("error_description", ""))


def login(
    config: SalesforceConfig,
    session: requests.Session,
    *,
    source: str | None = None,
    state: StateStore | None = None,
) -> Session:
    """Log in with the configured flow; raise :class:`~cxbridge.errors.AuthError` if Salesforce refuses.

    :param config: the source's connection config.
    :param session: the ``requests`` session every call of this source uses (TLS settings, hooks).
    :param source: source name for error messages.
    :param state: the source's persistent state: keeps a refresh token Salesforce rotated.
    """
    auth = config.auth
    token_url = f"{config.login_url}/services/oauth2/token"
    try:
        if isinstance(auth, PasswordAuth):
            session_id, instance = SalesforceLogin(
                username=auth.username,
                password=auth.password.get_secret_value(),
                security_token=auth.security_token.get_secret_value(),
                sf_version=config.api_version,
                session=session,
                scratch_url=config.login_url,
            )
        elif isinstance(auth, RefreshTokenAuth):
            session_id, instance = _refresh(auth, token_url, session, state)
        elif isinstance(auth, ClientCredentialsAuth):
            basic = base64.b64encode(
                f"{auth.client_id}:{auth.client_secret.get_secret_value()}".encode()
            ).decode()
            session_id, instance = token_login(
                token_url,
                {"grant_type": "client_credentials"},
                "login",
                auth.client_id,
                {"Authorization": f"Basic {basic}"},
                None,
                session,
            )
        else:
            data = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": _jwt_assertion(auth, config.login_url),
            }
            session_id, instance = token_login(token_url, data, "login", auth.client_id, None, None, session)
    except SalesforceAuthenticationFailed as exc:
        raise AuthError(
            f"Salesforce login ({auth.flow}) at {config.login_url} failed: {exc.code}: {exc.auth_message}",
            source=source,
            url=config.login_url,
        ) from None
    except requests.RequestException as exc:
        raise AuthError(
            f"Salesforce login ({auth.flow}) at {config.login_url} failed: {type(exc).__name__}",
            source=source,
            kind="transient",
            url=config.login_url,
        ) from None
    if not session_id or not instance:
        raise AuthError(f"Salesforce login ({auth.flow}) returned no token", source=source)
    return Session(str(session_id), config.instance_url or _with_scheme(str(instance)).rstrip("/"))
