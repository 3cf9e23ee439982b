"""``cxbridge web``: serve the web app (webhooks, plugin pages, ``/health``, ``/metrics``) for a workspace."""

from __future__ import annotations

import signal

import typer

from .context import get_state

__all__ = ["register", "web"]


def web(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="Address to listen on (default: daemon.host)."),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="Port (default: daemon.port; 0 = any free)."),
) -> None:
    """Serve the web app: webhook receivers, plugin routes, /health and /metrics.

    Listens on daemon.host:daemon.port of the configuration; routes that need authentication use
    daemon.auth_token. SIGTERM or Ctrl-C stop accepting connections, let running requests (and the
    webhook re-reads they started) finish within daemon.shutdown_timeout_seconds, then exit.
    """
    import logging
    import socket

    import uvicorn

    from ..bridge import Bridge
    from ..errors import ConfigError
    from ..store import open_store
    from ..web import build_app

    state = get_state(ctx)
    config = state.load_config()
    pm = state.plugin_manager()
    daemon = config.daemon
    bind_host = host or daemon.host
    bind_port = daemon.port if port is None else port
    token = daemon.auth_token.get_secret_value() if daemon.auth_token is not None else None

    logging.basicConfig(level=logging.DEBUG if state.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bridge = Bridge(config, open_store(config.store.url, base_dir=config.workspace), pm)
    try:
        app = build_app(pm, bridge=bridge, auth_token=token)
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, bind_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {bind_host}:{bind_port}: {exc.strerror or exc}",
                              key="daemon.port") from exc
        sock.listen(2048)  # connections made from now on wait in the backlog until uvicorn accepts them
        bound_port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(
            app, log_level="debug" if state.debug else "info", lifespan="on",
            timeout_graceful_shutdown=int(daemon.shutdown_timeout_seconds) or 1,
        ))
        shown = f"[{bind_host}]" if family == socket.AF_INET6 else bind_host
        typer.echo(f"cxbridge web: serving http://{shown}:{bound_port}"
                   + (f" (public URL {daemon.public_url})" if daemon.public_url else ""), err=True)
        received: list[int] = []
        # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal with the handler it
        # found; this one records it, so a requested stop ends with exit status 0 instead of a kill.
        previous = {sig: signal.signal(sig, lambda s, f: received.append(s)) for sig in
                    (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
        if received:
            typer.echo("cxbridge web: stopped", err=True)
    finally:
        bridge.close()


def register(app: typer.Typer) -> None:
    """Add ``web`` to the CLI."""
    app.command("web")(web)
