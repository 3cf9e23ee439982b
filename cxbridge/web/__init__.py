"""The cxbridge web app (health, metrics, plugin routes) and a threaded uvicorn runner."""

from __future__ import annotations

from .app import RESERVED_PATHS, build_app
from .metrics import MetricFamily, Metrics, render
from .server import ServerThread

__all__ = ["RESERVED_PATHS", "MetricFamily", "Metrics", "ServerThread", "build_app", "render"]
