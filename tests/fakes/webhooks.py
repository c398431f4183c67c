"""Webhooks around the fakes: delivery with retries, fal's Ed25519 signing, a loopback receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes.server import LoopbackServer, Receive, Scope, Send


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST the fake made to a webhook URL (``status_code`` None when it did not connect)."""

    job_id: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    at: float
    headers: dict[str, str]
    body: bytes


async def deliver(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    job_id: str,
    attempts: list[WebhookAttempt],
    max_attempts: int,
    retry_delay: float,
    timeout: float = 5.0,
) -> None:
    """POST ``body`` to ``url`` until a 2xx answer or ``max_attempts`` tries, recording each try."""
    sent = {"content-type": "application/json", **headers}
    async with httpx.AsyncClient(timeout=timeout) as client:
        for attempt in range(1, max_attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                response = await client.post(url, content=body, headers=sent)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            attempts.append(WebhookAttempt(job_id, url, attempt, status, error, time.monotonic(), sent, body))
            if status is not None and 200 <= status < 300:
                return
            if attempt < max_attempts:
                await asyncio.sleep(retry_delay)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FalWebhookSigner:
    """fal's webhook signature: Ed25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256_hex(body)``.

    Keys are published as a JWKS (``kty: OKP``, ``crv: Ed25519``). ``rotate()`` adds a new
    signing key and keeps the old one published, like a real key rollover.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[str, Ed25519PrivateKey]] = []
        self.rotate()

    def rotate(self) -> str:
        key = Ed25519PrivateKey.generate()
        kid = "fake-" + hashlib.sha256(self._raw_public(key)).hexdigest()[:16]
        self._keys.append((kid, key))
        return kid

    @staticmethod
    def _raw_public(key: Ed25519PrivateKey) -> bytes:
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(self._raw_public(key)),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for kid, key in self._keys
            ]
        }

    @staticmethod
    def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
        return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()

    def headers(
        self, request_id: str, user_id: str, body: bytes, *, mode: str = "valid", now: float | None = None
    ) -> dict[str, str]:
        """Signature headers for ``body``. ``mode``: "valid", "forged" (signed by a key that is not
        in the JWKS), "stale" (validly signed, timestamp 10 minutes old) or "unsigned" (none)."""
        if mode == "unsigned":
            return {}
        timestamp = str(int((time.time() if now is None else now) - (600 if mode == "stale" else 0)))
        key = Ed25519PrivateKey.generate() if mode == "forged" else self._keys[-1][1]
        signature = key.sign(self.message(request_id, user_id, timestamp, body)).hex()
        return {
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": user_id,
            "x-fal-webhook-timestamp": timestamp,
            "x-fal-webhook-signature": signature,
        }


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got (headers lower-cased, body raw)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A loopback HTTP endpoint that records every request and lets a test await the n-th one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[Delivery]]] = []
        self.deliveries: list[Delivery] = []
        self._responses: list[int] = []
        self._server = LoopbackServer(self._app, name="webhook-receiver")

    @property
    def base_url(self) -> str:
        return self._server.base_urls[0]

    @property
    def url(self) -> str:
        return self.base_url + "/hook"

    def start(self) -> WebhookReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self._responses.clear()
            self._waiters.clear()

    def respond_with(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order (then 200 again)."""
        with self._lock:
            self._responses.extend(statuses)

    async def wait_for(self, n: int = 1, timeout: float = 5.0) -> Delivery:
        """Wait until at least ``n`` requests arrived; return the n-th (1-based)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()
        with self._lock:
            if len(self.deliveries) >= n:
                return self.deliveries[n - 1]
            waiter = (n, loop, future)
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(f"{len(self.deliveries)} webhook deliveries after {timeout}s, wanted {n}") from None
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wait_for_sync(self, n: int = 1, timeout: float = 5.0) -> Delivery:
        """Blocking variant of ``wait_for`` for synchronous tests."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.deliveries) >= n, timeout):
                raise AssertionError(f"{len(self.deliveries)} webhook deliveries after {timeout}s, wanted {n}")
            return self.deliveries[n - 1]

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        delivery = Delivery(scope["method"], scope["path"], headers, body)
        with self._arrived:
            self.deliveries.append(delivery)
            status = self._responses.pop(0) if self._responses else 200
            count = len(self.deliveries)
            for n, loop, future in self._waiters:
                if n <= count and not loop.is_closed():
                    loop.call_soon_threadsafe(_resolve, future, self.deliveries[n - 1])
            self._arrived.notify_all()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})


def _resolve(future: asyncio.Future[Delivery], delivery: Delivery) -> None:
    if not future.done():
        future.set_result(delivery)
