"""Bearer-token authentication for routes registered with ``auth=True`` (dashboard, admin endpoints)."""

from __future__ import annotations

import hmac
import json
from typing import Any

__all__ = ["BearerAuthMiddleware"]


class BearerAuthMiddleware:
    """ASGI middleware: pass requests carrying ``Authorization: Bearer <token>``, answer 401 otherwise.

    With no token configured every request is refused: an endpoint that asks for authentication is never
    served openly by accident.
    """

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is not None and self._authorized(scope):
            await self.app(scope, receive, send)
            return
        message = "authentication required" if self._token is not None else "no auth token configured"
        body = json.dumps({"error": "unauthorized", "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="cxbridge"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Any) -> bool:
        assert self._token is not None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token)
        return False
