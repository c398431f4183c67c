"""Incoming webhooks: fal's Ed25519-signed deliveries checked against its JWKS; Krea's checked by job id."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fluxroute.errors import WebhookRejected

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
MAX_AGE_S = 300
JWKS_CACHE_S = 24 * 3600


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FalWebhookVerifier:
    """Checks X-Fal-Webhook-* headers: timestamp within 300 s, Ed25519 signature by any key in the JWKS over
    "{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}". The JWKS is cached for a day."""

    def __init__(self, client: httpx.AsyncClient, jwks_url: str = FAL_JWKS_URL) -> None:
        self._client = client
        self._jwks_url = jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = 0.0

    async def _public_keys(self) -> list[Ed25519PublicKey]:
        if not self._keys or time.monotonic() - self._fetched_at > JWKS_CACHE_S:
            response = await self._client.get(self._jwks_url)
            response.raise_for_status()
            self._keys = [
                Ed25519PublicKey.from_public_bytes(_b64url(key["x"]))
                for key in response.json().get("keys", [])
                if key.get("kty") == "OKP" and key.get("crv") == "Ed25519"
            ]
            self._fetched_at = time.monotonic()
        return self._keys

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> dict[str, Any]:
        """The delivery's JSON payload, if genuine.

        Raises:
            WebhookRejected: a header is missing, the timestamp is outside the window, or no key verifies it.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            request_id = lowered["x-fal-webhook-request-id"]
            user_id = lowered["x-fal-webhook-user-id"]
            timestamp = lowered["x-fal-webhook-timestamp"]
            signature = bytes.fromhex(lowered["x-fal-webhook-signature"])
        except (KeyError, ValueError) as exc:
            raise WebhookRejected(f"fal webhook: missing or malformed header ({exc})") from None
        current = time.time() if now is None else now
        try:
            age = abs(current - int(timestamp))
        except ValueError:
            raise WebhookRejected("fal webhook: timestamp is not an integer") from None
        if age > MAX_AGE_S:
            raise WebhookRejected(f"fal webhook: timestamp {age:.0f} s away from now (limit {MAX_AGE_S} s)")
        message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        for key in await self._public_keys():
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            payload: dict[str, Any] = json.loads(body)
            return payload
        raise WebhookRejected("fal webhook: signature does not verify with any published key")


def krea_webhook_job_id(body: bytes, known_job_ids: set[str]) -> str:
    """Krea does not sign webhooks; accept only the job ids we created (as its docs advise).

    Raises:
        WebhookRejected: not JSON, no job_id, or a job id we did not create.
    """
    try:
        job_id = str(json.loads(body)["job_id"])
    except (ValueError, KeyError, TypeError):
        raise WebhookRejected("krea webhook: body is not a job object") from None
    if job_id not in known_job_ids:
        raise WebhookRejected(f"krea webhook: job {job_id} was not created here")
    return job_id
