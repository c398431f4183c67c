"""Streamable HTTP: the MCP endpoint at /mcp (loopback by default; Host and Origin checked on every bind; a bearer
token when configured, required beyond loopback), the provider webhooks and /health beside it."""

from __future__ import annotations

import errno
import hmac
import json
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from fluxroute.errors import ConfigError, PortInUse

MCP_PATH = "/mcp"
WEBHOOK_PROVIDERS = ("krea", "fal")  # served at /webhooks/<provider> (server/webhooks.py)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # the binds that need no --allow-remote
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # every address: not a name a client can send as Host
# `name`, `name:port` or `name:*`; a name is a DNS name, an IPv4 address or a bracketed IPv6 address
ALLOWED_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(:(\d{1,5}|\*))?")


def is_local(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine's loopback (127.0.0.1, ::1, localhost)."""
    return host.strip("[]").lower() in LOCAL_HOSTS


def host_header(host: str, port: int) -> str:
    """What a client sends as Host to reach `host`:`port` (IPv6 addresses in brackets)."""
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def transport_security(host: str, port: int, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """The MCP SDK's DNS-rebinding protection for this bind, always on: the Host header must name the bind
    address or a loopback name (on this port), or be one of `allowed_hosts`; a browser's Origin must be a page
    served from one of those addresses (any port) or one of `allowed_hosts` over http(s).

    Raises:
        ConfigError: an allowed host is not `name`, `name:port` or `name:*`.
    """
    for entry in allowed_hosts:
        if not ALLOWED_HOST.fullmatch(entry):
            raise ConfigError(f"allowed host {entry!r} is not NAME, NAME:PORT or NAME:* (no scheme, no path)")
    allowed_hosts = [entry.lower() for entry in allowed_hosts]  # clients send host names in lower case
    names = [name for name in dict.fromkeys([host.strip("[]").lower(), *LOCAL_HOSTS]) if name not in WILDCARD_HOSTS]
    hosts = [host_header(name, port) for name in names]
    pages = [host_header(name, port).rsplit(":", 1)[0] for name in names]  # served from this machine, any port
    origins = [f"http://{page}{suffix}" for page in pages for suffix in ("", ":*")]
    origins += [f"{scheme}://{entry}" for entry in allowed_hosts for scheme in ("https", "http")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys([*hosts, *allowed_hosts])),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def http_app(
    server: MCPServer,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    token: SecretStr | None = None,
    allowed_hosts: Sequence[str] = (),
) -> ASGIApp:
    """The ASGI app `fluxroute serve --http` runs on `host`:`port`. /mcp refuses a Host or Origin that is not
    this server's (see `transport_security`), and with `token` answers 401 without `Authorization: Bearer
    <token>`; the webhooks authenticate themselves (fal signs, Krea is re-checked at Krea).

    A server from `build_server` runs as one replica of a service while this app runs: it listens on its store's
    wake bus and sweeps for jobs of stopped replicas every ADOPT_EVERY_S (server/backend.py `Backend.replicate`).

    Raises:
        ConfigError: an allowed host is malformed.
    """
    from fluxroute.server.app import backend_of

    backend = backend_of(server)
    if backend is not None:
        backend.replicated = True  # one replica of a service: wake listener and adoption sweep while it runs
    security = transport_security(host, port, allowed_hosts)
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host, transport_security=security)
    return BearerToken(app, token) if token is not None else app


# What a 401 says, in RFC 6750's `error_description` (a quoted-string: no double quotes or backslashes) and in the
# JSON body: which of the two went wrong, and that the fix is the token, not a sign-in (there is no OAuth here)
NO_TOKEN = (
    "no bearer token: this fluxroute server needs the header Authorization: Bearer <token>, with the value of "
    "FLUXROUTE_SERVER_TOKEN where the server runs (it offers no OAuth sign-in)"
)
WRONG_TOKEN = (
    "wrong bearer token: the Authorization header does not carry the FLUXROUTE_SERVER_TOKEN this server was "
    "started with; send that token (it offers no OAuth sign-in)"
)


class BearerToken:
    """Requires `Authorization: Bearer <token>` on the MCP endpoint (the scheme in any case, the token compared in
    constant time). Anything else is a 401 that says whether the token was missing or wrong (see `unauthorized`)."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self._expected = token.get_secret_value().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(MCP_PATH):
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            scheme, _, credentials = given.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not credentials.strip():
                await unauthorized(send, NO_TOKEN)
                return
            if not hmac.compare_digest(credentials.strip(), self._expected):
                await unauthorized(send, WRONG_TOKEN)
                return
        await self.app(scope, receive, send)


async def unauthorized(send: Send, description: str) -> None:
    """A 401 in RFC 6750's terms: `WWW-Authenticate: Bearer realm="fluxroute", error="invalid_token",
    error_description="..."` and the same in a JSON body. `invalid_token` even for a missing token (where the RFC
    would send no error code), so that every 401 names the token as the problem: a client sending a configured
    Authorization header shows the sentence (Claude Code does); a client sending none may still try OAuth discovery,
    which finds no authorization server here."""
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    challenge = f'Bearer realm="fluxroute", error="invalid_token", error_description="{description}"'
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"www-authenticate", challenge.encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_bind(host: str, port: int, *, allow_remote: bool, has_token: bool, insecure_no_auth: bool) -> None:
    """Refuse a bind that would expose the server by accident.

    Raises:
        ConfigError: `port` is not 1-65535; `host` is not 127.0.0.1, ::1 or localhost and `allow_remote` was not
            given; or it is allowed remote without a bearer token and without `insecure_no_auth`.
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    if is_local(host):
        return
    if not allow_remote:
        raise ConfigError(
            f"--host {host} is not 127.0.0.1, ::1 or localhost; pass --allow-remote to mean it "
            "(and set FLUXROUTE_SERVER_TOKEN so clients need a bearer token)"
        )
    if not has_token and not insecure_no_auth:
        raise ConfigError(
            f"--host {host} with --allow-remote needs FLUXROUTE_SERVER_TOKEN (a bearer token for /mcp); "
            "--insecure-no-auth serves without one"
        )


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port`, bound before the server starts so a taken port is one clear error.

    Raises:
        ConfigError: the address cannot be resolved.
        PortInUse: it cannot be bound (taken, not this machine's, not permitted).
    """
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET  # as uvicorn does: "localhost" is 127.0.0.1
    try:
        family, kind, proto, _, address = socket.getaddrinfo(bare, port, family, socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise PortInUse(f"cannot listen on {host_header(host, port)}: {why}") from None
    return sock


def startup_line(
    host: str,
    port: int,
    *,
    token_required: bool,
    webhook_base_url: str | None = None,
    store_path: Path | None = None,
) -> str:
    """The one line `fluxroute serve --http` prints once it serves: where MCP is, whether it needs a bearer token
    (never the token), where providers deliver webhooks, and which store it writes."""
    auth = (
        "bearer token required (FLUXROUTE_SERVER_TOKEN)"
        if token_required
        else "no bearer token required (FLUXROUTE_SERVER_TOKEN unset)"
    )
    paths = " and ".join(f"/webhooks/{provider}" for provider in WEBHOOK_PROVIDERS)
    if webhook_base_url:
        webhooks = f"webhooks at {paths} (public base {_without_userinfo(webhook_base_url).rstrip('/')})"
    else:
        webhooks = f"webhooks at {paths} (webhook_base_url unset: jobs are polled)"
    store = f"store {store_path}" if store_path is not None else "store not named"
    return f"fluxroute: MCP at http://{host_header(host, port)}{MCP_PATH}; {auth}; {webhooks}; {store}"


def _without_userinfo(url: str) -> str:
    """`url` without a `user:password@` part, which may hold a credential."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def serve_http(
    server: MCPServer,
    host: str,
    port: int,
    *,
    allow_remote: bool = False,
    token: SecretStr | None = None,
    allowed_hosts: Sequence[str] = (),
    insecure_no_auth: bool = False,
    webhook_base_url: str | None = None,
    store_path: Path | None = None,
) -> None:
    """Run Streamable HTTP until interrupted; once it serves, print `startup_line` on stderr (printed, not logged:
    the log level is warning).

    Raises:
        ConfigError: the bind is refused (see `check_bind`), an allowed host is malformed, or the address cannot
            be listened on.
    """
    import uvicorn

    check_bind(host, port, allow_remote=allow_remote, has_token=token is not None, insecure_no_auth=insecure_no_auth)
    app = http_app(server, host, port, token=token, allowed_hosts=allowed_hosts)
    sock = listen(host, port)
    if not is_local(host) and token is None:
        print(
            f"warning: serving MCP on {host_header(host, port)} without a bearer token (--insecure-no-auth); anyone "
            "who can reach it can spend your provider credits",
            file=sys.stderr,
        )
    line = startup_line(
        host, port, token_required=token is not None, webhook_base_url=webhook_base_url, store_path=store_path
    )

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # the lifespan (resuming jobs in flight) has run and nothing failed
                print(line, file=sys.stderr, flush=True)

    with sock:
        Announcing(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
