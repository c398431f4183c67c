"""Serve an ASGI app on ephemeral 127.0.0.1 ports from a background uvicorn thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ConnectionDropped(Exception):
    """Raised inside the app to make uvicorn close a half-sent response (fallback drop)."""


class _QuietDrops(logging.Filter):
    """Keeps the deliberate ConnectionDropped out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


async def drop_connection(send: Send) -> None:
    """Close the client's TCP connection without sending a response.

    uvicorn's ``send`` is a bound method of its request cycle, which owns the asyncio
    transport; aborting it is what a crashed ingress looks like to the client (httpx:
    ``RemoteProtocolError: Server disconnected without sending a response``). If that
    internal is ever missing, fall back to a truncated response (headers promising a
    body that never comes), which httpx also reports as ``RemoteProtocolError``.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        # Let connection_lost run so uvicorn knows not to answer with a 500.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise ConnectionDropped


class _Server(uvicorn.Server):
    """uvicorn server that publishes its event loop and signals readiness to the starter."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        self._ready.set()


class LoopbackServer:
    """One uvicorn server listening on ``ports`` ephemeral ports of 127.0.0.1, run in a daemon thread.

    Several ports share one app and one event loop; the app tells them apart by
    ``scope["server"][1]`` (the fal fake serves its queue host and its run host this way).
    """

    def __init__(self, app: ASGIApp, *, ports: int = 1, name: str = "fake") -> None:
        self._app = app
        self._port_count = ports
        self._name = name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.ports: list[int] = []

    @property
    def base_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._server is None or self._server.loop is None:
            raise RuntimeError(f"{self._name} server is not running")
        return self._server.loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and bool(self._server and self._server.started)

    def start(self, timeout: float = 10.0) -> None:
        """Bind the ports, start uvicorn and return once it accepts connections."""
        sockets = []
        for _ in range(self._port_count):
            # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
            # proto says TCP, and without it every keep-alive request waits ~40 ms (Nagle).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        self.ports = [sock.getsockname()[1] for sock in sockets]
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        ready = threading.Event()
        server = _Server(config, ready)

        def run() -> None:
            try:
                server.run(sockets=sockets)
            finally:
                ready.set()  # wake the starter even if startup failed

        self._server = server
        self._thread = threading.Thread(target=run, name=f"{self._name}-uvicorn", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or not server.started:
            self.stop()
            raise RuntimeError(f"{self._name} server did not start within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit without waiting for idle keep-alive clients, and join its thread."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run a coroutine on the server's loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain callback on the server's loop from any thread (no-op once stopped)."""
        with contextlib.suppress(RuntimeError):  # loop closed: the server is gone, nothing to notify
            self.loop.call_soon_threadsafe(callback, *args)
