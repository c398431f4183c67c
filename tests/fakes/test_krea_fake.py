"""The Krea fake speaks the Krea API protocol: driven here with a raw httpx client."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.krea import KreaFake
from tests.fakes.webhooks import WebhookReceiver

FLUX = "/generate/image/bfl/flux-1-dev"
KREA_2_LARGE = "/generate/image/krea/krea-2/large"


@pytest.fixture
async def krea(krea_fake: KreaFake) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {krea_fake.token}"}
    async with httpx.AsyncClient(base_url=krea_fake.base_url, headers=headers) as client:
        yield client


async def poll(client: httpx.AsyncClient, job_id: str) -> tuple[dict[str, Any], list[str]]:
    """Poll like a client does until ``completed_at`` is set; return the job and the statuses seen."""
    seen: list[str] = []
    async with asyncio.timeout(5):
        while True:
            job = (await client.get(f"/jobs/{job_id}")).json()
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["completed_at"] is not None:
                return job, seen
            await asyncio.sleep(0.005)  # the polling interval of the protocol, not a wait for an event


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


async def test_flux_job_completes_with_a_downloadable_png_of_the_requested_size(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    created = await krea.post(FLUX, json={"prompt": "a lighthouse", "width": 1024, "height": 768})
    assert created.status_code == 200
    body = created.json()
    assert body["status"] == "queued" and body["completed_at"] is None and body["result"] is None

    job, seen = await poll(krea, body["job_id"])

    assert job["status"] == "completed" and seen[-1] == "completed"
    order = ["queued", "scheduled", "processing", "sampling", "completed"]
    assert [order.index(status) for status in seen] == sorted(order.index(status) for status in seen)
    image = await krea.get(job["result"]["urls"][0])
    assert image.headers["content-type"] == "image/png"
    assert png_size(image.content) == (1024, 768)
    assert krea_fake.billed == Decimal("0.007")
    assert krea_fake.charges == [(body["job_id"], Decimal("0.007"))]
    assert krea_fake.job(body["job_id"]).finished_at is not None


async def test_manual_job_passes_through_every_running_status_in_order(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.manual = True
    krea_fake.intermediate_complete = True
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    seen = []
    for _ in range(6):
        job = (await krea.get(f"/jobs/{job_id}")).json()
        seen.append(job["status"])
        assert (job["completed_at"] is None) == (job["status"] != "completed")
        if job["status"] != "completed":
            krea_fake.advance(job_id)
    assert seen == ["queued", "scheduled", "processing", "sampling", "intermediate-complete", "completed"]
    assert krea_fake.billed == Decimal("0.007")


@pytest.mark.parametrize(("model", "price"), [("medium", "0.03"), ("large", "0.06")])
async def test_krea_2_uses_the_1k_size_table_and_its_price(
    krea: httpx.AsyncClient, krea_fake: KreaFake, model: str, price: str
) -> None:
    krea_fake.image_scale = 1 / 16
    created = await krea.post(
        f"/generate/image/krea/krea-2/{model}", json={"prompt": "x", "aspect_ratio": "16:9", "resolution": "1K"}
    )
    job, _ = await poll(krea, created.json()["job_id"])
    image = await krea.get(job["result"]["urls"][0])
    assert png_size(image.content) == (1376 // 16, 768 // 16)
    assert krea_fake.billed == Decimal(price)


async def test_krea_2_style_references_cost_more(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    body = {
        "prompt": "x",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "image_style_references": [{"url": "https://example.com/a.png", "strength": 0.5}],
    }
    job_id = (await krea.post(KREA_2_LARGE, json=body)).json()["job_id"]
    await poll(krea, job_id)
    assert krea_fake.billed == Decimal("0.065")


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (FLUX, {"prompt": "x", "num_images": 2}, "num_images: unknown field"),
        (FLUX, {"prompt": "x", "width": 4096}, "width: must be <= 2368"),
        (FLUX, {"prompt": "x", "steps": "28"}, "steps: expected number"),
        (FLUX, {"prompt": "x", "steps": 2.5}, "steps: expected integer"),
        (FLUX, {"prompt": "x" * 1801}, "prompt: must be at most 1800 characters"),
        (FLUX, {"width": 1024}, "prompt: required"),
        (FLUX, {"prompt": "x", "guidance_scale": 30}, "guidance_scale: must be <= 24"),
        (FLUX, {"prompt": "x", "styles": [{"id": "s1"}]}, "styles[0].strength: required"),
        (FLUX, {"prompt": "x", "imageUrl": "https://a/b.png", "image_url": None}, "imageUrl: cannot be combined"),
        (KREA_2_LARGE, {"prompt": "x", "resolution": "1K"}, "aspect_ratio: required"),
        (KREA_2_LARGE, {"prompt": "x", "aspect_ratio": "5:4", "resolution": "1K"}, "aspect_ratio: must be one of"),
        (KREA_2_LARGE, {"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "width": 1024}, "width: unknown"),
        (
            KREA_2_LARGE,
            {"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "image_style_references": [{"strength": 1.5}]},
            "image_style_references[0].strength: must be <= 1",
        ),
        (
            KREA_2_LARGE,
            {"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "moodboards": [{}, {}]},
            "moodboards: must have at most 1 items",
        ),
    ],
)
async def test_invalid_bodies_get_400_naming_the_field_and_create_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake, path: str, body: dict[str, Any], error: str
) -> None:
    response = await krea.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert krea_fake.jobs == [] and krea_fake.billed == 0


async def test_deprecated_camel_case_aliases_are_accepted_and_normalised(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    body = {
        "prompt": "x",
        "imageUrl": "https://example.com/in.png",
        "presetStyles": [{"id": "s", "strength": 1}],
        "guidance_scale_flux": 3.5,
    }
    job_id = (await krea.post(FLUX, json=body)).json()["job_id"]
    stored = krea_fake.job(job_id).input
    assert stored["image_url"] == "https://example.com/in.png" and stored["guidance_scale"] == 3.5
    assert stored["styles"] == [{"id": "s", "strength": 1}] and "imageUrl" not in stored


async def test_a_wrong_or_missing_token_gets_401(krea_fake: KreaFake) -> None:
    async with httpx.AsyncClient(base_url=krea_fake.base_url) as anonymous:
        assert (await anonymous.post(FLUX, json={"prompt": "x"})).status_code == 401
        wrong = await anonymous.get("/jobs/x", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "error" in wrong.json()


async def test_a_job_dearer_than_the_balance_gets_402_and_completion_deducts(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.balance = Decimal("0.01")
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    await poll(krea, job_id)
    assert krea_fake.balance == Decimal("0.003")
    refused = await krea.post(FLUX, json={"prompt": "x"})
    assert refused.status_code == 402 and refused.json() == {"error": "Insufficient balance"}


async def test_reject_mode_answers_429_over_the_concurrency_limit(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.manual, krea_fake.concurrency_limit, krea_fake.over_limit = True, 1, "reject"
    assert (await krea.post(FLUX, json={"prompt": "a"})).status_code == 200
    refused = await krea.post(FLUX, json={"prompt": "b"})
    assert refused.status_code == 429
    assert refused.json() == {"error": "You have reached the maximum number of concurrent jobs."}
    assert len(krea_fake.jobs) == 1


async def test_backlog_mode_holds_jobs_behind_the_limit_and_releases_them_in_order(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.manual, krea_fake.concurrency_limit = True, 1
    first, second, third = [(await krea.post(FLUX, json={"prompt": p})).json() for p in "abc"]
    assert [first["status"], second["status"], third["status"]] == ["queued", "backlogged", "backlogged"]
    krea_fake.complete(first["job_id"])
    statuses = [(await krea.get(f"/jobs/{j['job_id']}")).json()["status"] for j in (second, third)]
    assert statuses == ["queued", "backlogged"]


@pytest.mark.parametrize("error", ["Injected failure", "Content moderation: NSFW content detected"])
async def test_a_failed_job_carries_result_error_and_is_not_billed(
    krea: httpx.AsyncClient, krea_fake: KreaFake, error: str
) -> None:
    krea_fake.faults.fail_job(error)
    job, _ = await poll(krea, (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"])
    assert job["status"] == "failed" and job["completed_at"] is not None
    assert job["result"] == {"error": error}
    assert krea_fake.billed == 0 and krea_fake.charges == []
    assert krea_fake.faults.fired == {"fail_job:create": 1}


@pytest.mark.parametrize(("advances", "status"), [(0, "queued"), (2, "processing")])
async def test_delete_cancels_a_queued_or_processing_job_once(
    krea: httpx.AsyncClient, krea_fake: KreaFake, advances: int, status: str
) -> None:
    krea_fake.manual = True
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    for _ in range(advances):
        krea_fake.advance(job_id)
    assert krea_fake.job(job_id).status == status
    cancelled = await krea.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    job = (await krea.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "cancelled" and job["completed_at"] is not None and job["result"] is None
    again = await krea.delete(f"/jobs/{job_id}")
    assert again.status_code == 400
    assert again.json() == {"error": "Job cannot be cancelled: its status is cancelled"}
    assert krea_fake.billed == 0 and krea_fake.charges == []


@pytest.mark.parametrize(
    ("advances", "status"),
    [(1, "scheduled"), (3, "sampling"), (4, "intermediate-complete"), (5, "completed"), (None, "failed")],
)
async def test_delete_refuses_every_other_status(
    krea: httpx.AsyncClient, krea_fake: KreaFake, advances: int | None, status: str
) -> None:
    krea_fake.manual, krea_fake.intermediate_complete = True, True
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    if advances is None:
        krea_fake.fail(job_id, "boom")
    for _ in range(advances or 0):
        krea_fake.advance(job_id)
    refused = await krea.delete(f"/jobs/{job_id}")
    assert refused.status_code == 400
    assert refused.json() == {"error": f"Job cannot be cancelled: its status is {status}"}
    assert krea_fake.job(job_id).status == status and krea_fake.job(job_id).outcome != "cancelled"


async def test_delete_refuses_a_backlogged_job(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.manual, krea_fake.concurrency_limit = True, 1
    await krea.post(FLUX, json={"prompt": "a"})
    behind = (await krea.post(FLUX, json={"prompt": "b"})).json()
    assert behind["status"] == "backlogged"
    refused = await krea.delete(f"/jobs/{behind['job_id']}")
    assert refused.status_code == 400
    assert refused.json() == {"error": "Job cannot be cancelled: its status is backlogged"}
    assert (await krea.get(f"/jobs/{behind['job_id']}")).json()["status"] == "backlogged"


async def test_status_polls_over_the_rate_limit_get_429_with_retry_after(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.manual, krea_fake.status_rate_limit, krea_fake.status_retry_after = True, (2, 60.0), "7"
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    assert [(await krea.get(f"/jobs/{job_id}")).status_code for _ in range(2)] == [200, 200]
    limited = await krea.get(f"/jobs/{job_id}")
    assert (limited.status_code, limited.json()) == (429, {"error": "Too many requests"})
    assert limited.headers["retry-after"] == "7"
    assert (await krea.get("/jobs")).status_code == 200  # only job polls are limited
    assert krea_fake.request_counts["get_job_429"] == 1 and krea_fake.request_counts["get_job"] == 3
    krea_fake.status_rate_limit = None
    assert (await krea.get(f"/jobs/{job_id}")).status_code == 200


async def test_the_status_rate_limit_window_slides(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.manual, krea_fake.status_rate_limit = True, (1, 0.05)
    job_id = (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"]
    assert (await krea.get(f"/jobs/{job_id}")).status_code == 200
    codes = []
    async with asyncio.timeout(5):
        while not codes or codes[-1] == 429:
            codes.append((await krea.get(f"/jobs/{job_id}")).status_code)
            await asyncio.sleep(0.005)  # a client's polling interval
    assert codes[0] == 429 and codes[-1] == 200
    assert krea_fake.request_counts["get_job_429"] == len(codes) - 1


async def test_result_files_expire_after_file_expiry_s(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.image_scale = 1 / 16
    job, _ = await poll(krea, (await krea.post(FLUX, json={"prompt": "x"})).json()["job_id"])
    url = job["result"]["urls"][0]
    krea_fake.file_expiry_s = 3600.0
    assert (await krea.get(url)).status_code == 200
    krea_fake.file_expiry_s = 0.0
    gone = await krea.get(url)
    assert (gone.status_code, gone.json()) == (404, {"error": "Not Found"})


def test_reset_restores_every_new_config_attribute(krea_fake: KreaFake) -> None:
    krea_fake.status_rate_limit, krea_fake.status_retry_after, krea_fake.file_expiry_s = (1, 1.0), "9", 0.0
    krea_fake.faults.garble()
    krea_fake.faults.fired["garble:create"] += 1
    krea_fake.reset()
    assert (krea_fake.status_rate_limit, krea_fake.status_retry_after, krea_fake.file_expiry_s) == (None, "1", None)
    assert krea_fake.faults.queued == [] and krea_fake.faults.fired == {}


async def test_unknown_jobs_are_404(krea: httpx.AsyncClient) -> None:
    for response in (await krea.get("/jobs/4d0e5f97-9721-4422-b88c-73a9032d7de1"), await krea.delete("/jobs/x")):
        assert response.status_code == 404
        assert response.json() == {"error": "Job not found or not authorized"}


async def test_webhook_gets_the_full_job_json_when_the_job_ends(
    krea: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    created = await krea.post(FLUX, json={"prompt": "x"}, headers={"X-Webhook-URL": webhook_receiver.url})
    delivery = await webhook_receiver.wait_for(1)
    payload = delivery.json()
    assert payload["job_id"] == created.json()["job_id"] and payload["status"] == "completed"
    assert payload == (await krea.get(f"/jobs/{payload['job_id']}")).json()
    assert "x-fal-webhook-signature" not in delivery.headers  # Krea documents no signature


async def test_webhook_delivery_is_retried_after_a_5xx(
    krea: httpx.AsyncClient, krea_fake: KreaFake, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.respond_with(500)
    await krea.post(FLUX, json={"prompt": "x"}, headers={"X-Webhook-URL": webhook_receiver.url})
    second = await webhook_receiver.wait_for(2)
    assert second.body == webhook_receiver.deliveries[0].body
    first_attempt = krea_fake.webhook_attempts[0]  # recorded before the retry was sent
    assert (first_attempt.attempt, first_attempt.status_code) == (1, 500)


async def test_injected_503_rejects_before_acceptance(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.faults.http_error(503, headers={"Retry-After": "1"}, route="create")
    refused = await krea.post(FLUX, json={"prompt": "x"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"error": "Service Unavailable"}
    assert (await krea.post(FLUX, json={"prompt": "x"})).status_code == 200
    assert len(krea_fake.jobs) == 1 and krea_fake.request_counts["create"] == 2


async def test_a_dropped_connection_is_a_transport_error_and_creates_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.faults.drop(route="create")
    with pytest.raises(httpx.RemoteProtocolError):
        await krea.post(FLUX, json={"prompt": "x"})
    assert krea_fake.jobs == []


async def test_a_drop_after_acceptance_still_runs_and_bills_the_job(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.faults.drop_after_accept()
    with pytest.raises(httpx.RemoteProtocolError):
        await krea.post(FLUX, json={"prompt": "x"})
    (job,) = krea_fake.jobs
    listed = (await krea.get("/jobs")).json()["items"]
    finished, _ = await poll(krea, listed[0]["job_id"])
    assert finished["status"] == "completed" and krea_fake.charges == [(job.id, Decimal("0.007"))]


async def test_a_delayed_response_trips_a_client_timeout(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.faults.delay(1.0, route="get_job")
    with pytest.raises(httpx.ReadTimeout):
        await krea.get("/jobs/x", timeout=0.05)


async def test_list_jobs_pages_newest_first_with_a_cursor(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.manual = True
    ids = [(await krea.post(FLUX, json={"prompt": p})).json()["job_id"] for p in "abc"]
    page = (await krea.get("/jobs", params={"limit": 2})).json()
    assert [j["job_id"] for j in page["items"]] == ids[:0:-1]
    rest = (await krea.get("/jobs", params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert [j["job_id"] for j in rest["items"]] == ids[:1] and rest["next_cursor"] is None


async def test_list_jobs_filters_by_types_and_lists_the_accounts_other_jobs_without(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.manual = True
    ours = (await krea.post(FLUX, json={"prompt": "ours"})).json()["job_id"]
    foreign = krea_fake.add_foreign_job("k1").id  # e.g. made in Krea's web app
    every = [j["job_id"] for j in (await krea.get("/jobs")).json()["items"]]
    flux = [j["job_id"] for j in (await krea.get("/jobs", params={"types": "flux"})).json()["items"]]
    k1 = [j["job_id"] for j in (await krea.get("/jobs", params={"types": "flux,k1"})).json()["items"]]
    assert every == [foreign, ours] and flux == [ours] and k1 == [foreign, ours]
    assert all("type" not in j for j in (await krea.get("/jobs")).json()["items"])  # items carry no type


async def test_a_backlogged_job_starts_the_moment_a_slot_frees(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.concurrency_limit = 1
    first, second = [(await krea.post(FLUX, json={"prompt": p})).json()["job_id"] for p in "ab"]
    await poll(krea, second)
    ahead, behind = krea_fake.job(first), krea_fake.job(second)
    assert [status for status, _ in behind.history][:2] == ["backlogged", "queued"]
    assert behind.history[1][1] == ahead.finished_at  # simulated time, not when someone polled
    assert krea_fake.request_counts["get_job"] >= 1 and krea_fake.billed == Decimal("0.014")


async def test_garble_before_acceptance_answers_truncated_json_and_creates_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    fault = krea_fake.faults.garble(route="create")
    garbled = await krea.post(FLUX, json={"prompt": "x"})
    assert garbled.status_code == 200 and garbled.headers["content-type"] == "application/json"
    assert garbled.content == b'{"job_id": "'
    with pytest.raises(json.JSONDecodeError):
        garbled.json()
    assert krea_fake.jobs == [] and fault.hits == 1 and krea_fake.faults.queued == []
    assert krea_fake.faults.fired == {"garble:create": 1}
    assert (await krea.post(FLUX, json={"prompt": "x"})).status_code == 200  # used up


async def test_garble_after_acceptance_still_runs_and_bills_the_job(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.faults.garble(after_accept=True, route="create", status=502, body=b"{not json")
    garbled = await krea.post(FLUX, json={"prompt": "x"})
    assert (garbled.status_code, garbled.content) == (502, b"{not json")
    (job,) = krea_fake.jobs
    finished, _ = await poll(krea, job.id)
    assert finished["status"] == "completed" and krea_fake.charges == [(job.id, Decimal("0.007"))]
    assert krea_fake.faults.fired == {"garble:create:after": 1}


async def test_faults_record_every_hit_after_leaving_the_queue(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.manual = True
    errors = krea_fake.faults.http_error(503, route="create", times=2)
    anywhere = krea_fake.faults.http_error(500)  # no route: keyed by the route the request took
    dropped = krea_fake.faults.drop_after_accept()
    failing = krea_fake.faults.fail_job("nope")
    assert [(await krea.post(FLUX, json={"prompt": "x"})).status_code for _ in range(3)] == [503, 503, 500]
    with pytest.raises(httpx.RemoteProtocolError):
        await krea.post(FLUX, json={"prompt": "x"})
    assert (errors.hits, anywhere.hits, dropped.hits, failing.hits) == (2, 1, 1, 1)
    assert krea_fake.faults.queued == [] and krea_fake.faults.pending() == []
    assert krea_fake.faults.fired == {
        "http_error:create": 3,
        "drop:create:after": 1,
        "fail_job:create": 1,
    }
    late = krea_fake.faults.http_error(404, route="get_job")
    assert (await krea.get("/jobs/x")).status_code == 404 and late.hits == 1
    assert krea_fake.faults.fired["http_error:get_job"] == 1
    krea_fake.faults.clear()
    assert krea_fake.faults.fired == {}


# --- assets (POST /assets, GET /assets/{id}) ---------------------------------------------------------------------


def png_bytes(width: int = 40, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_an_uploaded_asset_is_described_served_and_usable_as_an_init_image(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    data = png_bytes()
    uploaded = await krea.post("/assets", files={"file": ("in.png", data, "image/png")}, data={"description": "d"})
    assert uploaded.status_code == 200
    asset = uploaded.json()
    assert set(asset) >= {"id", "image_url", "uploaded_at", "width", "height", "size_bytes", "mime_type"}
    assert (asset["width"], asset["height"], asset["size_bytes"]) == (40, 24, len(data))
    assert asset["mime_type"] == "image/png" and asset["description"] == "d"
    assert (await krea.get(f"/assets/{asset['id']}")).json() == asset
    served = await krea.get(asset["image_url"])
    assert served.status_code == 200 and served.content == data

    created = await krea.post(FLUX, json={"prompt": "x", "image_url": asset["image_url"], "strength": 0.5})
    assert created.status_code == 200
    assert krea_fake.job(created.json()["job_id"]).input["image_url"] == asset["image_url"]
    assert krea_fake.billed == 0  # uploads are not billed


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (None, "file: required"),
        ({"file": ("a.gif", b"GIF89a", "image/gif")}, "Invalid file type"),
        ({"file": ("a.svg", b"<svg/>", "image/svg+xml")}, "Invalid file type"),
    ],
)
async def test_an_upload_without_a_file_or_of_another_type_is_400(
    krea: httpx.AsyncClient, krea_fake: KreaFake, files: dict[str, Any] | None, says: str
) -> None:
    response = await krea.post("/assets", files=files or {"other": ("x", b"x", "text/plain")})
    assert response.status_code == 400 and response.json()["error"].startswith(says)
    assert krea_fake.assets == {}


async def test_an_upload_over_the_size_limit_is_400(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.asset_max_bytes = 20  # stands for the documented 75 MB
    response = await krea.post("/assets", files={"file": ("in.png", png_bytes(), "image/png")})
    assert response.status_code == 400 and "size" in response.json()["error"]
    assert krea_fake.assets == {}


async def test_uploads_need_the_token_and_unknown_assets_are_404(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    async with httpx.AsyncClient(base_url=krea_fake.base_url) as anonymous:
        assert (await anonymous.post("/assets", files={"file": ("a.png", png_bytes(), "image/png")})).status_code == 401
    assert (await krea.get("/assets/00000000-0000-0000-0000-000000000000")).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_url", "data:image/png;base64,iVBORw0KGgo="),
        ("image_style_references", [{"url": "data:image/png;base64,iVBORw0KGgo=", "strength": 1}]),
    ],
)
async def test_a_data_uri_in_an_image_field_is_400_and_creates_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake, field: str, value: object
) -> None:
    response = await krea.post(FLUX, json={"prompt": "x", field: value})
    assert response.status_code == 400 and "must be an http(s) URL" in response.json()["error"]
    assert krea_fake.jobs == []


async def test_an_image_url_naming_no_file_of_the_fake_is_400(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    response = await krea.post(FLUX, json={"prompt": "x", "image_url": f"{krea_fake.base_url}/files/missing.png"})
    assert response.status_code == 400 and "could not be fetched" in response.json()["error"]


@pytest.mark.parametrize("status", [500, 413])
async def test_injected_upload_faults_store_nothing(krea: httpx.AsyncClient, krea_fake: KreaFake, status: int) -> None:
    krea_fake.faults.http_error(status, route="upload_asset")
    response = await krea.post("/assets", files={"file": ("in.png", png_bytes(), "image/png")})
    assert response.status_code == status and krea_fake.assets == {}
    assert krea_fake.faults.fired["http_error:upload_asset"] == 1


# --- enhance endpoints (POST /generate/enhance/...) ---------------------------------------------------------------

STANDARD = "/generate/enhance/topaz/standard-enhance"
GENERATIVE = "/generate/enhance/topaz/generative-enhance"
BLOOM = "/generate/enhance/topaz/bloom-enhance"
KREA_ENHANCE = "/generate/enhance/krea/enhance"
SOURCE = "https://example.com/in.png"  # Topaz reads no input size: a URL elsewhere is taken as it is


def topaz_body(path: str, **fields: Any) -> dict[str, Any]:
    """The body fluxroute sends to each Topaz endpoint (see the catalog's enhance offers)."""
    extras: dict[str, dict[str, Any]] = {
        STANDARD: {"model": "Standard V2"},
        GENERATIVE: {"model": "Redefine", "creativity": 3},
        BLOOM: {"model": "Reimagine", "creativity": 5},
    }
    extra = extras[path]
    return {"image_url": SOURCE, "width": 2048, "height": 1536, **extra, "output_format": "png", **fields}


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (no decoding: enhance results may be far over Pillow's bomb limit)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def upload(krea: httpx.AsyncClient, width: int, height: int) -> str:
    uploaded = await krea.post("/assets", files={"file": ("in.png", png_bytes(width, height), "image/png")})
    assert uploaded.status_code == 200
    return str(uploaded.json()["image_url"])


@pytest.mark.parametrize(("path", "price"), [(STANDARD, "0.08"), (GENERATIVE, "0.16"), (BLOOM, "0.16")])
async def test_a_topaz_job_runs_the_lifecycle_to_a_png_of_the_asked_output_size(
    krea: httpx.AsyncClient, krea_fake: KreaFake, path: str, price: str
) -> None:
    created = await krea.post(path, json=topaz_body(path))
    assert created.status_code == 200
    body = created.json()
    assert body["status"] == "queued" and body["result"] is None and body["completed_at"] is None

    job, seen = await poll(krea, body["job_id"])

    assert job["status"] == "completed" and "error" not in job  # Topaz's jobs: the image jobs' shape
    order = ["queued", "scheduled", "processing", "sampling", "completed"]
    assert [order.index(status) for status in seen] == sorted(order.index(status) for status in seen)
    image = await krea.get(job["result"]["urls"][0])
    assert image.headers["content-type"] == "image/png"
    assert png_size(image.content) == (2048, 1536)
    assert krea_fake.charges == [(body["job_id"], Decimal(price))]


async def test_krea_enhance_scales_the_uploaded_input_and_its_jobs_carry_an_error_field(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    url = await upload(krea, 300, 200)
    body = {"image_url": url, "prompt": "sharper", "image_scaling_factor": 2.5, "ai_strength": 0.4}
    created = await krea.post(KREA_ENHANCE, json=body)
    assert created.status_code == 200, created.text
    job, _ = await poll(krea, created.json()["job_id"])
    assert job["status"] == "completed" and job["error"] is None
    image = await krea.get(job["result"]["urls"][0])
    assert png_size(image.content) == (750, 500)
    assert krea_fake.billed == Decimal("0.05")


async def test_krea_enhance_reads_an_earlier_results_logical_size_and_a_loopback_url(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.image_scale = 1 / 8  # served smaller: the logical size still counts
    first, _ = await poll(
        krea, (await krea.post(FLUX, json={"prompt": "x", "width": 1024, "height": 768})).json()["job_id"]
    )
    again = await krea.post(KREA_ENHANCE, json={"image_url": first["result"]["urls"][0], "image_scaling_factor": 1.5})
    job, _ = await poll(krea, again.json()["job_id"])
    assert krea_fake.job(job["job_id"]).meta["size"] == (1536, 1152)
    assert image_size((await krea.get(job["result"]["urls"][0])).content) == (192, 144)

    # the same file by another loopback name is not this fake's: fetched over HTTP (a bounded read), default x2
    krea_fake.image_scale = 1.0
    asset = await upload(krea, 40, 30)
    fetched = asset.replace("127.0.0.1", "localhost")
    downloads = krea_fake.request_counts["download"]
    created = await krea.post(KREA_ENHANCE, json={"image_url": fetched})
    assert created.status_code == 200, created.text
    assert krea_fake.request_counts["download"] == downloads + 1
    assert krea_fake.job(created.json()["job_id"]).meta["size"] == (80, 60)


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("https://example.com/in.png", 422, "image_url: could not read image_url"),
        ("http://127.0.0.1:9/in.png", 422, "image_url: could not read image_url"),
        ("data:image/png;base64,iVBORw0KGgo=", 400, "image_url: must be an http(s) URL"),
        ("{base}/files/missing.png", 400, "image_url: the image could not be fetched"),
    ],
)
async def test_krea_enhance_refuses_an_input_it_cannot_read_and_creates_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake, url: str, status: int, says: str
) -> None:
    response = await krea.post(KREA_ENHANCE, json={"image_url": url.format(base=krea_fake.base_url)})
    assert response.status_code == status and response.json()["error"].startswith(says)
    assert krea_fake.jobs == [] and krea_fake.billed == 0


async def test_krea_enhance_refuses_an_output_over_the_fakes_cap(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    url = await upload(krea, 40, 30)
    response = await krea.post(KREA_ENHANCE, json={"image_url": url, "image_scaling_factor": 801})
    assert response.status_code == 400
    assert response.json()["error"].startswith("image_scaling_factor: the output would be 32040x24030")
    assert krea_fake.jobs == []


@pytest.mark.parametrize(
    ("path", "change", "error"),
    [
        (STANDARD, {"upscale": 2}, "upscale: unknown field"),
        (STANDARD, {"width": None}, "width: expected number"),
        (STANDARD, {"width": 32001}, "width: must be <= 32000"),
        (STANDARD, {"height": 0}, "height: must be >= 1"),
        (STANDARD, {"model": "Standard"}, "model: must be one of Standard V2, Low Resolution V2"),
        (STANDARD, {"output_format": "gif"}, "output_format: must be one of png, jpg, webp"),
        (STANDARD, {"strength": 0}, "strength: must be >= 0.01"),
        (STANDARD, {"face_enhancement": "yes"}, "face_enhancement: expected boolean"),
        (STANDARD, {"image_scaling_factor": 33}, "image_scaling_factor: must be <= 32"),
        (GENERATIVE, {"creativity": 2.5}, "creativity: expected integer"),
        (GENERATIVE, {"creativity": 7}, "creativity: must be <= 6"),
        (GENERATIVE, {"texture": 0}, "texture: must be >= 1"),
        (GENERATIVE, {"model": "Standard V2"}, "model: must be one of Redefine"),
        (BLOOM, {"width": 10001}, "width: must be <= 10000"),
        (BLOOM, {"model": "Redefine"}, "model: must be one of Reimagine"),
        (BLOOM, {"creativity": 10}, "creativity: must be <= 9"),
        (BLOOM, {"texture": 3}, "texture: unknown field"),
        (BLOOM, {"imageUrl": SOURCE}, "imageUrl: cannot be combined with image_url"),
    ],
)
async def test_invalid_topaz_bodies_get_400_naming_the_field_and_create_nothing(
    krea: httpx.AsyncClient, krea_fake: KreaFake, path: str, change: dict[str, Any], error: str
) -> None:
    response = await krea.post(path, json=topaz_body(path, **change))
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert krea_fake.jobs == [] and krea_fake.billed == 0


@pytest.mark.parametrize(
    ("path", "drop"),
    [(STANDARD, "width"), (STANDARD, "model"), (GENERATIVE, "height"), (BLOOM, "image_url"), (BLOOM, "model")],
)
async def test_topaz_required_fields(krea: httpx.AsyncClient, krea_fake: KreaFake, path: str, drop: str) -> None:
    body = {k: v for k, v in topaz_body(path).items() if k != drop}
    response = await krea.post(path, json=body)
    assert (response.status_code, response.json()["error"]) == (400, f"{drop}: required")
    assert krea_fake.jobs == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"image_url": "https://example.com/" + "a" * 1010}, "image_url: must be at most 1024 characters"),
        ({"image_url": None}, "image_url: required"),
        ({"ai_strength": 0.05}, "ai_strength: must be >= 0.1"),
        ({"ai_strength": 1.5}, "ai_strength: must be <= 1"),
        ({"image_scaling_factor": 0.05}, "image_scaling_factor: must be >= 0.1"),
        ({"clarity_strength": 13}, "clarity_strength: must be <= 12"),
        ({"resemblance_strength": 3}, "resemblance_strength: must be <= 2.5"),
        ({"rescale_color": 1}, "rescale_color: expected boolean"),
        ({"width": 1024}, "width: unknown field"),
    ],
)
async def test_invalid_krea_enhance_bodies_get_400_naming_the_field(
    krea: httpx.AsyncClient, krea_fake: KreaFake, change: dict[str, Any], error: str
) -> None:
    body = {"image_url": SOURCE, "prompt": "x", "image_scaling_factor": 2, "ai_strength": 0.4, **change}
    response = await krea.post(KREA_ENHANCE, json={k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert krea_fake.jobs == []


async def test_enhance_prices_are_the_fakes_own_and_settable(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    assert krea_fake.prices["enhance/topaz/standard-enhance"] == Decimal("0.08")
    krea_fake.set_price("enhance/topaz/standard-enhance", Decimal("0.25"))
    job_id = (await krea.post(STANDARD, json=topaz_body(STANDARD))).json()["job_id"]
    await poll(krea, job_id)
    assert krea_fake.charges == [(job_id, Decimal("0.25"))]
    krea_fake.balance = Decimal("0.10")
    refused = await krea.post(STANDARD, json=topaz_body(STANDARD))
    assert refused.status_code == 402 and len(krea_fake.jobs) == 1
    with pytest.raises(KeyError):
        krea_fake.set_price("enhance/topaz/unknown", Decimal("1"))
    krea_fake.reset()
    assert krea_fake.prices["enhance/topaz/standard-enhance"] == Decimal("0.08")


async def test_topaz_answers_jpeg_by_default_and_webp_when_asked(krea: httpx.AsyncClient) -> None:
    for fmt, content_type, pil in [(None, "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")]:
        body = topaz_body(STANDARD, width=64, height=48, output_format=fmt)
        created = await krea.post(STANDARD, json={k: v for k, v in body.items() if v is not None})
        job, _ = await poll(krea, created.json()["job_id"])
        image = await krea.get(job["result"]["urls"][0])
        assert image.headers["content-type"] == content_type
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert (decoded.format, decoded.size) == (pil, (64, 48))


async def test_a_32000_px_output_is_served_quickly_and_compressed(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    body = topaz_body(STANDARD, width=32000, height=32000)
    job, _ = await poll(krea, (await krea.post(STANDARD, json=body)).json()["job_id"])
    image = await krea.get(job["result"]["urls"][0])
    assert image.headers["content-type"] == "image/png" and len(image.content) < 1_000_000
    assert image_size(image.content) == (32000, 32000)


async def test_a_failed_krea_enhance_job_carries_error_code_and_message_and_is_not_billed(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    krea_fake.faults.fail_job("upscaler ran out of memory", code="oom")
    url = await upload(krea, 40, 30)
    job, _ = await poll(krea, (await krea.post(KREA_ENHANCE, json={"image_url": url})).json()["job_id"])
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"] == {"code": "oom", "message": "upscaler ran out of memory"}
    assert krea_fake.billed == 0 and krea_fake.faults.fired == {"fail_job:create": 1}


async def test_a_failed_topaz_job_carries_result_error(krea: httpx.AsyncClient, krea_fake: KreaFake) -> None:
    krea_fake.faults.fail_job("topaz said no")
    job, _ = await poll(krea, (await krea.post(BLOOM, json=topaz_body(BLOOM))).json()["job_id"])
    assert job["status"] == "failed" and job["result"] == {"error": "topaz said no"}
    assert krea_fake.billed == 0


@pytest.mark.parametrize("fault", ["garble", "http_error", "drop"])
async def test_a_fault_after_acceptance_still_runs_and_bills_the_enhance_job(
    krea: httpx.AsyncClient, krea_fake: KreaFake, fault: str
) -> None:
    if fault == "garble":
        krea_fake.faults.garble(after_accept=True, route="create", status=200)
    elif fault == "http_error":
        krea_fake.faults.http_error(502, after_accept=True, route="create")
    else:
        krea_fake.faults.drop_after_accept()
    try:
        answer = await krea.post(GENERATIVE, json=topaz_body(GENERATIVE))
        assert answer.status_code != 200 or answer.content == b'{"job_id": "'
    except httpx.RemoteProtocolError:
        assert fault == "drop"
    (job,) = krea_fake.jobs
    finished, _ = await poll(krea, job.id)
    assert finished["status"] == "completed" and krea_fake.charges == [(job.id, Decimal("0.16"))]
    assert krea_fake.faults.fired == {f"{fault}:create:after": 1}


async def test_enhance_results_expire_and_their_jobs_have_their_own_listing_type(
    krea: httpx.AsyncClient, krea_fake: KreaFake
) -> None:
    job, _ = await poll(
        krea, (await krea.post(STANDARD, json=topaz_body(STANDARD, width=64, height=64))).json()["job_id"]
    )
    url = job["result"]["urls"][0]
    assert (await krea.get(url)).status_code == 200
    krea_fake.file_expiry_s = 0.0
    assert (await krea.get(url)).status_code == 404
    # an enhance input that expired is refused like any missing file
    again = await krea.post(KREA_ENHANCE, json={"image_url": url})
    assert again.status_code == 400
    for types, listed in [("flux,krea-2", []), ("topaz-enhance", [job["job_id"]])]:
        items = (await krea.get("/jobs", params={"types": types})).json()["items"]
        assert [item["job_id"] for item in items] == listed
