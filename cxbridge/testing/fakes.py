"""A respx-based fake CRM API for adapter tests: routes, paged endpoints, tokens and injected faults.

:class:`FakeCRM` wraps a :class:`respx.MockRouter`. Hand :meth:`FakeCRM.transport` to
``cxbridge.http.build_client(transport=...)`` (or to any ``httpx.Client``); every request then goes through
the fake, in this order:

1. it is appended to :attr:`FakeCRM.requests`;
2. an injected fault matching it is consumed (429 with ``Retry-After``, a 5xx, a dropped connection);
3. when tokens are required, a missing, unknown or expired bearer token answers 401;
4. the respx route matching it answers; no route -> 404 (like a real API, not an exception in the client).

Vendor-specific fakes (HubSpot, Salesforce) build on this with their own documented page sizes, error bodies
and batch limits; the generic helpers here take those as parameters.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import respx
from respx.models import AllMockedAssertionError

__all__ = ["FakeCRM", "Fault"]

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Fault:
    """An injected failure for the next ``times`` requests matching ``method`` / ``path`` (None = any).

    :param kind: ``status`` (answer ``status`` with ``headers`` / ``body``) or ``disconnect`` (raise
        :class:`httpx.ConnectError`, as a dropped connection does).
    """

    kind: str
    times: int
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    method: str | None = None
    path: str | None = None
    after: int = 0
    hits: int = 0

    def matches(self, request: httpx.Request) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        return self.path is None or request.url.path == self.path


class FakeCRM:
    """A fake CRM HTTP API.

    Args:
        base_url: the API root the adapter is configured with.
        require_token: answer 401 unless the request carries a bearer token issued by :meth:`issue_token`
            (or through the token endpoint) that was not expired with :meth:`expire_tokens`.
        auth_error_body: JSON body of those 401 answers (vendors document their own).
    """

    def __init__(
        self,
        base_url: str = "https://crm.test",
        *,
        require_token: bool = False,
        auth_error_body: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.router = respx.MockRouter(base_url=self.base_url, assert_all_called=False, assert_all_mocked=True)
        self.requests: list[httpx.Request] = []
        self.require_token = require_token
        self.auth_error_body = auth_error_body or {"error": "invalid_token", "message": "token expired or invalid"}
        self.valid_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self.tokens_issued = 0
        self._faults: list[Fault] = []
        self._token_counter = itertools.count(1)
        self._public_paths: set[str] = set()

    # ----------------------------------------------------------------------------------------------------------
    # Wiring
    # ----------------------------------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """The request handler (what :class:`httpx.MockTransport` calls)."""
        self.requests.append(request)
        for fault in self._faults:
            if fault.times > 0 and fault.matches(request):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                fault.hits += 1
                if fault.kind == "disconnect":
                    raise httpx.ConnectError("connection dropped by FakeCRM", request=request)
                return self._json(fault.status, fault.body, headers=fault.headers)
        if self.require_token and request.url.path not in self._public_paths:
            token = _bearer(request)
            if token is None or token not in self.valid_tokens:
                return self._json(
                    401, self.auth_error_body, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                )
        try:
            return self.router.handler(request)
        except AllMockedAssertionError:
            return self._json(
                404, {"error": "not_found", "message": f"no route for {request.method} {request.url.path}"}
            )

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake."""
        return httpx.MockTransport(self.handler)

    def client(self, **kwargs: Any) -> httpx.Client:
        """A plain ``httpx.Client`` on :attr:`base_url` using :meth:`transport` (no retries)."""
        return httpx.Client(base_url=self.base_url, transport=self.transport(), **kwargs)

    # ----------------------------------------------------------------------------------------------------------
    # Routes
    # ----------------------------------------------------------------------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        handler: Handler | None = None,
        *,
        json_body: Any = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> respx.Route:
        """Answer ``method path`` with ``handler(request)`` or a fixed JSON body."""
        route = self.router.route(method=method.upper(), path=path)
        if handler is not None:
            route.mock(side_effect=lambda request, **_params: handler(request))
        else:
            route.mock(return_value=self._json(status, json_body, headers=headers or {}))
        return route

    def add_paged(
        self,
        path: str,
        records: Sequence[Any] | Callable[[], Sequence[Any]],
        *,
        method: str = "GET",
        default_page_size: int = 100,
        max_page_size: int | None = None,
        oversize: str = "error",
        limit_param: str = "limit",
        cursor_param: str = "after",
        page_body: Callable[[list[Any], str | None], Any] | None = None,
    ) -> respx.Route:
        """A cursor-paged list endpoint over ``records`` (a list, read live, or a callable returning one).

        The cursor is the offset of the next record, as an opaque string; for POST the limit and cursor
        are read from the JSON body, else from the query string. The default body is
        ``{"results": [...], "paging": {"next": {"after": "<cursor>"}}}`` (no ``paging`` on the last page).

        Args:
            max_page_size: the vendor's documented maximum; a larger ``limit`` answers 400
                (``oversize="error"``) or is capped (``oversize="cap"``).
            page_body: ``(items, next_cursor) -> JSON body`` for other vendors' shapes.
        """

        def body(items: list[Any], next_cursor: str | None) -> Any:
            out: dict[str, Any] = {"results": items}
            if next_cursor is not None:
                out["paging"] = {"next": {"after": next_cursor}}
            return out

        build = page_body or body

        def handle(request: httpx.Request) -> httpx.Response:
            params: Mapping[str, Any]
            if request.method in ("POST", "PUT") and request.content:
                params = json.loads(request.content)
            else:
                params = request.url.params
            try:
                limit = int(params.get(limit_param, default_page_size))
                offset = int(params.get(cursor_param) or 0)
            except (TypeError, ValueError):
                return self._json(
                    400, {"error": "bad_request", "message": f"invalid {limit_param}/{cursor_param}"}
                )
            if limit < 1:
                return self._json(400, {"error": "bad_request", "message": f"{limit_param} must be positive"})
            if max_page_size is not None and limit > max_page_size:
                if oversize == "error":
                    return self._json(
                        400, {"error": "bad_request", "message": f"{limit_param} must be at most {max_page_size}"}
                    )
                limit = max_page_size
            data = list(records() if callable(records) else records)
            page = data[offset : offset + limit]
            next_cursor = str(offset + limit) if offset + limit < len(data) else None
            return self._json(200, build(page, next_cursor))

        return self.route(method, path, handle)

    # ----------------------------------------------------------------------------------------------------------
    # Faults
    # ----------------------------------------------------------------------------------------------------------

    def inject_429(
        self,
        times: int = 1,
        *,
        retry_after: float | str | None = 1,
        path: str | None = None,
        method: str | None = None,
        body: Any = None,
        after: int = 0,
    ) -> Fault:
        """Answer the next ``times`` matching requests (after skipping ``after`` of them) with 429.

        ``retry_after`` becomes the ``Retry-After`` header (seconds, or an HTTP date string); None omits it.
        """
        headers = {} if retry_after is None else {"Retry-After": _header_value(retry_after)}
        return self._add_fault(
            Fault(
                kind="status",
                times=times,
                status=429,
                headers=headers,
                body=body if body is not None else {"error": "rate_limited", "message": "Too many requests"},
                method=method,
                path=path,
                after=after,
            )
        )

    def inject_error(
        self,
        status: int = 503,
        times: int = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        after: int = 0,
    ) -> Fault:
        """Answer the next ``times`` matching requests with ``status`` (a 5xx outage, a 423 lock...)."""
        return self._add_fault(
            Fault(
                kind="status",
                times=times,
                status=status,
                headers=dict(headers or {}),
                body=body if body is not None else {"error": "server_error", "message": f"HTTP {status}"},
                method=method,
                path=path,
                after=after,
            )
        )

    def inject_disconnect(
        self, times: int = 1, *, path: str | None = None, method: str | None = None, after: int = 0
    ) -> Fault:
        """Drop the connection of the next ``times`` matching requests (:class:`httpx.ConnectError`)."""
        return self._add_fault(Fault(kind="disconnect", times=times, method=method, path=path, after=after))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    def _add_fault(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    # ----------------------------------------------------------------------------------------------------------
    # Tokens
    # ----------------------------------------------------------------------------------------------------------

    def issue_token(self) -> str:
        """A new valid access token."""
        token = f"fake-token-{next(self._token_counter)}"
        self.valid_tokens.add(token)
        self.tokens_issued += 1
        return token

    def expire_tokens(self) -> set[str]:
        """Expire every token issued so far (the next request with one of them answers 401)."""
        expired = set(self.valid_tokens)
        self.expired_tokens |= expired
        self.valid_tokens.clear()
        return expired

    def add_token_endpoint(
        self,
        path: str = "/oauth/token",
        *,
        expires_in: int = 1800,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
    ) -> respx.Route:
        """An OAuth2 token endpoint (form-encoded POST) issuing tokens valid for this fake.

        When ``client_id`` / ``client_secret`` / ``refresh_token`` are given, requests must carry them
        (``invalid_client`` / ``invalid_grant`` 400 otherwise, as RFC 6749 §5.2 specifies).
        """
        from urllib.parse import parse_qs

        self._public_paths.add(path)

        def handle(request: httpx.Request) -> httpx.Response:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if client_id is not None and form.get("client_id") != client_id:
                return self._json(400, {"error": "invalid_client"})
            if client_secret is not None and form.get("client_secret") != client_secret:
                return self._json(400, {"error": "invalid_client"})
            if refresh_token is not None and form.get("refresh_token") != refresh_token:
                return self._json(400, {"error": "invalid_grant"})
            token = self.issue_token()
            body = {"access_token": token, "token_type": "bearer", "expires_in": expires_in}
            if refresh_token is not None:
                body["refresh_token"] = refresh_token
            return self._json(200, body)

        return self.route("POST", path, handle)

    # ----------------------------------------------------------------------------------------------------------
    # Inspection
    # ----------------------------------------------------------------------------------------------------------

    def calls_to(self, path: str, method: str | None = None) -> list[httpx.Request]:
        """Requests that reached the fake for ``path`` (faulted ones included)."""
        path = urlsplit(path).path if "://" in path else path
        return [r for r in self.requests if r.url.path == path and (method is None or r.method == method.upper())]

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @staticmethod
    def _json(status: int, body: Any, *, headers: Mapping[str, str] | None = None) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=dict(headers or {}))
        return httpx.Response(status, json=body, headers=dict(headers or {}))


def _bearer(request: httpx.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _header_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
