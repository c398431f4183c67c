"""Hostile webhooks: forged Krea deliveries cannot make fluxroute poll Krea on the user's key, oversize bodies are
refused unread, and every fal delivery that does not verify gets one 401 line, whatever its body says."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from fluxroute.errors import WebhookRejected
from fluxroute.providers.polling import PollSchedule
from fluxroute.providers.webhooks import MAX_JWKS_BYTES, FalWebhookVerifier
from fluxroute.router import Router
from fluxroute.server.webhooks import MAX_BODY_BYTES, WAKE_WINDOW_S
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.server.serving import serving

FORGED_POSTS = 300


async def test_forged_krea_webhooks_for_a_live_job_start_at_most_one_status_check_per_window(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.manual = True  # the job stays queued until the test completes it
    loop = asyncio.get_running_loop()
    settled = asyncio.Event()  # the poll schedule has backed off past its first quick checks

    def watch(route: str) -> None:
        if route == "get_job" and krea_fake.request_counts["get_job"] >= 6 and not loop.is_closed():
            loop.call_soon_threadsafe(settled.set)

    krea_fake.observers.append(watch)
    router = Router(hosted_settings)
    async with serving(hosted_settings, router=router) as url, httpx.AsyncClient(timeout=30) as http:
        generation = asyncio.create_task(router.generate(ImageRequest.parse({"prompt": "a fox", "provider": "krea"})))
        await asyncio.wait_for(settled.wait(), 10)
        (job,) = krea_fake.jobs
        forged = json.dumps({"job_id": job.id, "status": "completed", "result": {"urls": ["http://evil.example/x"]}})
        gate = asyncio.Semaphore(20)

        async def post() -> httpx.Response:
            async with gate:
                return await http.post(f"{url}/webhooks/krea", content=forged)

        before = krea_fake.request_counts["get_job"]
        started = time.monotonic()
        answers = await asyncio.gather(*(post() for _ in range(FORGED_POSTS)))
        elapsed = time.monotonic() - started
        status_checks = krea_fake.request_counts["get_job"] - before

        krea_fake.complete(job.id)
        result = await asyncio.wait_for(generation, 10)
        finished = await http.post(f"{url}/webhooks/krea", content=forged)

    windows = 1 + int(elapsed / WAKE_WINDOW_S)
    # what the poller checks on its own, at its fastest (around the expected finish), plus one per window
    own_polls = 3 + int(elapsed / PollSchedule.near_s)
    assert status_checks <= own_polls + windows, f"{status_checks} status checks for {FORGED_POSTS} forged webhooks"
    assert {answer.status_code for answer in answers} == {200}
    assert 1 <= sum(answer.json()["checking"] for answer in answers) <= windows
    assert result.images[0].url != "http://evil.example/x"  # the body is never the result
    assert finished.status_code == 404  # no longer in flight: not ours to check


async def test_a_krea_webhook_for_a_job_not_in_flight_starts_no_status_check(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    async with serving(hosted_settings) as url, httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/webhooks/krea", json={"job_id": "not-ours", "status": "completed"})

    assert answer.status_code == 404
    assert krea_fake.request_counts["get_job"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[" * 60_000,
        b'["job_id"]',
        b'{"job_id": 42}',
        b'{"job_id": ""}',
        b'{"job_id": "' + b"x" * 300 + b'"}',
    ],
    ids=["text", "deeply-nested", "list", "number", "empty", "overlong"],
)
async def test_a_krea_webhook_that_is_not_a_job_object_is_a_400(hosted_settings: Settings, body: bytes) -> None:
    async with serving(hosted_settings) as url, httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/webhooks/krea", content=body)

    assert answer.status_code == 400
    assert "Traceback" not in answer.text and "\n" not in answer.json()["error"]


async def raw_post(url: str, path: str, headers: bytes, body: bytes) -> bytes:
    """Send a request by hand (a body that may never end); what the server answered before it hung up."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n")
    writer.write(headers + b"\r\n" + body)
    await writer.drain()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            answer += chunk
    except ConnectionResetError:
        pass  # it closed with our upload unread: what a refused body looks like
    finally:
        writer.close()
    return answer


@pytest.mark.parametrize("path", ["/webhooks/krea", "/webhooks/fal"])
async def test_an_oversize_webhook_body_is_refused_before_it_is_all_sent(hosted_settings: Settings, path: str) -> None:
    chunk = b"x" * 8192
    chunked = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    async with serving(hosted_settings) as url:
        declared = await raw_post(url, path, b"Content-Length: 200000000\r\n", chunk)
        streamed = await raw_post(url, path, b"Transfer-Encoding: chunked\r\n", chunked * (2 * MAX_BODY_BYTES // 8192))

    for answer in (declared, streamed):
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in answer.lower()


def fal_delivery(
    fal: FalFake, request_id: str, *, mode: str = "valid", now: float | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {"images": []}}).encode()
    return body, fal.signer.headers(request_id, fal.user_id, body, mode=mode, now=now)


async def test_fal_deliveries_that_do_not_verify_are_each_a_one_line_401(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    body, headers = fal_delivery(fal_fake, "req-1")
    unknown_key_body, unknown_key = fal_delivery(fal_fake, "req-1", mode="forged")  # a key fal never published
    cases = {
        "unknown key": (unknown_key_body, unknown_key),
        "body changed after signing": (body.replace(b'"OK"', b'"ERROR"'), headers),
        "says status OK, bad signature": (body, {**headers, "x-fal-webhook-signature": "ab" * 64}),
        "stale": fal_delivery(fal_fake, "req-1", mode="stale"),
        "from the future": fal_delivery(fal_fake, "req-1", now=time.time() + 600),
        "signature not hex": (body, {**headers, "x-fal-webhook-signature": "zz"}),
        "signature too short": (body, {**headers, "x-fal-webhook-signature": "ab"}),
        "timestamp not a number": (body, {**headers, "x-fal-webhook-timestamp": "1e9"}),
        "no headers": (body, {}),
    }
    async with serving(hosted_settings, fal_jwks_url=fal_fake.jwks_url) as url, httpx.AsyncClient() as http:
        answers = {
            name: await http.post(f"{url}/webhooks/fal", content=sent, headers=sent_headers)
            for name, (sent, sent_headers) in cases.items()
        }
        genuine = await http.post(f"{url}/webhooks/fal", content=body, headers=headers)

    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert "Traceback" not in answer.text and "\n" not in answer.json()["error"], name
    assert genuine.status_code == 404  # verified; just not a request of ours in flight


async def test_fal_deliveries_are_refused_in_one_line_while_its_keys_are_unreachable(
    hosted_settings: Settings, fal_fake: FalFake, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/.well-known/jwks.json"
    body, headers = fal_delivery(fal_fake, "req-1")
    caplog.set_level(logging.WARNING, logger="fluxroute.providers.webhooks")
    async with serving(hosted_settings, fal_jwks_url=down) as url, httpx.AsyncClient() as http:
        answers = [await http.post(f"{url}/webhooks/fal", content=body, headers=headers) for _ in range(3)]

    for answer in answers:
        assert answer.status_code == 401
        assert "keys are unavailable" in answer.json()["error"] and "Traceback" not in answer.text
    assert len([r for r in caplog.records if "keys unavailable" in r.getMessage()]) == 1


async def test_a_jwks_larger_than_its_bound_is_refused_and_nothing_verifies(fal_fake: FalFake) -> None:
    padded = json.dumps(fal_fake.signer.jwks()).encode() + b" " * MAX_JWKS_BYTES  # valid JSON, too large
    served = httpx.MockTransport(lambda request: httpx.Response(200, content=padded))
    body, headers = fal_delivery(fal_fake, "req-1")
    async with httpx.AsyncClient(transport=served) as client:
        verifier = FalWebhookVerifier(client, "https://fal.example/.well-known/jwks.json")
        with pytest.raises(WebhookRejected, match="keys are unavailable"):
            await verifier.verify(headers, body)

    served_small = httpx.MockTransport(lambda request: httpx.Response(200, content=padded[:-MAX_JWKS_BYTES]))
    async with httpx.AsyncClient(transport=served_small) as client:
        payload = await FalWebhookVerifier(client, "https://fal.example/.well-known/jwks.json").verify(headers, body)
    assert payload["request_id"] == "req-1"


def in_flight(store: JobStore, provider: str, provider_job_id: str) -> None:
    job, _ = store.create_job({"prompt": "a fox"})
    attempt = store.start_attempt(
        job.id, offer_id="krea-flux-dev", provider=provider, model="flux-dev", estimated_cost=Decimal("0.01")
    )
    store.mark_submitted(attempt.id, provider_job_id)


def test_one_status_check_per_job_per_window_holds_across_stores_sharing_a_file(tmp_path: Path) -> None:
    with JobStore(tmp_path / "shared.db") as one, JobStore(tmp_path / "shared.db") as other:
        in_flight(one, "krea", "job-1")

        assert one.claim_webhook_check("krea", "unknown-job", 2.0, now=100.0) == "unknown"
        assert one.claim_webhook_check("fal", "job-1", 2.0, now=100.0) == "unknown"  # another provider's id
        assert one.claim_webhook_check("krea", "job-1", 2.0, now=100.0) == "due"
        assert other.claim_webhook_check("krea", "job-1", 2.0, now=101.5) == "recent"
        assert one.claim_webhook_check("krea", "job-1", 2.0, now=102.0) == "due"
        assert other.claim_webhook_check("krea", "job-1", 2.0, now=102.1) == "recent"
        # a claim stamped a little earlier than the last recorded one (it waited for the lock) is in the same window
        assert other.claim_webhook_check("krea", "job-1", 2.0, now=101.9) == "recent"
