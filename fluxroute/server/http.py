"""Streamable HTTP: the MCP endpoint at /mcp (loopback by default, a bearer token when configured), the
provider webhooks and /health beside it."""

from __future__ import annotations

import hmac
import ipaddress
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from fluxroute.errors import ConfigError

MCP_PATH = "/mcp"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_app(server: MCPServer, host: str = "127.0.0.1", token: SecretStr | None = None) -> ASGIApp:
    """The ASGI app `fluxroute serve --http` runs. With `token`, /mcp answers 401 without
    `Authorization: Bearer <token>`; the webhooks authenticate themselves (fal signs, Krea is re-checked)."""
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    return BearerToken(app, token) if token is not None else app


class BearerToken:
    """Requires `Authorization: Bearer <token>` on the MCP endpoint (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self._expected = f"Bearer {token.get_secret_value()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(MCP_PATH):
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await _unauthorized(send)
                return
        await self.app(scope, receive, send)


async def _unauthorized(send: Send) -> None:
    body = b'{"error": "missing or wrong bearer token"}'
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"www-authenticate", b'Bearer realm="fluxroute"'),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_http(
    server: MCPServer, host: str, port: int, *, allow_remote: bool = False, token: SecretStr | None = None
) -> None:
    """Run Streamable HTTP until interrupted.

    Raises:
        ConfigError: `host` is not a loopback address and `allow_remote` was not given.
    """
    import uvicorn

    if not is_loopback(host):
        if not allow_remote:
            raise ConfigError(
                f"--host {host} would accept connections from other machines; pass --allow-remote to mean it "
                "(and set FLUXROUTE_SERVER_TOKEN so they need a bearer token)"
            )
        if token is None:
            print(
                f"warning: serving MCP on {host}:{port} without a bearer token; anyone who can reach it can "
                "spend your provider credits. Set FLUXROUTE_SERVER_TOKEN.",
                file=sys.stderr,
            )
    uvicorn.run(http_app(server, host, token), host=host, port=port, log_level="warning")
