"""The one HTTP client factory every connector uses (STYLE "Connectors").

:func:`build_client` returns an :class:`httpx.Client` whose transport retries (:mod:`cxbridge.retry`), paces
every attempt through a :class:`~cxbridge.adapters.RateBudget` (:mod:`cxbridge.ratelimit`), counts API calls
(:class:`ApiStats`, read by the sync engine's metrics and the benchmarks) and logs each attempt -- method,
redacted URL, status, elapsed time -- at DEBUG, with the client's secrets removed.

TLS: the client verifies certificates. With the default ``trust_env=True`` httpx honours ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` (corporate proxies with their own CA) and ``HTTPS_PROXY``; pass ``verify`` (a CA bundle path
or an :class:`ssl.SSLContext`) to pin something else.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .retry import Classification, RecordingSleep, RetryPolicy, RetryTransport
from .secrets import redact

if TYPE_CHECKING:
    from .adapters import RateBudget
    from .errors import AdapterError

__all__ = [
    "ApiStats",
    "CxClient",
    "RecordingSleep",
    "RetryPolicy",
    "build_client",
    "error_for_response",
    "raise_for_response",
    "redact_url",
]

log = logging.getLogger("cxbridge.http")


@dataclass
class ApiStats:
    """API calls made through one or more clients (every attempt counts: vendors count retries too).

    Thread-safe; share one instance between clients to count per source.
    """

    calls: int = 0
    retries: int = 0
    errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(
        self, response: httpx.Response | None, error: BaseException | None, elapsed: float, attempt: int
    ) -> None:
        """Count one attempt."""
        with self._lock:
            self.calls += 1
            self.elapsed += elapsed
            if attempt > 1:
                self.retries += 1
            if response is not None:
                self.by_status[response.status_code] += 1
            if error is not None or (response is not None and response.status_code >= 400):
                self.errors += 1

    def snapshot(self) -> dict[str, Any]:
        """A plain dict copy (for metrics and sync-run records)."""
        with self._lock:
            return {
                "calls": self.calls,
                "retries": self.retries,
                "errors": self.errors,
                "by_status": dict(self.by_status),
                "elapsed": self.elapsed,
            }


class CxClient(httpx.Client):
    """An :class:`httpx.Client` that also carries its :class:`ApiStats` (``client.stats``)."""

    stats: ApiStats

    @property
    def api_calls(self) -> int:
        """API calls (attempts) sent so far."""
        return self.stats.calls


def redact_url(url: httpx.URL | str, secrets: Sequence[str] = ()) -> str:
    """``url`` with secret query parameters, passwords and known secret values masked."""
    return redact(str(url), secrets)


def error_for_response(
    response: httpx.Response, *, source: str | None = None, secrets: Sequence[str] = (), max_body: int = 500
) -> AdapterError:
    """The :class:`~cxbridge.errors.AdapterError` describing an error answer, body and URL redacted.

    401/403 -> :class:`~cxbridge.errors.AuthError`; 429 -> :class:`~cxbridge.errors.RateLimited` (with
    ``retry_after``); 408 and 5xx -> :class:`~cxbridge.errors.RemoteError` of kind ``transient``; any other
    status -> :class:`~cxbridge.errors.RemoteError` of kind ``config`` (a request the user's configuration or
    mapping made invalid).
    """
    from .errors import AuthError, RateLimited, RemoteError
    from .retry import parse_retry_after

    status = response.status_code
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built without a request (tests)
        request = None
    url = redact_url(request.url, secrets) if request is not None else None
    try:
        text = response.text
    except Exception:  # undecodable or unread body
        text = ""
    body = redact(" ".join(text.split()), secrets)
    if len(body) > max_body:
        body = body[:max_body] + "..."
    where = f" from {request.method} {url}" if request is not None else ""
    message = f"HTTP {status}{where}: {body}" if body else f"HTTP {status}{where}"
    if status in (401, 403):
        return AuthError(message, source=source, status=status, url=url)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(message, retry_after=retry_after, source=source, status=status, url=url)
    kind = "transient" if status == 408 or status >= 500 else "config"
    return RemoteError(message, body=body, source=source, kind=kind, status=status, url=url)


def raise_for_response(
    response: httpx.Response, *, source: str | None = None, secrets: Sequence[str] = ()
) -> httpx.Response:
    """Return ``response`` if it succeeded, else raise :func:`error_for_response`'s error."""
    if response.is_success or response.is_redirect:
        return response
    raise error_for_response(response, source=source, secrets=secrets)


def build_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | Callable[..., Any] | None = None,
    timeout: float | httpx.Timeout = 30,
    retry: RetryPolicy | None = None,
    budget: RateBudget | None = None,
    transport: httpx.BaseTransport | None = None,
    secrets: Sequence[str] = (),
    verify: ssl.SSLContext | str | bool = True,
    stats: ApiStats | None = None,
    params: Mapping[str, Any] | None = None,
    follow_redirects: bool = False,
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    retry_statuses: Iterable[int] = (),
    classify: Callable[[httpx.Response], Classification] | None = None,
    wait_for: Callable[[httpx.Response], float | None] | None = None,
    name: str = "",
) -> CxClient:
    """Build the HTTP client an adapter uses.

    :param base_url: prefix of relative request URLs (``https://api.hubapi.com``).
    :param headers: default headers (``User-Agent`` defaults to ``cxbridge/<version>``).
    :param auth: an :class:`httpx.Auth` (e.g. an OAuth flow that refreshes tokens) or basic-auth tuple.
    :param timeout: seconds (or an :class:`httpx.Timeout`).
    :param retry: the :class:`~cxbridge.retry.RetryPolicy` (default: 5 attempts, exponential with jitter).
    :param budget: paces every attempt (shared by every client of one CRM account).
    :param transport: the transport that really sends (default ``httpx.HTTPTransport(verify=verify)``; tests
        pass ``httpx.MockTransport(respx_router.handler)``); it is wrapped by the retrying transport.
    :param secrets: values to remove from log lines of this client (besides the registered ones).
    :param verify: TLS verification: True (system / ``SSL_CERT_FILE``), a CA bundle path, or an SSLContext.
    :param stats: count calls into this :class:`ApiStats` (default: a new one, ``client.stats``).
    :param params: default query parameters.
    :param follow_redirects: follow 3xx answers.
    :param event_hooks: httpx event hooks (``{"request": [...], "response": [...]}``), called once per
        request (not per retry attempt).
    :param retry_statuses: statuses to retry besides the policy's (HubSpot: 423).
    :param classify: the adapter's response classifier (see :class:`~cxbridge.retry.RetryPolicy`).
    :param wait_for: the adapter's wait for a retryable answer (see :class:`~cxbridge.retry.RetryPolicy`).
    :param name: label for log lines (the source name).

    ``retry_statuses``, ``classify`` and ``wait_for`` refine ``retry`` rather than replace it, so an adapter
    keeps the framework's policy (and the test kit's no-sleep ``sleep``) given through its
    :class:`~cxbridge.adapters.AdapterContext`::

        client = context.http(base_url="https://api.hubapi.com", retry_statuses=[423], wait_for=hubspot_wait)
    """
    from . import __version__

    stats = stats if stats is not None else ApiStats()
    secret_list = tuple(secrets)
    label = f"[{name}] " if name else ""

    def on_attempt(
        request: httpx.Request,
        response: httpx.Response | None,
        error: BaseException | None,
        elapsed: float,
        attempt: int,
    ) -> None:
        stats.record(response, error, elapsed, attempt)
        quiet = error is None and response is not None and response.status_code < 400
        if quiet and not log.isEnabledFor(logging.DEBUG):
            return
        url = redact_url(request.url, secret_list)
        if error is not None:
            log.warning(
                "%s%s %s failed: %s (%.3fs, attempt %d)",
                label,
                request.method,
                url,
                redact(repr(error), secret_list),
                elapsed,
                attempt,
            )
        elif response is not None:
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s%s %s -> %d (%.3fs, attempt %d)",
                label,
                request.method,
                url,
                response.status_code,
                elapsed,
                attempt,
            )

    if isinstance(verify, str):  # a CA bundle path (httpx 0.28 wants an SSLContext)
        verify = ssl.create_default_context(cafile=verify)
    wrapped = transport if transport is not None else httpx.HTTPTransport(verify=verify)
    policy = retry or RetryPolicy()
    extra = tuple(retry_statuses)
    if extra:
        policy = policy.with_statuses(*extra)
    if classify is not None:
        policy = policy.replace(classify=classify)
    if wait_for is not None:
        policy = policy.replace(wait_for=wait_for)
    retry_transport = RetryTransport(wrapped, policy, budget=budget, on_attempt=on_attempt)
    default_headers = {"User-Agent": f"cxbridge/{__version__}"}
    default_headers.update(headers or {})
    client = CxClient(
        base_url=base_url,
        headers=default_headers,
        auth=auth,  # type: ignore[arg-type]
        timeout=timeout,
        transport=retry_transport,
        verify=verify,
        params=params,
        follow_redirects=follow_redirects,
        event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
    )
    client.stats = stats
    return client
