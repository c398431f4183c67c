"""The provider webhook endpoints: a bounded body, verification where the provider signs, then at most one early
status check per job per WAKE_WINDOW_S, and only for a job the store shows in flight. A delivery never says
what the result is: it wakes the poller, and the provider's API stays the source of truth.

The poller to wake may be in another replica (the one holding the job's lease): when no waiter here follows the
job, the wake is published on the store's wake bus (server/wakes.py), and that replica's listener wakes it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fluxroute.errors import WebhookRejected
from fluxroute.providers.base import Notifiable
from fluxroute.providers.webhooks import FalWebhookVerifier, krea_webhook_job_id
from fluxroute.server.backend import Backend

if TYPE_CHECKING:
    import httpx

MAX_BODY_BYTES = 64 * 1024  # a Krea job object or a fal delivery is a few KB
WAKE_WINDOW_S = 2.0  # the poll schedule's own cap: a wake-up no sooner than the next scheduled check anyway
JWKS_TIMEOUT_S = 5.0


class Webhooks:
    """What the webhook endpoints share: the router (its store and providers) and fal's verifier."""

    def __init__(self, backend: Backend, fal_jwks_url: str) -> None:
        self.backend = backend
        self._fal_jwks_url = fal_jwks_url
        self._http: httpx.AsyncClient | None = None  # made on the first fal delivery: stdio never needs it
        self._fal_verifier: FalWebhookVerifier | None = None

    @property
    def fal_verifier(self) -> FalWebhookVerifier:
        if self._fal_verifier is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=JWKS_TIMEOUT_S)
            self._fal_verifier = FalWebhookVerifier(self._http, self._fal_jwks_url)
        return self._fal_verifier

    async def wake(self, provider: str, job_id: str) -> Response:
        """Check `job_id` now if the store shows it in flight and no check was started for it this window."""
        router = await self.backend.router()
        verdict = await asyncio.to_thread(router.store.claim_webhook_check, provider, job_id, WAKE_WINDOW_S)
        if verdict == "unknown":
            # perhaps a fast job that ended before its submission was recorded: every replica remembers the id a
            # while, and the one that then follows it checks at once (providers/polling.py Poller.notify)
            here = router.open_provider(provider)
            if not (isinstance(here, Notifiable) and here.notify(job_id)):
                await asyncio.to_thread(self.backend.wakes.publish, provider, job_id)
            return JSONResponse({"ok": False, "error": "no job of ours is in flight with this id"}, status_code=404)
        woken = relayed = False
        if verdict == "due":
            target = router.provider(provider)
            woken = isinstance(target, Notifiable) and target.notify(job_id)
            if not woken:  # no waiter here: the replica that follows the job hears it on the wake bus
                relayed = await asyncio.to_thread(self.backend.wakes.publish, provider, job_id)
        return JSONResponse({"ok": True, "checking": woken, "relayed": relayed})

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request's body, or None as soon as it is known to pass `limit` bytes (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def too_large() -> Response:
    # closing the connection is what stops the server reading the rest of the upload
    return JSONResponse(
        {"ok": False, "error": f"body larger than {MAX_BODY_BYTES} bytes"},
        status_code=413,
        headers={"connection": "close"},
    )


def add_webhook_routes(server: MCPServer, webhooks: Webhooks) -> None:
    @server.custom_route("/webhooks/krea", methods=["POST"])  # type: ignore[untyped-decorator]
    async def krea_webhook(request: Request) -> Response:
        body = await bounded_body(request)
        if body is None:
            return too_large()
        try:
            job_id = krea_webhook_job_id(body)
        except WebhookRejected as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return await webhooks.wake("krea", job_id)

    @server.custom_route("/webhooks/fal", methods=["POST"])  # type: ignore[untyped-decorator]
    async def fal_webhook(request: Request) -> Response:
        body = await bounded_body(request)
        if body is None:
            return too_large()
        try:
            payload = await webhooks.fal_verifier.verify(request.headers, body)
        except WebhookRejected as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=401)
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            return JSONResponse({"ok": False, "error": "fal webhook: the delivery has no request_id"}, status_code=400)
        return await webhooks.wake("fal", request_id)
