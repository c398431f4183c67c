"""build_server(): the MCP server over one router — tools, resources, prompts, webhooks, and the jobs a
previous process left in flight resumed at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fluxroute.server.apps import apps_gate, views_extension
from fluxroute.server.backend import Backend
from fluxroute.server.completions import add_completions
from fluxroute.server.prompts import add_prompts
from fluxroute.server.resources import add_resources
from fluxroute.server.tools import mcp_tools
from fluxroute.server.webhooks import Webhooks, add_webhook_routes

if TYPE_CHECKING:
    from fluxroute.router import Router
    from fluxroute.settings import Settings
    from fluxroute.store import Store

INSTRUCTIONS = (
    "fluxroute generates images with FLUX-family models (FLUX.1 Krea [dev], FLUX.1 [dev], Krea 2) on the Krea "
    "API, fal.ai or a local GPU, choosing by cost, license and size. Use plan_image_route to see where a call "
    "would run and what it costs, generate_image to make images (a long one returns a job_id for "
    "get_image_job), and the prompts for each model family's prompting guide."
)

# the backend of each server `build_server` made: `http_app` marks it as a replica (see `backend_of`)
_BACKENDS: WeakKeyDictionary[MCPServer, Backend] = WeakKeyDictionary()


def backend_of(server: MCPServer) -> Backend | None:
    """The backend of a server `build_server` made (None for another server)."""
    return _BACKENDS.get(server)


def build_server(
    settings: Settings,
    router: Router | None = None,
    store: Store | None = None,
    *,
    fal_jwks_url: str | None = None,
) -> MCPServer:
    """An MCP server for `settings`: tools from the tool specs (listed from their saved export), resources, prompts,
    completion of the prompts' and resource templates' arguments, and (over HTTP) provider webhooks at
    /webhooks/krea and /webhooks/fal plus /health. Nothing is started until it runs.

    Without `router`, the server makes its own (over `store`) once it runs, in the background (see
    server/backend.py): listing the tools needs no router, and a call that comes first waits for it.

    Raises:
        ConfigError: the settings' price overrides or added offers do not make a valid catalog.
    """
    backend = Backend(settings, router, store)
    webhooks = Webhooks(backend, fal_jwks_url or settings.fal_jwks_url)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Backend]:
        warm_up = asyncio.create_task(backend.warm_up())  # the router, and the jobs left in flight adopted
        # over HTTP: one replica of a service (wake listener, adoption sweep); see Backend.replicate
        replica = asyncio.create_task(backend.replicate()) if backend.replicated else None
        try:
            yield backend
        finally:
            if replica is not None:
                replica.cancel()
                await asyncio.gather(replica, return_exceptions=True)
            await warm_up  # a router being made cannot be interrupted; it is closed below like any other
            await backend.aclose()  # stop following; in-flight jobs stay in flight for the next start
            await webhooks.aclose()

    server: MCPServer = MCPServer(
        "fluxroute",
        title="fluxroute",
        instructions=INSTRUCTIONS,
        tools=mcp_tools(backend),
        lifespan=lifespan,
        extensions=[views_extension()],
        middleware=[apps_gate],
        log_level="WARNING",  # stderr is the stdio client's log pane: failures only
    )
    add_resources(server, backend)
    add_prompts(server)
    add_completions(server, backend)
    _add_routes(server, webhooks)
    _BACKENDS[server] = backend
    return server


def _add_routes(server: MCPServer, webhooks: Webhooks) -> None:
    @server.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    add_webhook_routes(server, webhooks)
