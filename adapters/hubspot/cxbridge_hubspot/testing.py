"""A stateful in-memory HubSpot API for offline tests (respx), reusable by third parties.

:class:`FakeHubSpot` keeps objects with properties and modification stamps, associations, properties
definitions, OAuth tokens and rate-limit windows, and answers the CRM v3/v4 endpoints the adapter uses the
way HubSpot documents them:

- list ``GET /crm/v3/objects/{type}``: ``limit`` <= 100 (else 400), opaque ``after`` paging, ``archived=true``;
- search ``POST /crm/v3/objects/{type}/search``: ``limit`` <= 200, at most 5 filter groups / 10 filters per
  group / 25 filters, results past 10,000 -> 400, ties in the sort order come back in no particular order,
  optional search-index lag, 5 requests per second (429 ``SECONDLY``);
- batch read / update / upsert / create (<= 100 inputs, else 400), 207 multi-status with per-item errors,
  409 ``Contact already exists. Existing ID: <id>``, merged ids resolving to the survivor;
- associations v4 batch read, properties API, OAuth token refresh with refresh-token rotation, token info,
  GDPR delete;
- 429 with the documented body (``policyName`` TEN_SECONDLY_ROLLING / SECONDLY / DAILY) and
  ``X-HubSpot-RateLimit-*`` headers; 401 ``EXPIRED_AUTHENTICATION`` for expired OAuth access tokens;
- fault injection (:meth:`FakeHubSpot.fail`): connection drops, 5xx, 423, 429 storms.

Sources are cited next to each behaviour in :mod:`cxbridge_hubspot` and ``docs/hubspot.md``.

Usage::

    fake = FakeHubSpot()
    fake.add("contacts", {"email": "ann@example.com"})
    client = httpx.Client(base_url=fake.base_url, transport=fake.transport())
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx

from cxbridge.sources import DictState

from .streams import OBJECT_TYPE_IDS

__all__ = ["OBJECT_TYPE_IDS", "DictState", "FakeClock", "FakeHubSpot", "SlidingWindowBudget", "make_context",
           "sign_v3"]

_MODSTAMP = {"contacts": "lastmodifieddate"}
_ENGAGEMENTS = {"notes", "calls", "emails", "meetings", "tasks"}
#: HubSpot-defined association type ids engagement -> contact (associations v4 docs).
ENGAGEMENT_TO_CONTACT = {"notes": 202, "tasks": 204, "calls": 194, "emails": 198, "meetings": 200}
_DEFAULT_PROPS: dict[str, list[tuple[str, str, bool]]] = {  # name, type, unique
    "contacts": [("email", "string", True), ("firstname", "string", False), ("lastname", "string", False),
                 ("phone", "string", False), ("mobilephone", "string", False), ("company", "string", False),
                 ("jobtitle", "string", False), ("city", "string", False), ("country", "string", False),
                 ("zip", "string", False), ("state", "string", False), ("address", "string", False),
                 ("hs_language", "string", False), ("associatedcompanyid", "number", False),
                 ("hs_email_optout", "bool", False), ("lifecyclestage", "enumeration", False)],
    "companies": [("name", "string", False), ("domain", "string", False), ("industry", "string", False),
                  ("country", "string", False), ("numberofemployees", "number", False),
                  ("annualrevenue", "number", False)],
    "deals": [("dealname", "string", False), ("amount", "number", False), ("dealstage", "enumeration", False),
              ("closedate", "datetime", False), ("deal_currency_code", "enumeration", False),
              ("pipeline", "enumeration", False)],
    "tickets": [("subject", "string", False), ("content", "string", False),
                ("hs_pipeline_stage", "enumeration", False), ("hs_ticket_priority", "enumeration", False)],
    "notes": [("hs_note_body", "string", False), ("hs_timestamp", "datetime", False)],
    "calls": [("hs_call_title", "string", False), ("hs_call_body", "string", False),
              ("hs_call_direction", "enumeration", False), ("hs_call_duration", "number", False),
              ("hs_timestamp", "datetime", False)],
    "emails": [("hs_email_subject", "string", False), ("hs_email_text", "string", False),
               ("hs_email_direction", "enumeration", False), ("hs_timestamp", "datetime", False)],
    "meetings": [("hs_meeting_title", "string", False), ("hs_meeting_body", "string", False),
                 ("hs_meeting_start_time", "datetime", False), ("hs_timestamp", "datetime", False)],
    "tasks": [("hs_task_subject", "string", False), ("hs_task_body", "string", False),
              ("hs_task_status", "enumeration", False), ("hs_task_priority", "enumeration", False),
              ("hs_timestamp", "datetime", False)],
}
_READ_ONLY = ("hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_merged_object_ids")


def modstamp_property(object_type: str) -> str:
    """``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` for every other object."""
    return _MODSTAMP.get(object_type, "hs_lastmodifieddate")


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch -> HubSpot's ISO 8601 form (``2024-01-01T00:00:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def sign_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp: str) -> str:
    """``X-HubSpot-Signature-v3``: base64(HMAC-SHA256(secret, method + uri + body + timestamp)).

    Source: https://developers.hubspot.com/docs/api/webhooks/validating-requests
    """
    text = body.decode() if isinstance(body, bytes) else body
    mac = hmac.new(secret.encode(), f"{method}{uri}{text}{timestamp}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class FakeClock:
    """A clock tests and benchmarks advance by sleeping; nothing waits for real."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds
            self.slept += seconds

    def ms(self) -> int:
        return round(self.t * 1000)


class SlidingWindowBudget:
    """A client-side budget: at most ``limit`` acquisitions in any ``period`` window (fake-clock friendly).

    Stands in for the core's shared budget in tests that build an :class:`AdapterContext` by hand.
    """

    def __init__(self, limit: int, period: float, clock: FakeClock) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self.sent: deque[float] = deque()

    def acquire(self, cost: int = 1) -> None:
        for _ in range(cost):
            while self.sent and self.sent[0] <= self.clock.t - self.period:
                self.sent.popleft()
            if len(self.sent) >= self.limit:
                self.clock.sleep(self.sent[0] + self.period - self.clock.t + 1e-6)
                self.sent.popleft()
            self.sent.append(self.clock.t)


def make_context(fake: FakeHubSpot, *, source: str = "hubspot", state: Any = None,
                 paced: bool = True) -> Any:
    """An :class:`~cxbridge.adapters.AdapterContext` wired to ``fake``: the core client factory over the fake's
    transport, token-bucket budgets and sleeping on the fake clock (``paced=False``: no client pacing).
    """
    from cxbridge.adapters import AdapterContext
    from cxbridge.http import build_client
    from cxbridge.ratelimit import TokenBucket

    budgets: dict[str, Any] = {}

    class _Free:
        def acquire(self, cost: int = 1) -> None:
            return None

    def budget_factory(key: str, limit: int, period: float) -> Any:
        if not paced:
            return _Free()
        if key not in budgets:
            budgets[key] = TokenBucket(limit, period, clock=lambda: fake.clock.t, sleep=fake.clock.sleep)
        return budgets[key]

    def http(**kwargs: Any) -> httpx.Client:
        kwargs["transport"] = fake.transport()
        return build_client(**kwargs)

    return AdapterContext(source=source, http=http, state=state if state is not None else DictState(),
                          budget_factory=budget_factory, sleep=fake.clock.sleep, now=fake.clock.now)


@dataclass
class _Rec:
    id: int
    type: str
    props: dict[str, Any]
    created: int
    modified: int
    history: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    archived_at: int | None = None
    merged: list[int] = field(default_factory=list)


@dataclass
class _Fault:
    kind: str  # "connect" | "read" | "<status>" | "429:<POLICY>"
    times: int
    method: str | None
    path: re.Pattern[str] | None


def _err(status: int, message: str, category: str, **extra: Any) -> httpx.Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return httpx.Response(status, json=body)


class FakeHubSpot:
    """A stateful fake HubSpot portal answering through a respx router (see module docs)."""

    def __init__(
        self,
        *,
        base_url: str = "https://api.hubapi.com",
        clock: FakeClock | None = None,
        ten_secondly_limit: int | None = 100,
        search_per_second: int | None = 5,
        daily_limit: int = 250_000,
        search_index_lag: float = 0.0,
        private_tokens: Iterable[str] = ("pat-test",),
        scopes: Iterable[str] = ("crm.objects.contacts.read", "crm.objects.contacts.write",
                                 "crm.objects.companies.read", "crm.objects.deals.read", "tickets",
                                 "crm.schemas.contacts.read", "sales-email-read"),
        oauth_clients: dict[str, str] | None = None,
        access_token_ttl: int = 1800,
        rotate_refresh_tokens: bool = True,
        portal_id: int = 4242,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock or FakeClock()
        self.ten_secondly_limit = ten_secondly_limit
        self.search_per_second = search_per_second
        self.daily_limit = daily_limit
        self.search_index_lag = search_index_lag
        self.private_tokens = set(private_tokens)
        self.scopes = list(scopes)
        self.oauth_clients = dict(oauth_clients or {"client-1": "secret-1"})
        self.refresh_tokens: set[str] = {"rt-0"}
        self.access_tokens: dict[str, int] = {}  # token -> expires at (ms)
        self.access_token_ttl = access_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.portal_id = portal_id
        self.objects: dict[str, dict[int, _Rec]] = {t: {} for t in _DEFAULT_PROPS}
        self.merged_into: dict[tuple[str, int], int] = {}
        self.assoc: dict[tuple[str, int], dict[str, set[int]]] = {}
        self.properties: dict[str, dict[str, dict[str, Any]]] = {}
        self.gdpr_deleted: list[str] = []
        self.calls: list[tuple[str, str]] = []  # requests that reached the server (incl. 429s)
        self.responses: list[int] = []
        self.attempts = 0
        self.throttled = 0  # 429s the rate limiter (not fault injection) answered
        self.busy = 0.0  # wall-clock seconds spent answering (benchmarks subtract it)
        self.max_url_length = 8192  # HubSpot documents 414 without a number; a common server limit
        self._next_id = 1000
        self._token_seq = 0
        self._window: deque[float] = deque()
        self._search_window: deque[float] = deque()
        self._daily_used = 0
        self._faults: list[_Fault] = []
        self.hooks: list[Callable[[httpx.Request], None]] = []  # run before each served request
        for obj, props in _DEFAULT_PROPS.items():
            self.properties[obj] = {}
            for name, ptype, unique in props:
                self.add_property(obj, name, ptype=ptype, unique=unique, hubspot_defined=True)
            for name in _READ_ONLY:
                self.add_property(obj, name, ptype="datetime" if "date" in name else "string",
                                  hubspot_defined=True, read_only=True)
        self.router = respx.Router(base_url=self.base_url, assert_all_called=False)
        self.router.route().mock(side_effect=self._handle)

    # ---------------------------------------------------------------------------------------------- setup
    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this fake."""
        return httpx.MockTransport(self.router.handler)

    def add_property(self, object_type: str, name: str, *, ptype: str = "string", unique: bool = False,
                     hubspot_defined: bool = False, read_only: bool = False, label: str | None = None) -> None:
        """Define a (custom) property, as ``POST /crm/v3/properties/{type}`` would."""
        self.properties[object_type][name] = {
            "name": name, "label": label or name.replace("_", " ").title(), "type": ptype,
            "fieldType": "text", "hasUniqueValue": unique, "hubspotDefined": hubspot_defined,
            "calculated": False, "modificationMetadata": {"readOnlyValue": read_only, "archivable": True},
        }

    def add(self, object_type: str, props: dict[str, Any] | None = None, *, at_ms: int | None = None,
            associations: dict[str, Iterable[str | int]] | None = None) -> str:
        """Create a record directly (no API call); returns its id."""
        self._next_id += 1
        now = self.clock.ms() if at_ms is None else at_ms
        rec = _Rec(self._next_id, object_type, {k: _s(v) for k, v in (props or {}).items()}, now, now)
        rec.history.append((now, dict(rec.props)))
        self.objects[object_type][rec.id] = rec
        for to_type, ids in (associations or {}).items():
            for other in ids:
                self.associate(object_type, rec.id, to_type, int(other))
        return str(rec.id)

    def update(self, object_type: str, object_id: str | int, props: dict[str, Any], *,
               at_ms: int | None = None) -> None:
        """Change properties directly (a user edit in HubSpot); bumps the modstamp."""
        rec = self.objects[object_type][int(object_id)]
        rec.props.update({k: _s(v) for k, v in props.items()})
        self._touch(rec, at_ms)

    def archive(self, object_type: str, object_id: str | int) -> None:
        rec = self.objects[object_type][int(object_id)]
        rec.archived_at = self.clock.ms()

    def merge(self, object_type: str, primary: str | int, secondary: str | int) -> None:
        """Merge ``secondary`` into ``primary`` (``POST /crm/v3/objects/{type}/merge``)."""
        keep, gone = self.objects[object_type][int(primary)], self.objects[object_type].pop(int(secondary))
        keep.merged += [gone.id, *gone.merged]
        for old in [gone.id, *gone.merged]:
            self.merged_into[(object_type, old)] = keep.id
        for k, v in gone.props.items():
            keep.props.setdefault(k, v)
        keep.props["hs_merged_object_ids"] = ";".join(str(i) for i in keep.merged)
        self._touch(keep, None)

    def associate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        self.assoc.setdefault((from_type, from_id), {}).setdefault(to_type, set()).add(to_id)
        self.assoc.setdefault((to_type, to_id), {}).setdefault(from_type, set()).add(from_id)

    def fail(self, kind: str | int, times: int = 1, *, method: str | None = None, path: str | None = None) -> None:
        """Inject faults: ``"connect"`` (drop), ``"read"``, a status (502, 423...) or ``"429:<POLICY>"``."""
        self._faults.append(_Fault(str(kind), times, method, re.compile(path) if path else None))

    def issue_access_token(self) -> str:
        self._token_seq += 1
        token = f"at-{self._token_seq}"
        self.access_tokens[token] = self.clock.ms() + self.access_token_ttl * 1000
        return token

    def get(self, object_type: str, object_id: str | int) -> dict[str, Any] | None:
        rec = self.objects[object_type].get(int(object_id))
        return dict(rec.props) if rec else None

    def count(self, method: str, pattern: str) -> int:
        """Calls that reached the server whose path matches ``pattern``."""
        rx = re.compile(pattern)
        return sum(1 for m, p in self.calls if m == method and rx.search(p))

    def webhook(self, events: list[dict[str, Any]], *, secret: str, uri: str,
                timestamp_ms: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of a signed webhook request HubSpot would send to ``uri``."""
        body = json.dumps(events).encode()
        ts = str(self.clock.ms() if timestamp_ms is None else timestamp_ms)
        sig = sign_v3(secret, "POST", uri, body, ts)
        return ({"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts,
                 "Content-Type": "application/json"}, body)

    # ------------------------------------------------------------------------------------------ plumbing
    def _touch(self, rec: _Rec, at_ms: int | None) -> None:
        rec.modified = self.clock.ms() if at_ms is None else at_ms
        rec.history.append((rec.modified, dict(rec.props)))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            return self._handle_timed(request)
        finally:
            self.busy += time.perf_counter() - started

    def _handle_timed(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        path = request.url.path
        for fault in self._faults:
            if fault.times > 0 and (fault.method in (None, request.method)) and (
                fault.path is None or fault.path.search(path)
            ):
                fault.times -= 1
                if fault.kind == "connect":
                    raise httpx.ConnectError("connection refused (injected)", request=request)
                if fault.kind == "read":
                    raise httpx.ReadError("connection reset (injected)", request=request)
                self.calls.append((request.method, path))
                if fault.kind.startswith("429:"):
                    resp = self._too_many(fault.kind[4:])
                else:
                    resp = _err(int(fault.kind), "injected failure", "INTERNAL_ERROR")
                self.responses.append(resp.status_code)
                return resp
        for hook in self.hooks:
            hook(request)
        self.calls.append((request.method, path))
        resp = self._serve(request, path)
        self.responses.append(resp.status_code)
        if resp.status_code == 429:
            self.throttled += 1
        return resp

    def _serve(self, request: httpx.Request, path: str) -> httpx.Response:
        if len(str(request.url)) > self.max_url_length:
            # https://developers.hubspot.com/docs/api-reference/error-handling: 414 when the URI is too long.
            return _err(414, "Request-URI Too Long", "VALIDATION_ERROR")
        if path == "/oauth/v1/token":
            return self._oauth_token(request)
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        is_search = path.endswith("/search")
        limited = self._rate_limit(is_search)
        if limited is not None:
            return limited
        body = json.loads(request.content) if request.content else {}
        resp = self._route(request, path, body)
        if not is_search:  # search answers carry no rate-limit headers
            resp.headers.update(self._limit_headers())
        return resp

    def _route(self, request: httpx.Request, path: str, body: Any) -> httpx.Response:
        from . import _fake_api as api  # the endpoint implementations

        return api.route(self, request, path, body)

    def _authenticate(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/oauth/v1/access-tokens/"):
            return None
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if token in self.private_tokens:
            return None
        expires = self.access_tokens.get(token)
        if expires is None:
            return _err(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication",
                        "INVALID_AUTHENTICATION")
        if self.clock.ms() >= expires:
            # Source: HubSpot 401 body for expired OAuth tokens (category EXPIRED_AUTHENTICATION).
            ago = (self.clock.ms() - expires) // 60000
            return _err(401, f"The OAuth token used to make this call expired {ago} minute(s) ago.",
                        "EXPIRED_AUTHENTICATION")
        return None

    def _rate_limit(self, is_search: bool) -> httpx.Response | None:
        now = self.clock.t
        if self._daily_used >= self.daily_limit:
            return self._too_many("DAILY")
        while self._window and self._window[0] <= now - 10.0:
            self._window.popleft()
        while self._search_window and self._search_window[0] <= now - 1.0:
            self._search_window.popleft()
        if self.ten_secondly_limit is not None and len(self._window) >= self.ten_secondly_limit:
            return self._too_many("TEN_SECONDLY_ROLLING")
        if is_search and self.search_per_second is not None and len(self._search_window) >= self.search_per_second:
            return self._too_many("SECONDLY")
        self._window.append(now)
        if is_search:
            self._search_window.append(now)
        self._daily_used += 1
        return None

    def _limit_headers(self) -> dict[str, str]:
        limit = self.ten_secondly_limit or 1000
        return {
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(max(0, limit - len(self._window))),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self._daily_used)),
        }

    def _too_many(self, policy: str) -> httpx.Response:
        # Source: https://developers.hubspot.com/docs/api/usage-details (429 body: errorType RATE_LIMIT,
        # policyName DAILY / SECONDLY / TEN_SECONDLY_ROLLING).
        messages = {"DAILY": "You have reached your daily limit.",
                    "SECONDLY": "You have reached your secondly limit.",
                    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit."}
        body = {"status": "error", "message": messages.get(policy, "rate limited"), "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()), "policyName": policy, "requestId": str(uuid.uuid4())}
        headers = self._limit_headers()
        if policy != "DAILY":
            headers["X-HubSpot-RateLimit-Remaining"] = "0"
        return httpx.Response(429, json=body, headers=headers)

    def _oauth_token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return httpx.Response(400, json={"status": "BAD_GRANT_TYPE", "message": "unsupported grant_type"})
        if self.oauth_clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return httpx.Response(400, json={"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})
        token = form.get("refresh_token", "")
        if token not in self.refresh_tokens:
            return httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN",
                                             "message": "missing or unknown refresh token"})
        if self.rotate_refresh_tokens:
            self.refresh_tokens.discard(token)
            self._token_seq += 1
            token = f"rt-{self._token_seq}"
            self.refresh_tokens.add(token)
        return httpx.Response(200, json={"token_type": "bearer", "refresh_token": token,
                                         "access_token": self.issue_access_token(),
                                         "expires_in": self.access_token_ttl})


def _s(value: Any) -> Any:
    """HubSpot stores property values as strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
