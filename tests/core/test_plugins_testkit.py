"""The test kit itself: register_plugin, no_sleep, FakeCRM (paging, 429 with Retry-After, tokens, faults)."""

from __future__ import annotations

import httpx
import pytest

from cxbridge import hookimpl
from cxbridge.errors import PluginError
from cxbridge.http import build_client
from cxbridge.plugins import plugin_info
from cxbridge.testing import FakeCRM, register_plugin


class Traits:
    @hookimpl
    def register_traits(self):
        return []


def _registered(pm) -> set[str]:
    return {i.name for i in plugin_info(pm) if i.kind == "registered"}


def test_register_plugin_fixture_as_context_manager(plugin_manager, register_plugin):
    with register_plugin(Traits(), name="temp") as name:
        assert name == "temp"
        assert _registered(plugin_manager) == {"temp"}
    assert _registered(plugin_manager) == set()


def test_register_plugin_fixture_plain_call_stays_until_teardown(plugin_manager, register_plugin):
    registration = register_plugin(Traits(), name="kept")
    assert _registered(plugin_manager) == {"kept"}
    registration.close()
    assert _registered(plugin_manager) == set()


def test_register_plugin_rejects_misspelled_hooks_and_leaves_no_trace(plugin_manager):
    class Typo:
        @hookimpl
        def register_trait(self):
            return []

    with pytest.raises(PluginError, match="did you mean 'register_traits'"):
        with register_plugin(plugin_manager, Typo(), name="typo"):
            pass  # pragma: no cover
    assert _registered(plugin_manager) == set()


def test_no_sleep_records_retry_waits(fake_crm, no_sleep, no_sleep_retry):
    fake_crm.route("GET", "/v1/ping", json_body={"ok": True})
    fake_crm.inject_429(times=2, retry_after=7, path="/v1/ping")
    with build_client(base_url=fake_crm.base_url, transport=fake_crm.transport(), retry=no_sleep_retry) as client:
        response = client.get("/v1/ping")
    assert response.json() == {"ok": True}
    assert no_sleep.calls == [7, 7]
    assert [r.url.path for r in fake_crm.requests] == ["/v1/ping"] * 3


def test_fake_crm_pages_with_limit_and_after(fake_crm):
    records = [{"id": str(i)} for i in range(250)]
    fake_crm.add_paged("/v1/items", records, max_page_size=100)
    seen: list[str] = []
    after = None
    with fake_crm.client() as client:
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            body = client.get("/v1/items", params=params).json()
            seen += [r["id"] for r in body["results"]]
            after = body.get("paging", {}).get("next", {}).get("after")
            if after is None:
                break
        assert seen == [str(i) for i in range(250)]
        assert len(fake_crm.calls_to("/v1/items")) == 3
        too_big = client.get("/v1/items", params={"limit": 101})
        assert too_big.status_code == 400
        assert "at most 100" in too_big.json()["message"]


def test_fake_crm_paged_post_reads_the_json_body_and_sees_live_changes(fake_crm):
    records = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    fake_crm.add_paged("/v1/search", records, method="POST", max_page_size=2, oversize="cap")
    with fake_crm.client() as client:
        first = client.post("/v1/search", json={"limit": 5}).json()
        assert [r["id"] for r in first["results"]] == ["a", "b"]
        records.insert(0, {"id": "new"})  # a record appearing while paging shifts the offsets, as in real APIs
        second = client.post("/v1/search", json={"limit": 2, "after": first["paging"]["next"]["after"]}).json()
    assert [r["id"] for r in second["results"]] == ["b", "c"]
    assert "paging" not in second


def test_fake_crm_tokens_expire_and_refresh(fake_crm):
    fake_crm.require_token = True
    fake_crm.add_token_endpoint("/oauth/token", client_id="app", client_secret="pw", refresh_token="rt")
    fake_crm.route("GET", "/v1/me", json_body={"me": 1})

    class RefreshingAuth(httpx.Auth):
        def __init__(self) -> None:
            self.token: str | None = None

        def refresh(self):
            data = {
                "grant_type": "refresh_token",
                "client_id": "app",
                "client_secret": "pw",
                "refresh_token": "rt",
            }
            return httpx.Request("POST", f"{fake_crm.base_url}/oauth/token", data=data)

        def auth_flow(self, request):
            if self.token is None:
                self.token = (yield self.refresh()).json()["access_token"]
            request.headers["Authorization"] = f"Bearer {self.token}"
            response = yield request
            if response.status_code == 401:
                self.token = (yield self.refresh()).json()["access_token"]
                request.headers["Authorization"] = f"Bearer {self.token}"
                yield request

    with fake_crm.client(auth=RefreshingAuth()) as client:
        assert client.get("/v1/me").json() == {"me": 1}
        fake_crm.expire_tokens()
        assert client.get("/v1/me").json() == {"me": 1}
        assert client.get("/v1/me", auth=None).status_code == 401
        bad = client.post("/oauth/token", data={"client_id": "app", "client_secret": "nope"}, auth=None)
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid_client"})
    assert fake_crm.tokens_issued == 2
    statuses = [(r.method, r.url.path) for r in fake_crm.requests]
    assert statuses[:5] == [
        ("POST", "/oauth/token"),
        ("GET", "/v1/me"),
        ("GET", "/v1/me"),
        ("POST", "/oauth/token"),
        ("GET", "/v1/me"),
    ]


def test_fake_crm_faults_errors_disconnects_and_unknown_routes(fake_crm):
    fake_crm.route("GET", "/v1/a", json_body={"a": 1})
    fake_crm.inject_error(503, times=1, path="/v1/a", after=1)
    fake_crm.inject_disconnect(times=1, method="POST")
    with fake_crm.client() as client:
        assert client.get("/v1/a").status_code == 200  # the fault skips the first matching request
        assert client.get("/v1/a").status_code == 503
        assert client.get("/v1/a").status_code == 200
        with pytest.raises(httpx.ConnectError):
            client.post("/v1/a")
        missing = client.get("/v1/missing")
    assert missing.status_code == 404
    assert fake_crm.request_count == 5


def test_fake_crm_429_with_http_date_retry_after(no_sleep):
    crm = FakeCRM("https://other.test")
    crm.route("GET", "/x", json_body={})
    crm.inject_429(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    with crm.client() as client:
        response = client.get("/x")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
