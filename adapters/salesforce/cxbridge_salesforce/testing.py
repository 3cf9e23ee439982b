"""A stateful fake Salesforce org for tests, served through the ``responses`` library.

The real ``simple-salesforce`` client (``requests``) talks to it unchanged, as simple-salesforce's own tests do::

    import responses
    from cxbridge_salesforce.testing import FakeSalesforce

    fake = FakeSalesforce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        contact = fake.insert("Contact", LastName="Lovelace", Email="ada@example.com")

What it reproduces (documented behaviour, REST API Developer Guide unless noted):

- logins: OAuth token endpoint (refresh token, client credentials with HTTP Basic, JWT bearer) and SOAP
  ``login()``; wrong credentials answer ``400 {"error": "invalid_grant"}`` / a SOAP fault ``INVALID_LOGIN``;
- sessions expire on demand:
  ``401 [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``;
- ``query`` / ``queryAll`` with a SOQL subset (:mod:`.fake_soql`), at most 2,000 rows per response and
  ``nextRecordsUrl`` locators over a snapshot taken when the query ran; ``queryAll`` returns deleted rows
  (``IsDeleted``), merges set ``MasterRecordId`` on the deleted losers; unknown fields -> ``400 INVALID_FIELD``;
- ``Sforce-Limit-Info: api-usage=used/limit`` on every response; past the limit ``403 REQUEST_LIMIT_EXCEEDED``;
- ``sobjects/{T}/describe``, ``sobjects/{T}/deleted/`` (15-day window, ``INVALID_REPLICATION_DATE``), ``limits``;
- sObject Collections (``allOrNone=false``; <=200 records, per-record ``errors`` with ``statusCode``, ``message``
  and ``fields``; upsert by an external-id field; delete by ``ids``);
- Bulk API 2.0 query jobs (``UploadComplete`` -> ``InProgress`` -> ``JobComplete`` or ``Failed``), CSV results
  with ``Sforce-Locator`` / ``Sforce-NumberOfRecords`` and ``maxRecords``;
- fault injection: 5xx bursts and dropped connections (:meth:`FakeSalesforce.fail_next`), expired sessions,
  expired query locators, record locks, validation errors.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from .fake_soql import SoqlError, parse
from .fake_store import FakeStore

__all__ = ["FakeSalesforce"]

Response = tuple[int, dict[str, str], str | bytes]


def _err(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
    body = [{"message": message, "errorCode": code, **({"fields": fields} if fields is not None else {})}]
    return status, {"Content-Type": "application/json"}, json.dumps(body)


class FakeSalesforce(FakeStore):
    """A fake org: objects in memory, the REST, Bulk 2.0 and login endpoints over ``responses``.

    :param instance_url: where the org's API lives.
    :param login_url: where logins go (token endpoint and SOAP); by default the My Domain, which is also the
        instance (client credentials need a My Domain).
    :param daily_limit: the daily API allowance reported in ``Sforce-Limit-Info``.
    :param page_size: rows per query response (Salesforce: 2,000).
    :param bulk_chunk: rows per Bulk results set when the client sends no ``maxRecords``.
    """

    def __init__(
        self,
        *,
        instance_url: str = "https://fake.my.salesforce.com",
        login_url: str = "https://fake.my.salesforce.com",
        api_version: str = "59.0",
        daily_limit: int = 15_000,
        page_size: int = 2000,
        bulk_chunk: int = 50_000,
        now: datetime | None = None,
    ) -> None:
        super().__init__(now=now)
        self.instance_url = instance_url.rstrip("/")
        self.login_url = login_url.rstrip("/")
        self.api_version = api_version
        self.daily_limit = daily_limit
        self.api_used = 0
        self.page_size = page_size
        self.bulk_chunk = bulk_chunk
        # credentials the fake accepts
        self.client_id = "fake-client-id"
        self.client_secret = "fake-client-secret"
        self.refresh_token = "fake-refresh-token"
        #: Refresh token rotation (a connected-app policy): every refresh answers with a new refresh token and
        #: invalidates the one used.
        self.rotate_refresh_tokens = False
        self.rotations = 0
        self.username = "integration@example.com"
        self.password = "hunter2"
        self.security_token = "TOKEN123"
        self.jwt_public_key: str | None = None
        self.tokens: dict[str, bool] = {}
        self.broken_sessions = False  # True: every new token is rejected at once (a revoked app)
        self.logins = 0
        self._token_seq = itertools.count(1)
        self.faults: list[int | str] = []
        #: called as ``hook(method, path)`` before each API request is answered (tests change data mid-run)
        self.before_request: Callable[[str, str], None] | None = None
        self.requests: list[tuple[str, str]] = []
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self._locator_seq = itertools.count(1)
        self.jobs: dict[str, dict[str, Any]] = {}
        self._job_seq = itertools.count(1)
        self.job_polls_to_complete = 2
        #: the next Bulk results download breaks after this many bytes (a dropped connection mid-body)
        self.break_results_after: int | None = None
        self.fail_jobs = False

    # -- test controls ---------------------------------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Invalidate every issued access token (the next API call answers 401 INVALID_SESSION_ID)."""
        for token in self.tokens:
            self.tokens[token] = False

    def expire_locators(self) -> None:
        """Forget every open query cursor (next ``nextRecordsUrl`` answers 400 INVALID_QUERY_LOCATOR)."""
        self.locators.clear()

    def fail_next(self, *faults: int | str) -> None:
        """Answer the next API calls with these faults: an HTTP status (503) or ``"connection"`` (dropped)."""
        self.faults.extend(faults)

    def calls(self, pattern: str = "") -> int:
        """How many API requests (not logins) were made whose ``METHOD path`` matches ``pattern``."""
        return sum(1 for method, path in self.requests if re.search(pattern, f"{method} {path}"))

    # -- responses wiring ------------------------------------------------------------------------------------

    def install(self, rsps: Any) -> None:
        """Register the fake's endpoints on a ``responses.RequestsMock``."""
        api = re.compile(re.escape(self.instance_url) + r"/services/data/v[\d.]+/.*")
        for method in ("GET", "POST", "PATCH", "DELETE"):
            rsps.add_callback(method, api, callback=self._api)
        rsps.add_callback("POST", self.login_url + "/services/oauth2/token", callback=self._token)
        rsps.add_callback("POST", re.compile(re.escape(self.login_url) + r"/services/Soap/u/.*"),
                          callback=self._soap)

    # -- logins ----------------------------------------------------------------------------------------------

    def _issue(self) -> str:
        token = f"00Dfake!{next(self._token_seq):06d}"
        self.tokens[token] = not self.broken_sessions
        self.logins += 1
        return token

    def _token_ok(self) -> Response:
        body = {"access_token": self._issue(), "instance_url": self.instance_url, "token_type": "Bearer",
                "id": f"{self.login_url}/id/00D000000000001/005000000000001", "issued_at": "0"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _token(self, request: requests.PreparedRequest) -> Response:
        form = {k: v[0] for k, v in parse_qs(str(request.body or "")).items()}
        bad = 400, {"Content-Type": "application/json"}, json.dumps(
            {"error": "invalid_grant", "error_description": "authentication failure"})
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("refresh_token") == self.refresh_token and form.get("client_id") == self.client_id:
                status, headers, text = self._token_ok()
                if self.rotate_refresh_tokens:
                    self.rotations += 1
                    self.refresh_token = f"fake-refresh-token-r{self.rotations}"
                    text = json.dumps({**json.loads(text), "refresh_token": self.refresh_token})
                return status, headers, text
            return 400, {"Content-Type": "application/json"}, json.dumps(
                {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        if grant == "client_credentials":
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if request.headers.get("Authorization") == f"Basic {expected}":
                return self._token_ok()
            return 400, {"Content-Type": "application/json"}, json.dumps(
                {"error": "invalid_client", "error_description": "invalid client credentials"})
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            import jwt

            try:
                if self.jwt_public_key:
                    claims = jwt.decode(form.get("assertion", ""), self.jwt_public_key, algorithms=["RS256"],
                                        audience=["https://login.salesforce.com", "https://test.salesforce.com"])
                else:
                    claims = jwt.decode(form.get("assertion", ""), options={"verify_signature": False})
            except jwt.PyJWTError:
                return bad
            if claims.get("iss") == self.client_id and claims.get("sub") == self.username:
                return self._token_ok()
            return bad
        return 400, {"Content-Type": "application/json"}, json.dumps(
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"})

    def _soap(self, request: requests.PreparedRequest) -> Response:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        user = re.search(r"<n1:username>(.*?)</n1:username>", body)
        password = re.search(r"<n1:password>(.*?)</n1:password>", body)
        if user and password and unescape(user.group(1)) == self.username and unescape(
            password.group(1)
        ) == self.password + self.security_token:
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">'
                f"<soapenv:Body><loginResponse><result><serverUrl>{self.instance_url}/services/Soap/u/"
                f"{self.api_version}/00D000000000001</serverUrl><sessionId>{self._issue()}</sessionId>"
                "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
            )
            return 200, {"Content-Type": "text/xml"}, xml
        fault = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
            "<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN</faultstring><detail>"
            "<sf:LoginFault><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid "
            "username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault>"
            "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        )
        return 500, {"Content-Type": "text/xml"}, fault

    # -- API dispatch ----------------------------------------------------------------------------------------

    def _api(self, request: requests.PreparedRequest) -> Response:
        url = urlparse(str(request.url))
        path = re.sub(r"^/services/data/v[\d.]+/", "", url.path)
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        method = str(request.method)
        self.requests.append((method, path))
        if self.before_request is not None:
            self.before_request(method, path)
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "connection":
                raise requests.ConnectionError("connection reset by peer (injected)")
            return _err(int(fault), "SERVER_UNAVAILABLE", "Service unavailable (injected)")
        auth = str(request.headers.get("Authorization", ""))
        if not self.tokens.get(auth.removeprefix("Bearer ").strip(), False):
            return _err(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.api_used >= self.daily_limit:
            status, headers, body = _err(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            return status, {**headers, "Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}, body
        self.api_used += 1
        body_text = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        payload = json.loads(body_text) if body_text else None
        status, headers, body = self._route(method, path, params, payload)
        return status, {**headers, "Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}, body

    def _route(self, method: str, path: str, params: dict[str, str], payload: Any) -> Response:
        parts = [p for p in path.split("/") if p]
        if parts[:1] in (["query"], ["queryAll"]):
            if len(parts) == 2:
                return self._query_more(parts[1])
            return self._query(params.get("q", ""), include_deleted=parts[0] == "queryAll")
        if parts[:1] == ["limits"]:
            return self._json({"DailyApiRequests": {"Max": self.daily_limit,
                                                    "Remaining": self.daily_limit - self.api_used}})
        if parts[:1] == ["sobjects"] and len(parts) >= 3 and parts[2] == "describe":
            return self._describe(parts[1])
        if parts[:1] == ["sobjects"] and len(parts) >= 3 and parts[2] == "deleted":
            return self._deleted(parts[1], params)
        if parts[:2] == ["composite", "sobjects"]:
            return self._collections(method, parts[2:], params, payload)
        if parts[:2] == ["jobs", "query"]:
            return self._jobs(method, parts[2:], params, payload)
        return _err(404, "NOT_FOUND", f"The requested resource does not exist: {path}")

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    # -- query -----------------------------------------------------------------------------------------------

    def _query(self, soql: str, *, include_deleted: bool) -> Response:
        try:
            query = parse(soql)
        except SoqlError as exc:
            return _err(400, "MALFORMED_QUERY", str(exc))
        if query.object_type not in self.schema:
            return _err(400, "INVALID_TYPE", f"sObject type '{query.object_type}' is not supported.")
        unknown = [f for f in [*query.fields, *query.where_fields, *(o[0] for o in query.order)]
                   if f not in self.schema[query.object_type]]
        if unknown:
            return _err(400, "INVALID_FIELD",
                        f"No such column '{unknown[0]}' on entity '{query.object_type}'.")
        try:
            rows = self.select(query, include_deleted=include_deleted)
        except SoqlError as exc:
            return _err(400, "INVALID_FIELD", str(exc))
        if query.count:
            return self._json({"totalSize": len(rows), "done": True, "records": []})
        snapshot = [self.serialize(query.object_type, row, query.fields) for row in rows]
        return self._json(self._page(snapshot, 0, len(snapshot)))

    def _page(self, snapshot: list[dict[str, Any]], offset: int, total: int) -> dict[str, Any]:
        end = offset + self.page_size
        body: dict[str, Any] = {"totalSize": total, "done": end >= len(snapshot),
                                "records": snapshot[offset:end]}
        if end < len(snapshot):
            key = f"01gFAKE{next(self._locator_seq):08d}"
            self.locators[key] = snapshot
            body["nextRecordsUrl"] = f"/services/data/v{self.api_version}/query/{key}-{end}"
        return body

    def _query_more(self, locator: str) -> Response:
        key, _, offset = locator.rpartition("-")
        snapshot = self.locators.get(key)
        if snapshot is None or not offset.isdigit():
            return _err(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._json(self._page(snapshot, int(offset), len(snapshot)))

    # -- describe / deleted ----------------------------------------------------------------------------------

    def _describe(self, object_type: str) -> Response:
        if object_type not in self.schema:
            return _err(404, "NOT_FOUND", "The requested resource does not exist")
        return self._json({"name": object_type, "fields": list(self.schema[object_type].values())})

    def _deleted(self, object_type: str, params: dict[str, str]) -> Response:
        try:
            start = datetime.fromisoformat(params["start"]).astimezone(UTC)
            end = datetime.fromisoformat(params["end"]).astimezone(UTC)
        except (KeyError, ValueError):
            return _err(400, "INVALID_REPLICATION_DATE", "start and end are required ISO 8601 date-times")
        earliest = self.now - timedelta(days=15)
        if end - start <= timedelta(minutes=1) or start < earliest:
            return _err(400, "INVALID_REPLICATION_DATE", "startDate before earliestDateAvailable or too close")
        items = [{"id": rid, "deletedDate": self.rest_datetime(when)}
                 for obj, rid, when in self.deleted_log if obj == object_type and start <= when <= end]
        return self._json({"deletedRecords": items, "earliestDateAvailable": self.rest_datetime(earliest),
                           "latestDateCovered": self.rest_datetime(min(end, self.now))})

    # -- collections -----------------------------------------------------------------------------------------

    def _collections(self, method: str, rest: list[str], params: dict[str, str], payload: Any) -> Response:
        if method == "DELETE":
            ids = [i for i in params.get("ids", "").split(",") if i]
            if len(ids) > 200:
                return _err(400, "EXCEEDED_ID_LIMIT", "record limit reached: cannot delete more than 200")
            return self._json([self.delete_one(i) for i in ids])
        records = (payload or {}).get("records", [])
        if len(records) > 200:
            return _err(400, "EXCEEDED_ID_LIMIT", "record limit reached: cannot submit more than 200 records")
        if method == "PATCH" and len(rest) == 2:
            return self._json([self.upsert_one(rest[0], rest[1], r) for r in records])
        if method == "PATCH":
            return self._json([self.update_one(r) for r in records])
        if method == "POST":
            return self._json([self.create_one(r) for r in records])
        return _err(405, "METHOD_NOT_ALLOWED", method)

    # -- Bulk API 2.0 ----------------------------------------------------------------------------------------

    def _jobs(self, method: str, rest: list[str], params: dict[str, str], payload: Any) -> Response:
        if method == "POST" and not rest:
            try:
                query = parse(payload["query"])
            except (SoqlError, KeyError, TypeError) as exc:
                return _err(400, "INVALIDJOB", f"bad query: {exc}")
            job_id = f"750FAKE{next(self._job_seq):011d}"
            self.jobs[job_id] = {"id": job_id, "operation": payload.get("operation", "query"),
                                 "object": query.object_type, "query": query, "state": "UploadComplete",
                                 "polls": 0, "rows": None}
            return self._json({k: v for k, v in self.jobs[job_id].items() if k in ("id", "operation", "object",
                                                                                    "state")})
        job = self.jobs.get(rest[0]) if rest else None
        if job is None:
            return _err(404, "NOT_FOUND", "The requested resource does not exist")
        if len(rest) == 1 and method == "GET":
            if job["state"] in ("UploadComplete", "InProgress"):
                job["polls"] += 1
                job["state"] = "InProgress"
                if job["polls"] >= self.job_polls_to_complete:
                    job["state"] = "Failed" if self.fail_jobs else "JobComplete"
                    if job["state"] == "JobComplete":
                        job["rows"] = self.bulk_rows(job["query"], include_deleted=job["operation"] == "queryAll")
            info = {"id": job["id"], "operation": job["operation"], "object": job["object"],
                    "state": job["state"]}
            if job["state"] == "Failed":
                info["errorMessage"] = "InternalServerError: job failed (injected)"
            return self._json(info)
        if len(rest) == 2 and rest[1] == "results" and method == "GET":
            if job["state"] != "JobComplete":
                return _err(400, "INVALIDJOBSTATE", f"job is {job['state']}")
            return self._results(job, params)
        return _err(405, "METHOD_NOT_ALLOWED", method)

    def _results(self, job: dict[str, Any], params: dict[str, str]) -> Response:
        offset = int(base64.b64decode(params["locator"]).decode()) if params.get("locator") else 0
        size = int(params.get("maxRecords") or self.bulk_chunk)
        query = job["query"]
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(query.fields)
        count = 0
        total = job["rows"][0]
        for row in job["rows"][1](offset, size):
            writer.writerow([self.csv_value(query.object_type, name, row.get(name)) for name in query.fields])
            count += 1
        nxt = offset + count
        locator = base64.b64encode(str(nxt).encode()).decode() if nxt < total else "null"
        headers = {"Content-Type": "text/csv", "Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)}
        if self.break_results_after is not None:
            cut, self.break_results_after = self.break_results_after, None
            body = io.BufferedReader(_BreakingRaw(out.getvalue().encode(), cut))
            return 200, headers, body  # type: ignore[return-value]
        return 200, headers, out.getvalue()


class _BreakingRaw(io.RawIOBase):
    """A raw stream whose connection drops after ``cut`` bytes."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut, self.pos = data, cut, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.cut:
            raise ConnectionResetError("connection reset by peer (injected mid-body)")
        n = min(len(buffer), self.cut - self.pos, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n
