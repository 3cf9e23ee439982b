"""The HTTP client factory: retries against a real local HTTP server, plus respx for the finer rules."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import respx

from cxbridge.http import ApiStats, build_client
from cxbridge.retry import RecordingSleep, RetryPolicy, parse_retry_after

# ----------------------------------------------------------------------------------------------------------
# A scripted real server: each request to a path takes the next step of that path's script.
# ----------------------------------------------------------------------------------------------------------

Step = tuple[int, dict[str, str], bytes] | str  # (status, headers, body) or "drop-before" / "drop-mid-body"


class ScriptedServer:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Step]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._handle()

            def _handle(self) -> None:
                server.hits.append(self.path)
                script = server.scripts.get(self.path.split("?")[0], [])
                step: Step = script.pop(0) if script else (200, {}, b'{"ok": true}')
                if step == "drop-before":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if step == "drop-mid-body":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"results": [1, 2')
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                assert not isinstance(step, str)
                status, headers, body = step
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


def policy(**kw: Any) -> RetryPolicy:
    return RetryPolicy.no_sleep(**kw)


def sleeps(p: RetryPolicy) -> list[float]:
    assert isinstance(p.sleep, RecordingSleep)
    return p.sleep.calls


def test_503_with_retry_after_is_retried_and_honoured(server: ScriptedServer) -> None:
    server.scripts["/contacts"] = [
        (503, {"Retry-After": "7"}, b"busy"),
        (503, {"Retry-After": "2"}, b"busy"),
        (200, {"Content-Type": "application/json"}, b'{"results": [1, 2, 3]}'),
    ]
    p = policy()
    with build_client(base_url=server.url, retry=p) as client:
        response = client.get("/contacts")
    assert response.status_code == 200 and response.json() == {"results": [1, 2, 3]}
    assert sleeps(p) == [7.0, 2.0]
    assert server.hits == ["/contacts"] * 3
    assert client.api_calls == 3 and client.stats.retries == 2 and client.stats.by_status == {503: 2, 200: 1}


def test_retry_after_is_capped_at_max_wait(server: ScriptedServer) -> None:
    server.scripts["/x"] = [(429, {"Retry-After": "3600"}, b""), (200, {}, b"{}")]
    p = policy(max_wait=30)
    with build_client(base_url=server.url, retry=p) as client:
        assert client.get("/x").status_code == 200
    assert sleeps(p) == [30.0]


def test_connection_dropped_before_response_is_retried(server: ScriptedServer) -> None:
    server.scripts["/x"] = ["drop-before", (200, {}, b'{"n": 1}')]
    p = policy(base=0.25)
    with build_client(base_url=server.url, retry=p) as client:
        assert client.get("/x").json() == {"n": 1}
    assert sleeps(p) == [0.25]  # exponential backoff (no Retry-After for a transport error)
    assert client.stats.calls == 2 and client.stats.errors == 1


def test_connection_dropped_mid_body_is_retried(server: ScriptedServer) -> None:
    server.scripts["/x"] = ["drop-mid-body", "drop-mid-body", (200, {}, b'{"results": [1, 2, 3]}')]
    p = policy(base=1)
    with build_client(base_url=server.url, retry=p) as client:
        assert client.get("/x").json() == {"results": [1, 2, 3]}
    assert sleeps(p) == [1.0, 2.0]
    assert server.hits == ["/x"] * 3


def test_400_is_not_retried(server: ScriptedServer) -> None:
    server.scripts["/x"] = [(400, {}, b'{"message": "bad property"}'), (200, {}, b"{}")]
    p = policy()
    with build_client(base_url=server.url, retry=p) as client:
        response = client.get("/x")
    assert response.status_code == 400 and response.json() == {"message": "bad property"}
    assert sleeps(p) == [] and server.hits == ["/x"]


def test_max_attempts_returns_last_response(server: ScriptedServer) -> None:
    server.scripts["/x"] = [(502, {}, b"bad gateway %d" % i) for i in range(10)]
    p = policy(max_attempts=4, base=0.5)
    with build_client(base_url=server.url, retry=p) as client:
        response = client.get("/x")
    assert response.status_code == 502 and response.text == "bad gateway 3"
    assert sleeps(p) == [0.5, 1.0, 2.0]
    assert len(server.hits) == 4


def test_max_attempts_reraises_transport_error(server: ScriptedServer) -> None:
    server.scripts["/x"] = ["drop-before"] * 5
    p = policy(max_attempts=3)
    with build_client(base_url=server.url, retry=p) as client, pytest.raises(httpx.TransportError):
        client.get("/x")
    assert len(server.hits) == 3 and len(sleeps(p)) == 2


def test_post_body_is_resent_on_retry(server: ScriptedServer) -> None:
    server.scripts["/batch"] = [(500, {}, b""), (200, {}, b'{"status": "COMPLETE"}')]
    p = policy()
    with build_client(base_url=server.url, retry=p) as client:
        assert client.post("/batch", json={"inputs": [{"id": "1"}]}).json() == {"status": "COMPLETE"}
    assert server.hits == ["/batch", "/batch"]


def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = policy(max_attempts=2)
    with build_client(base_url=f"http://127.0.0.1:{port}", retry=p) as client, pytest.raises(httpx.ConnectError):
        client.get("/x")
    assert client.api_calls == 2


# ----------------------------------------------------------------------------------------------------------
# respx: classification hooks, HTTP-date Retry-After, jitter, pacing, stats
# ----------------------------------------------------------------------------------------------------------


def mock_client(router: respx.Router, **kw: Any) -> Any:
    return build_client(base_url="https://api.example.com", transport=httpx.MockTransport(router.handler), **kw)


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    router = respx.Router()
    router.get("/x").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": format_datetime(now + timedelta(seconds=42), usegmt=True)}
            ),
            httpx.Response(200, json={}),
        ]
    )
    p = policy(now=lambda: now)
    with mock_client(router, retry=p) as client:
        assert client.get("/x").status_code == 200
    assert sleeps(p) == [42.0]
    assert parse_retry_after("garbage") is None and parse_retry_after("-5") == 0.0


def test_extra_statuses_and_custom_classify_and_wait_for() -> None:
    # HubSpot: 423 Locked is retryable for that adapter; its TEN_SECONDLY_ROLLING 429 waits the rest of the window.
    router = respx.Router()
    router.get("/locked").mock(side_effect=[httpx.Response(423), httpx.Response(200, json={})])
    router.get("/secondly").mock(
        side_effect=[
            httpx.Response(429, json={"policyName": "TEN_SECONDLY_ROLLING"}),
            httpx.Response(200, json={}),
        ]
    )
    router.get("/daily").mock(return_value=httpx.Response(429, json={"policyName": "DAILY"}))

    def classify(response: httpx.Response) -> Any:
        if response.status_code == 429 and response.json().get("policyName") == "DAILY":
            return "fatal"  # no point retrying until midnight
        return (
            "retry" if response.status_code in (423, 429) else ("fatal" if response.status_code >= 400 else "ok")
        )

    def wait_for(response: httpx.Response) -> float | None:
        if response.status_code == 429 and response.json().get("policyName") == "TEN_SECONDLY_ROLLING":
            return 10.0
        return None

    p = policy(classify=classify, wait_for=wait_for, base=0.5)
    with mock_client(router, retry=p) as client:
        assert client.get("/locked").status_code == 200
        assert client.get("/secondly").status_code == 200
        assert client.get("/daily").status_code == 429
    assert sleeps(p) == [0.5, 10.0]
    assert router.routes[2].call_count == 1

    plain = policy().with_statuses(423)
    assert 423 in plain.retry_statuses and 429 in plain.retry_statuses


def test_jitter_stays_within_half_and_full_delay() -> None:
    import random

    p = RetryPolicy(base=1, max_wait=8, rng=random.Random(7), sleep=RecordingSleep())
    delays = [p.backoff(n) for n in range(1, 7)]
    for n, d in enumerate(delays, start=1):
        full = min(8, 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert len(set(delays)) == len(delays)  # actually random


def test_budget_is_taken_for_every_attempt_and_stats_shared() -> None:
    class CountingBudget:
        def __init__(self) -> None:
            self.taken = 0

        def acquire(self, cost: int = 1) -> None:
            self.taken += cost

    router = respx.Router()
    router.get("/x").mock(side_effect=[httpx.Response(500), httpx.Response(200, json={})] * 2)
    budget, stats = CountingBudget(), ApiStats()
    with (
        mock_client(router, retry=policy(), budget=budget, stats=stats) as a,
        mock_client(router, retry=policy(), budget=budget, stats=stats) as b,
    ):
        a.get("/x")
        b.get("/x")
    assert budget.taken == 4 and stats.calls == 4 and stats.snapshot()["by_status"] == {500: 2, 200: 2}


def test_classify_may_raise_an_adapter_error() -> None:
    from cxbridge.errors import AuthError

    def classify(response: httpx.Response) -> Any:
        if response.status_code == 401:
            raise AuthError("token rejected", source="crm")
        return "ok"

    router = respx.Router()
    router.get("/x").mock(return_value=httpx.Response(401))
    with mock_client(router, retry=policy(classify=classify)) as client, pytest.raises(AuthError):
        client.get("/x")
    assert router.routes[0].call_count == 1


def test_request_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    router = respx.Router()
    router.get(url__regex=r".*").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={})])
    secret = "hapi-7a7a7a7a-secret"
    caplog.set_level("DEBUG", logger="cxbridge")
    with mock_client(router, retry=policy(), secrets=[secret], name="crm") as client:
        client.get("/contacts", params={"hapikey": secret, "limit": 100})
    lines = [r.getMessage() for r in caplog.records if r.name == "cxbridge.http"]
    assert any("GET https://api.example.com/contacts?hapikey=***&limit=100 -> 503" in line for line in lines)
    assert any("-> 200" in line for line in lines)
    assert all(secret not in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------------------------
# TLS
# ----------------------------------------------------------------------------------------------------------


def _transport_context(client: httpx.Client) -> ssl.SSLContext:
    transport: Any = client._transport  # the RetryTransport
    pool = transport.wrapped._pool
    ctx: ssl.SSLContext = pool._ssl_context
    return ctx


def test_custom_verify_context_is_used() -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with build_client(base_url="https://crm.example", verify=ctx) as client:
        assert _transport_context(client) is ctx


def test_ssl_cert_file_from_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    loaded: list[Any] = []
    original = ssl.SSLContext.load_verify_locations

    def spy(self: ssl.SSLContext, cafile: Any = None, capath: Any = None, cadata: Any = None) -> None:
        loaded.append(cafile)
        original(self, cafile, capath, cadata)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
    with build_client(base_url="https://crm.example"):
        pass
    assert certifi.where() in [str(x) for x in loaded if x]


# ----------------------------------------------------------------------------------------------------------
# Errors built from vendor answers
# ----------------------------------------------------------------------------------------------------------


def test_error_for_response_classifies_and_redacts() -> None:
    from cxbridge.errors import AuthError, RateLimited, RemoteError
    from cxbridge.http import error_for_response, raise_for_response

    secret = "pat-na1-0123456789"
    request = httpx.Request("GET", f"https://api.example.com/crm?hapikey={secret}")
    body = {"status": "error", "message": f"token {secret} is expired", "correlationId": "c-1"}

    auth = error_for_response(httpx.Response(401, json=body, request=request), source="hs", secrets=[secret])
    assert isinstance(auth, AuthError) and auth.kind == "config" and auth.status == 401
    assert secret not in str(auth) and auth.url == "https://api.example.com/crm?hapikey=***"
    assert str(auth).startswith("source 'hs': HTTP 401 from GET https://api.example.com/crm?hapikey=***")

    limited = error_for_response(httpx.Response(429, headers={"Retry-After": "10"}, request=request))
    assert isinstance(limited, RateLimited) and limited.retry_after == 10.0

    server = error_for_response(httpx.Response(502, text="x" * 2000, request=request), max_body=100)
    assert isinstance(server, RemoteError) and server.kind == "transient" and len(server.body or "") == 103
    bad = error_for_response(httpx.Response(400, json={"message": "Property 'cx_tier' does not exist"}))
    assert isinstance(bad, RemoteError) and bad.kind == "config" and "cx_tier" in str(bad)

    ok = httpx.Response(200, json={}, request=request)
    assert raise_for_response(ok) is ok
    with pytest.raises(AuthError):
        raise_for_response(httpx.Response(403, request=request))


def test_adapter_refinements_keep_the_given_policy() -> None:
    router = respx.Router()
    router.get("/x").mock(side_effect=[httpx.Response(423), httpx.Response(477), httpx.Response(200, json={})])
    p = policy(base=1)
    with mock_client(
        router, retry=p, retry_statuses=[423, 477], wait_for=lambda r: 3.0 if r.status_code == 477 else None
    ) as c:
        assert c.get("/x").status_code == 200
    assert sleeps(p) == [1.0, 3.0]  # the framework's (recording) sleep was kept
