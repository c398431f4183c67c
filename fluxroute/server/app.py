"""build_server(): the MCP server over one router — tools, resources, prompts, webhooks, and the jobs a
previous process left in flight resumed at start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fluxroute.errors import WebhookRejected
from fluxroute.providers.base import Notifiable
from fluxroute.providers.webhooks import FAL_JWKS_URL, FalWebhookVerifier
from fluxroute.router import Router
from fluxroute.server.prompts import add_prompts
from fluxroute.server.resources import add_resources
from fluxroute.server.tools import mcp_tools
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from fluxroute.tools import ToolLibrary

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "fluxroute generates images with FLUX-family models (FLUX.1 Krea [dev], FLUX.1 [dev], Krea 2) on the Krea "
    "API, fal.ai or a local GPU, choosing by cost, license and size. Use plan_image_route to see where a call "
    "would run and what it costs, generate_image to make images (a long one returns a job_id for "
    "get_image_job), and the prompts for each model family's prompting guide."
)


def build_server(
    settings: Settings,
    router: Router | None = None,
    store: JobStore | None = None,
    *,
    fal_jwks_url: str = FAL_JWKS_URL,
) -> MCPServer:
    """An MCP server for `settings`: tools from the tool specs, resources, prompts, and (over HTTP) provider
    webhooks at /webhooks/krea and /webhooks/fal plus /health. Nothing is started until it runs."""
    router = router or Router(settings, store=store)
    library = ToolLibrary(router)
    webhooks = _Webhooks(router, fal_jwks_url)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[ToolLibrary]:
        adopted = library.jobs.resume_in_flight()
        if adopted:
            log.info("following %d job(s) a previous process left in flight", len(adopted))
        try:
            yield library
        finally:
            await library.aclose()  # stop following; in-flight jobs stay in flight for the next start
            await webhooks.aclose()
            await router.aclose()

    server: MCPServer = MCPServer(
        "fluxroute",
        title="fluxroute",
        instructions=INSTRUCTIONS,
        tools=mcp_tools(library),
        lifespan=lifespan,
        log_level="WARNING",  # stderr is the stdio client's log pane: failures only
    )
    add_resources(server, library)
    add_prompts(server)
    _add_routes(server, webhooks)
    return server


class _Webhooks:
    """Provider webhooks: each one only wakes the wait on its job early; the provider's API stays the
    source of truth, so a forged Krea delivery (Krea does not sign) costs one status check."""

    def __init__(self, router: Router, fal_jwks_url: str) -> None:
        self.router = router
        self._fal_jwks_url = fal_jwks_url
        self._http: httpx.AsyncClient | None = None  # made on the first fal delivery: stdio never needs it
        self._fal_verifier: FalWebhookVerifier | None = None

    @property
    def fal_verifier(self) -> FalWebhookVerifier:
        if self._fal_verifier is None:
            self._http = httpx.AsyncClient(timeout=10)
            self._fal_verifier = FalWebhookVerifier(self._http, self._fal_jwks_url)
        return self._fal_verifier

    def notify(self, provider: str, job_id: str) -> bool:
        target = self.router.provider(provider)
        return bool(job_id) and isinstance(target, Notifiable) and target.notify(job_id)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _add_routes(server: MCPServer, webhooks: _Webhooks) -> None:
    @server.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    @server.custom_route("/webhooks/krea", methods=["POST"])  # type: ignore[untyped-decorator]
    async def krea_webhook(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "body is not JSON"}, status_code=400)
        job_id = str(body.get("job_id", "")) if isinstance(body, dict) else ""
        known = webhooks.notify("krea", job_id)
        return JSONResponse({"ok": known}, status_code=200 if known else 404)

    @server.custom_route("/webhooks/fal", methods=["POST"])  # type: ignore[untyped-decorator]
    async def fal_webhook(request: Request) -> Response:
        try:
            payload = await webhooks.fal_verifier.verify(request.headers, await request.body())
        except WebhookRejected as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=401)
        known = webhooks.notify("fal", str(payload.get("request_id", "")))
        return JSONResponse({"ok": known}, status_code=200 if known else 404)
