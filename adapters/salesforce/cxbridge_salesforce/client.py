"""The Salesforce client: simple-salesforce plus session refresh, retries, quota tracking and error mapping.

Every API call of the adapter goes through :meth:`SalesforceClient.call`, which

1. stops with :class:`~cxbridge.errors.QuotaExhausted` before the call when the daily API usage last reported
   by Salesforce (``Sforce-Limit-Info: api-usage=used/limit``, sent on every REST response -- REST API
   Developer Guide, "Limit Info Header") has reached the configured share (default 80 %);
2. retries 5xx answers and connection errors with capped exponential backoff and jitter (tenacity, sleeping
   through the injectable ``context.sleep``);
3. on 401 ``INVALID_SESSION_ID`` (body ``[{"message": "Session expired or invalid", "errorCode":
   "INVALID_SESSION_ID"}]``, REST API Developer Guide, "Status Codes and Error Responses") logs in again ONCE
   and repeats the call; a second 401 is an :class:`~cxbridge.errors.AuthError`;
4. maps 403 ``REQUEST_LIMIT_EXCEEDED`` to :class:`~cxbridge.errors.QuotaExhausted` (same page: "If the error
   code is REQUEST_LIMIT_EXCEEDED, you've exceeded API request limits in your org"), other errors to
   :class:`~cxbridge.errors.RemoteError` with status, URL and a truncated body.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from cxbridge.adapters import StateStore
from cxbridge.errors import AdapterError, AuthError, QuotaExhausted, RemoteError
from cxbridge.retry import RetryPolicy

from .auth import Session, login
from .config import SalesforceConfig

__all__ = ["ApiUsage", "SalesforceClient", "error_code"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_USAGE_RE = re.compile(r"api-usage=(\d+)/(\d+)")


class ApiUsage:
    """Daily API usage as last reported by Salesforce, and the calls this client made."""

    def __init__(self) -> None:
        self.used: int | None = None
        self.limit: int | None = None
        self.calls = 0

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """``requests`` response hook: count the call and parse ``Sforce-Limit-Info``.

        Logins (OAuth token endpoint, SOAP ``login()``) do not count against the API allowance.
        """
        if "/services/oauth2/" in response.url or "/services/Soap/" in response.url:
            return
        self.calls += 1
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            match = _USAGE_RE.search(header)
            if match:
                self.used, self.limit = int(match.group(1)), int(match.group(2))

    @property
    def share(self) -> float | None:
        if self.used is None or not self.limit:
            return None
        return self.used / self.limit


def error_code(exc: SalesforceError) -> str | None:
    """The ``errorCode`` of a Salesforce error body (a JSON array of ``{message, errorCode, fields}``)."""
    content: Any = exc.content
    if isinstance(content, bytes | str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    if isinstance(content, dict):
        return content.get("errorCode")
    return None


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, SalesforceError) and not isinstance(exc, SalesforceExpiredSession) and (
        int(exc.status) >= 500 or int(exc.status) == 429
    )


class SalesforceClient:
    """One logged-in connection to an org.

    :param config: connection config.
    :param sleep: injectable sleep used for backoff (``context.sleep``).
    :param source: source name for errors.
    :param session: a ``requests`` session to use (tests may pass one); TLS from the environment otherwise.
    :param retry: the retry policy (attempts, backoff, cap, sleep); default from the config and ``sleep``.
    :param state: the source's persistent state (a rotated OAuth refresh token is kept there).
    """

    def __init__(
        self,
        config: SalesforceConfig,
        *,
        sleep: Callable[[float], None],
        source: str | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        state: StateStore | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.state = state
        self.retry = retry or RetryPolicy(
            max_attempts=config.max_attempts, base=1.0, max_wait=config.max_wait_seconds, sleep=sleep
        )
        self.usage = ApiUsage()
        self.http = session or requests.Session()
        if config.ca_bundle:
            self.http.verify = config.ca_bundle
        self.http.hooks["response"].append(self.usage.observe)
        self.logins = 0
        self._sf: Salesforce | None = None
        self._session: Session | None = None

    # -- session ---------------------------------------------------------------------------------------------

    def _login(self) -> None:
        self._session = login(self.config, self.http, source=self.source, state=self.state)
        self.logins += 1
        self._sf = Salesforce(
            session_id=self._session.access_token,
            instance_url=self._session.instance_url,
            version=self.config.api_version,
            session=self.http,
            object_pairs_hook=dict,
        )
        log.info("salesforce login ok", extra={"source": self.source, "flow": self.config.auth.flow})

    @property
    def sf(self) -> Salesforce:
        """The simple-salesforce client (logs in on first use)."""
        if self._sf is None:
            self._login()
        assert self._sf is not None
        return self._sf

    @property
    def instance_url(self) -> str:
        self.sf  # noqa: B018 -- ensure login
        assert self._session is not None
        return self._session.instance_url

    @property
    def base_url(self) -> str:
        return f"{self.instance_url}/services/data/v{self.config.api_version}/"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sf.session_id}"}

    # -- calls -----------------------------------------------------------------------------------------------

    def check_quota(self) -> None:
        """Raise :class:`QuotaExhausted` if the configured share of the daily allowance is used."""
        share = self.usage.share
        if share is not None and share >= self.config.quota_share:
            raise QuotaExhausted(
                f"daily API usage {self.usage.used}/{self.usage.limit} reached the configured share "
                f"{self.config.quota_share:.0%}; stopping until the 24-hour window frees calls",
                source=self.source,
            )

    def call(self, fn: Callable[[Salesforce], T], *, what: str = "call") -> T:
        """Run ``fn(sf)`` with the quota check, retries, one session refresh and error mapping."""
        refreshed = False
        while True:
            self.check_quota()
            try:
                return self._retrying(fn)
            except SalesforceExpiredSession as exc:
                if refreshed:
                    raise AuthError(
                        f"{what}: session rejected again right after a fresh login ({error_code(exc)})",
                        source=self.source,
                        status=401,
                    ) from None
                log.info("salesforce session expired; logging in again", extra={"source": self.source})
                refreshed = True
                self._login()
            except SalesforceError as exc:
                raise self.map_error(exc, what) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise AdapterError(
                    f"{what}: {type(exc).__name__} after {self.retry.max_attempts} attempts",
                    source=self.source,
                    kind="transient",
                ) from None

    def _retrying(self, fn: Callable[[Salesforce], T]) -> T:
        # simple-salesforce speaks requests, not httpx, so cxbridge.retry.RetryTransport cannot wrap it; the
        # same RetryPolicy (attempts, jittered capped backoff, injectable sleep) drives tenacity here instead.
        policy = self.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=lambda state: policy.backoff(state.attempt_number),
            retry=retry_if_exception(_transient),
            sleep=policy.sleep,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "salesforce transient error; retrying",
                extra={"source": self.source, "attempt": state.attempt_number},
            ),
        )
        return retrying(lambda: fn(self.sf))

    def map_error(self, exc: SalesforceError, what: str) -> AdapterError:
        """Translate a simple-salesforce error into the cxbridge hierarchy."""
        code = error_code(exc)
        status = int(exc.status)
        body = exc.content.decode(errors="replace") if isinstance(exc.content, bytes) else str(exc.content)
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            return QuotaExhausted(
                f"{what}: Salesforce answered REQUEST_LIMIT_EXCEEDED (daily API allowance used up)",
                source=self.source,
                status=403,
                url=str(exc.url),
            )
        if status == 401:
            return AuthError(f"{what}: {code or 'unauthorized'}", source=self.source, status=401)
        kind = "transient" if status >= 500 or status == 429 else "system"
        return RemoteError(
            f"{what}: HTTP {status} {code or ''}".rstrip(),
            source=self.source,
            kind=kind,  # type: ignore[arg-type]
            status=status,
            url=str(exc.url),
            body=body[:500],
        )

    def close(self) -> None:
        self.http.close()
