"""The web app on a real HTTP server (uvicorn on 127.0.0.1, random port)."""

from __future__ import annotations

import types

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from cxbridge import hookimpl
from cxbridge.errors import PluginError
from cxbridge.hooktypes import RouteInfo
from cxbridge.web import MetricFamily, ServerThread, build_app, render

TOKEN = "s3cret-dashboard-token"


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"pong": request.query_params.get("n", "")})


async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"admin": True})


def sync_echo(request: Request) -> JSONResponse:  # sync endpoints run in the thread pool
    return JSONResponse({"path": request.url.path})


def _route_plugin() -> types.ModuleType:
    plugin = types.ModuleType("routes_plugin")

    @hookimpl
    def register_routes():
        return [
            RouteInfo(path="/demo/ping", endpoint=ping, name="demo-ping"),
            RouteInfo(path="/demo/admin", endpoint=admin, name="demo-admin", auth=True),
            RouteInfo(path="/demo/echo/{item}", endpoint=sync_echo, methods=("GET", "POST"), name="demo-echo"),
        ]

    plugin.register_routes = register_routes  # type: ignore[attr-defined]
    return plugin


class Bridge:
    def __init__(self) -> None:
        self.state = {"status": "ok", "sources": {"shop": "idle"}}

    def health(self):
        return self.state

    def metrics(self):
        return [
            MetricFamily("cxbridge_records_read_total", "counter", "Records read.").add(42, {"source": "shop"})
        ]


@pytest.fixture
def server(plugin_manager, register_plugin):
    register_plugin(_route_plugin(), name="routes")
    bridge = Bridge()
    app = build_app(plugin_manager, bridge=bridge, auth_token=TOKEN)
    with ServerThread(app) as running:
        running.bridge = bridge  # type: ignore[attr-defined]
        yield running


def test_health_and_plugin_routes_over_http(server):
    with httpx.Client(base_url=server.url) as client:
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok"
        assert body["sources"] == {"shop": "idle"}
        assert body["plugin_load_failures"] == []
        assert client.get("/demo/ping", params={"n": "7"}).json() == {"pong": "7"}
        assert client.post("/demo/echo/abc").json() == {"path": "/demo/echo/abc"}
        assert client.delete("/demo/ping").status_code == 405
        assert client.get("/nothing-here").status_code == 404


def test_auth_routes_need_the_bearer_token(server):
    with httpx.Client(base_url=server.url) as client:
        missing = client.get("/demo/admin")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/demo/admin", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/demo/admin", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        ok = client.get("/demo/admin", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (ok.status_code, ok.json()) == (200, {"admin": True})
        # routes without auth=True stay open
        assert client.get("/demo/ping").status_code == 200


def test_unhealthy_bridge_answers_503(server):
    server.bridge.state = {"status": "degraded", "sources": {"shop": "failing"}}
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


def test_metrics_count_requests_and_include_bridge_metrics(server):
    with httpx.Client(base_url=server.url) as client:
        client.get("/demo/ping")
        client.get("/demo/ping")
        client.get("/demo/admin")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert 'cxbridge_http_requests_total{method="GET",route="demo-ping",status="200"} 2' in lines
    assert 'cxbridge_http_requests_total{method="GET",route="demo-admin",status="401"} 1' in lines
    assert 'cxbridge_records_read_total{source="shop"} 42' in lines
    assert "# TYPE cxbridge_records_read_total counter" in lines
    assert any(line.startswith('cxbridge_info{version="') for line in lines)


def test_auth_routes_are_refused_when_no_token_is_configured(plugin_manager, register_plugin):
    register_plugin(_route_plugin(), name="routes")
    with ServerThread(build_app(plugin_manager)) as running:
        response = httpx.get(f"{running.url}/demo/admin", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 401
        assert response.json()["message"] == "no auth token configured"


def test_plugin_route_on_a_reserved_path_is_refused(plugin_manager, register_plugin):
    plugin = types.ModuleType("bad_routes")

    @hookimpl
    def register_routes():
        return [RouteInfo(path="/metrics", endpoint=ping, name="my-metrics")]

    plugin.register_routes = register_routes  # type: ignore[attr-defined]
    register_plugin(plugin, name="bad")
    with pytest.raises(PluginError, match="reserved"):
        build_app(plugin_manager)


def test_render_escapes_label_values_and_help():
    family = MetricFamily("x_total", "counter", "help with \\ and\nnewline").add(1.5, {"a": 'q"b\\c\nd'})
    assert render([family]) == (
        '# HELP x_total help with \\\\ and\\nnewline\n# TYPE x_total counter\nx_total{a="q\\"b\\\\c\\nd"} 1.5\n'
    )
    with pytest.raises(ValueError):
        MetricFamily("bad-name", "gauge", "")
