"""Incoming webhooks: fal's Ed25519-signed deliveries checked against its JWKS; the job a Krea delivery names."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fluxroute.errors import WebhookRejected

# httpx and cryptography are imported where a fal delivery is verified: a server that receives none (every
# stdio server) never loads them.
if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
MAX_AGE_S = 300  # a delivery's timestamp may be this far from now, before or after
JWKS_CACHE_S = 24 * 3600
JWKS_REFRESH_S = 300.0  # a signature no cached key verifies fetches the keys again, at most this often
JWKS_RETRY_S = 30.0  # after a failed fetch, deliveries are refused without asking again for this long
MAX_JWKS_BYTES = 64 * 1024
MAX_JOB_ID_CHARS = 200
SIGNATURE_BYTES = 64


class _KeysUnavailable(Exception):
    """The JWKS could not be fetched or read (the reason, one line)."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FalWebhookVerifier:
    """Checks X-Fal-Webhook-* headers: timestamp within 300 s of now (either way), Ed25519 signature by any key
    in the JWKS over "{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}", whatever the body says.

    The JWKS is cached for a day and read at most MAX_JWKS_BYTES; a signature the cached keys do not verify
    fetches it again (a key rollover) at most every JWKS_REFRESH_S, so forgeries cannot make it hammer fal.
    Every failure, the JWKS being unreachable included, is a WebhookRejected; an unreachable JWKS is logged
    once per outage, not per delivery.
    """

    def __init__(self, client: httpx.AsyncClient, jwks_url: str = FAL_JWKS_URL) -> None:
        self._client = client
        self._jwks_url = jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = 0.0
        self._retry_at = 0.0
        self._failing = False
        self._lock = asyncio.Lock()

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> dict[str, Any]:
        """The delivery's JSON payload, if genuine.

        Raises:
            WebhookRejected: a header is missing or malformed, the timestamp is outside the window, no published
                key verifies the signature, fal's keys cannot be had, or the signed body is not a JSON object.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            request_id = lowered["x-fal-webhook-request-id"]
            user_id = lowered["x-fal-webhook-user-id"]
            timestamp = lowered["x-fal-webhook-timestamp"]
            signature = bytes.fromhex(lowered["x-fal-webhook-signature"])
        except KeyError as exc:
            raise WebhookRejected(f"fal webhook: missing header {exc}") from None
        except ValueError:
            raise WebhookRejected("fal webhook: the signature is not hex") from None
        if len(signature) != SIGNATURE_BYTES:
            raise WebhookRejected(f"fal webhook: the signature is not {SIGNATURE_BYTES} bytes")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookRejected("fal webhook: the timestamp is not unix seconds")
        current = time.time() if now is None else now
        age = abs(current - int(timestamp))
        if age > MAX_AGE_S:
            raise WebhookRejected(f"fal webhook: timestamp {age:.0f} s away from now (limit {MAX_AGE_S} s)")
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        keys = await self._public_keys()
        if not _signed_by_any(keys, signature, message):
            fresher = await self._public_keys(refresh=True)
            if fresher is keys or not _signed_by_any(fresher, signature, message):
                raise WebhookRejected("fal webhook: the signature does not verify with any published key")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            raise WebhookRejected("fal webhook: the signed body is not a JSON object")
        return payload

    async def _public_keys(self, *, refresh: bool = False) -> list[Ed25519PublicKey]:
        """fal's keys: the cached list, fetched again once a day, after a failure's pause, or (with `refresh`)
        when the cache is older than JWKS_REFRESH_S. A failed fetch keeps the keys already known.

        Raises:
            WebhookRejected: no keys are known and they cannot be fetched now.
        """
        async with self._lock:
            now = time.monotonic()
            age = now - self._fetched_at
            due = not self._keys or age > JWKS_CACHE_S or (refresh and age > JWKS_REFRESH_S)
            if due and now >= self._retry_at:
                try:
                    self._keys = await self._fetch_keys()
                except _KeysUnavailable as exc:
                    self._retry_at = now + JWKS_RETRY_S
                    if not self._failing:
                        log.warning("fal webhook keys unavailable from %s: %s", self._jwks_url, exc)
                        self._failing = True
                else:
                    self._fetched_at = now
                    self._failing = False
            if not self._keys:
                raise WebhookRejected("fal webhook: fal's signing keys are unavailable; the delivery is not verified")
            return self._keys

    async def _fetch_keys(self) -> list[Ed25519PublicKey]:
        import httpx

        try:
            async with self._client.stream("GET", self._jwks_url) as response:
                if response.status_code != 200:
                    raise _KeysUnavailable(f"HTTP {response.status_code}")
                document = bytearray()
                async for chunk in response.aiter_bytes():
                    document += chunk
                    if len(document) > MAX_JWKS_BYTES:
                        raise _KeysUnavailable(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _KeysUnavailable(type(exc).__name__) from None
        try:
            listed = json.loads(document).get("keys")
        except (ValueError, RecursionError, AttributeError):
            raise _KeysUnavailable("the JWKS is not a JSON object") from None
        keys = [key for entry in listed if (key := _ed25519(entry))] if isinstance(listed, list) else []
        if not keys:
            raise _KeysUnavailable("the JWKS has no Ed25519 keys")
        return keys


def _ed25519(entry: object) -> Ed25519PublicKey | None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(_b64url(x))
    except (ValueError, binascii.Error):
        return None


def _signed_by_any(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def krea_webhook_job_id(body: bytes) -> str:
    """The job id a Krea delivery names. Krea does not sign webhooks, so this is only a claim: the caller acts
    on it only for a job it has in flight, and asks Krea's API for the job's state (as Krea's docs advise).

    Raises:
        WebhookRejected: the body is not a JSON object with a short string `job_id`.
    """
    try:
        job = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRejected("krea webhook: the body is not JSON") from None
    job_id = job.get("job_id") if isinstance(job, dict) else None
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_CHARS:
        raise WebhookRejected("krea webhook: the body has no job_id")
    return job_id
