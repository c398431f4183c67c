"""fluxroute's HTTP app served by uvicorn on the test's own event loop, from a socket `listen()` bound: webhooks
then wake the waits a test starts on that loop, exactly as in `fluxroute serve --http`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from pydantic import SecretStr

from fluxroute.router import Router
from fluxroute.server import build_server, http_app
from fluxroute.server.http import host_header, listen
from fluxroute.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn, with an event set once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@asynccontextmanager
async def serving(
    settings: Settings,
    host: str = "127.0.0.1",
    *,
    router: Router | None = None,
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    fal_jwks_url: str | None = None,
) -> AsyncIterator[str]:
    """`build_server` + `http_app` on a free port of `host`; yields the base URL (http://host:port)."""
    sock = listen(host, 0)
    port = int(sock.getsockname()[1])
    server = build_server(settings, router or Router(settings), fal_jwks_url=fal_jwks_url)
    app = http_app(server, host, port, token=SecretStr(token) if token else None, allowed_hosts=allowed_hosts)
    uv = _Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    ready = asyncio.ensure_future(uv.ready.wait())
    try:
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        yield f"http://{host_header(host, port)}"
    finally:
        ready.cancel()
        uv.should_exit = True
        await task
        sock.close()
