"""The web app: plugin routes, ``/health`` and ``/metrics``.

:func:`build_app` mounts every route plugins register (``register_routes``) next to two built-in ones:

``GET /health``
    JSON ``{"status": "ok", "version": ..., "plugins": n, "plugin_load_failures": [...]}``; when a ``bridge``
    with a ``health()`` method is given, its mapping is merged in and a ``status`` other than ``ok`` answers
    503 (so load balancers and ``docker`` health checks see it).
``GET /metrics``
    Prometheus text exposition: request counts per route and status, plugin counts, and every family
    returned by ``bridge.metrics()`` and by the ``metrics_sources`` callables.

Routes registered with ``auth=True`` require ``Authorization: Bearer <auth_token>``; without a configured
token they are refused. Webhook routes verify their own signatures instead (``auth=False``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .metrics import CONTENT_TYPE, MetricFamily, Metrics, render

if TYPE_CHECKING:
    import pluggy
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["RESERVED_PATHS", "build_app"]

logger = logging.getLogger("cxbridge.web")

#: Paths served by cxbridge itself; plugins cannot register them.
RESERVED_PATHS = ("/health", "/metrics")

MetricsSource = Callable[[], Iterable[MetricFamily]]


def build_app(
    pm: pluggy.PluginManager,
    *,
    bridge: Any = None,
    auth_token: str | None = None,
    metrics: Metrics | None = None,
    metrics_sources: Iterable[MetricsSource] = (),
) -> Starlette:
    """Build the Starlette app.

    Args:
        pm: the plugin manager whose ``register_routes`` results are mounted.
        bridge: the running bridge, optional; its ``health()`` (mapping) and ``metrics()`` (metric families)
            are used when it has them. It is also ``app.state.bridge``, where plugin endpoints (the HubSpot
            webhook receiver) find the workspace; ``app.state.metrics`` is the request-metrics registry.
        auth_token: the bearer token for ``auth=True`` routes (from the config; a secret).
        metrics: where request metrics are counted (a new :class:`Metrics` by default); the daemon passes the
            registry its scheduler also writes to.
        metrics_sources: more callables returning metric families, evaluated on every scrape.

    Raises:
        PluginError: a plugin route is invalid, duplicated, or takes a reserved path.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from .. import __version__
    from ..plugins import collect_routes, load_failures, plugin_info
    from .auth import BearerAuthMiddleware

    registry = metrics if metrics is not None else Metrics()
    sources = list(metrics_sources)
    routes_info = collect_routes(pm, reserved_paths=RESERVED_PATHS)
    n_plugins = len(plugin_info(pm))
    failures = load_failures(pm)

    async def health(request: Request) -> Response:
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "plugins": n_plugins,
            "plugin_load_failures": [f.name for f in failures],
        }
        code = 200
        if bridge is not None and hasattr(bridge, "health"):
            try:  # store queries: in a worker thread, so webhook answers are not held up
                extra = dict(await run_in_threadpool(bridge.health))
            except Exception as exc:  # health must answer even when the bridge cannot
                logger.exception("bridge.health() failed")
                extra = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            body.update(extra)
            code = 200 if body.get("status") == "ok" else 503
        return JSONResponse(body, status_code=code)

    async def metrics_endpoint(request: Request) -> Response:
        families: list[MetricFamily] = [
            MetricFamily("cxbridge_info", "gauge", "cxbridge version.").add(1, {"version": __version__}),
            MetricFamily("cxbridge_plugins", "gauge", "Registered plugins.").add(n_plugins),
            MetricFamily("cxbridge_plugin_load_failures", "gauge", "Installed plugins that failed to load.").add(
                len(failures)
            ),
            *registry.collect(),
        ]
        extra_sources = list(sources)
        if bridge is not None and hasattr(bridge, "metrics"):
            extra_sources.append(bridge.metrics)
        for source in extra_sources:
            try:
                families.extend(await run_in_threadpool(source))
            except Exception:
                logger.exception("metrics source %r failed", source)
                registry.inc(
                    "cxbridge_metrics_source_errors_total", "Metrics sources that raised during a scrape."
                )
        return PlainTextResponse(render(families), media_type=CONTENT_TYPE)

    routes: list[Route] = [
        Route("/health", health, methods=["GET", "HEAD"], name="health"),
        Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics"),
    ]
    for key, info in routes_info.items():
        middleware = [Middleware(BearerAuthMiddleware, token=auth_token)] if info.auth else None
        routes.append(Route(info.path, info.endpoint, methods=list(info.methods), name=key, middleware=middleware))
        if info.auth and not auth_token:
            logger.warning("route %s requires authentication but no auth token is configured; it answers 401", key)

    app = Starlette(routes=routes)
    # Plugin endpoints (e.g. the HubSpot webhook receiver) find the workspace here.
    app.state.bridge = bridge
    app.state.metrics = registry
    app.add_middleware(_RequestMetrics, metrics=registry)
    return app


class _RequestMetrics:
    """Counts requests per route name, method and status, and their total duration."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        started = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "name", None) or "unmatched"
            labels = {"route": name, "method": scope.get("method", ""), "status": status["code"]}
            self.metrics.inc("cxbridge_http_requests_total", "HTTP requests served.", labels=labels)
            self.metrics.inc(
                "cxbridge_http_request_seconds_total",
                "Seconds spent serving HTTP requests.",
                time.perf_counter() - started,
                labels={"route": name},
            )
