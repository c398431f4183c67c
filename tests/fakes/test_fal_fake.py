"""The fal fake speaks fal's queue protocol: driven here with the real fal-client."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import fal_client
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from PIL import Image

from fluxroute.providers.image_header import png_or_webp_size
from tests.fakes.fal import FalFake
from tests.fakes.fal_wire import cheap_png
from tests.fakes.krea import KreaFake
from tests.fakes.webhooks import Delivery, WebhookReceiver

KREA = "fal-ai/flux/krea"


@pytest.fixture(autouse=True)
def _fal_client_hosts(fal_client_on_fake: FalFake) -> FalFake:
    """These tests drive fal-client itself against the fake: its own hosts point there."""
    return fal_client_on_fake


@pytest.fixture
async def fal(fal_fake: FalFake) -> AsyncIterator[fal_client.AsyncClient]:
    yield fal_client.AsyncClient(key=fal_fake.key)


@pytest.fixture
async def raw(fal_fake: FalFake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fal_fake.base_url, headers={"Authorization": f"Key {fal_fake.key}"}) as c:
        yield c


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_submit_poll_with_logs_and_fetch_the_result(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    handle = await fal.submit(KREA, {"prompt": "a red fox", "seed": 7})
    events = [event async for event in handle.iter_events(with_logs=True, interval=0.005)]
    result = await handle.get()

    assert isinstance(events[-1], fal_client.Completed)
    kinds = [type(event).__name__ for event in events]
    assert kinds == sorted(kinds, key=["Queued", "InProgress", "Completed"].index)
    assert events[-1].logs is not None and events[-1].logs[-1]["message"] == "step 28/28"
    assert events[-1].metrics["inference_time"] > 0
    (image,) = result["images"]
    assert (image["width"], image["height"], image["content_type"]) == (1024, 768, "image/jpeg")
    assert result["seed"] == 7 and result["has_nsfw_concepts"] == [False] and result["prompt"] == "a red fox"
    downloaded = decoded((await raw.get(image["url"])).content)
    assert downloaded.format == "JPEG" and downloaded.size == (1024, 768)
    assert fal_fake.billed == Decimal("0.025") and fal_fake.charges == [(handle.request_id, Decimal("0.025"))]


async def test_follow_up_urls_use_owner_and_app_only(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    handle = await fal.submit("fal-ai/flux/krea/image-to-image", {"prompt": "x", "image_url": "https://a/b.png"})
    assert handle.status_url == f"{fal_fake.base_url}/fal-ai/flux/requests/{handle.request_id}/status"
    assert handle.cancel_url.endswith(f"/fal-ai/flux/requests/{handle.request_id}/cancel")
    wrong = await raw.get(f"/fal-ai/flux/krea/image-to-image/requests/{handle.request_id}/status")
    assert wrong.status_code in (404, 405)
    assert "x-fal-request-id" in (await raw.get(handle.status_url)).headers


async def test_queue_position_counts_down_as_jobs_ahead_finish(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.queue_ahead = 3
    submitted = (await raw.post(f"/{KREA}", json={"prompt": "x"})).json()
    assert (submitted["status"], submitted["queue_position"]) == ("IN_QUEUE", 3)
    handle = await fal.get_handle(KREA, submitted["request_id"])
    events = [event async for event in handle.iter_events(interval=0.002)]
    positions = [event.position for event in events if isinstance(event, fal_client.Queued)]
    assert positions == sorted(positions, reverse=True) and isinstance(events[-1], fal_client.Completed)


async def test_invalid_input_fails_at_run_time_with_a_422_detail(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await fal.subscribe(KREA, {"prompt": "x", "num_images": 9, "guidance_scale": 0.5}, interval=0.005)
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"]  # also caught.value.message, typed str by fal-client
    assert [(d["loc"], d["type"]) for d in detail] == [
        (["body", "guidance_scale"], "greater_than_equal"),
        (["body", "num_images"], "less_than_equal"),
    ]
    assert detail[1]["ctx"] == {"le": 4}
    assert fal_fake.billed == 0


async def test_validate_at_submit_rejects_before_queueing(fal: fal_client.AsyncClient, fal_fake: FalFake) -> None:
    fal_fake.validate_at_submit = True
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await fal.submit(KREA, {"image_size": {"width": 4096, "height": 4096}})
    assert caught.value.status_code == 422
    detail = caught.value.response.json()["detail"]
    assert [d["type"] for d in detail] == ["missing", "value_error"]
    assert detail[1]["ctx"] == {"max_pixels": 2048 * 2048}
    assert fal_fake.jobs == []


async def test_cancel_then_cancel_again(fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient) -> None:
    fal_fake.manual = True
    handle = await fal.submit(KREA, {"prompt": "x"})
    response = await raw.put(handle.cancel_url)
    assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await handle.cancel()
    assert caught.value.status_code == 400 and json.loads(caught.value.message) == {"status": "ALREADY_COMPLETED"}
    status = await handle.status()
    assert isinstance(status, fal_client.Completed) and status.error_type == "request_cancelled"
    unknown = await raw.put("/fal-ai/flux/requests/00000000-0000-0000-0000-000000000000/cancel")
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})
    assert fal_fake.billed == 0


async def test_result_is_not_available_before_completion(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.manual = True
    handle = await fal.submit(KREA, {"prompt": "x"})
    early = await raw.get(handle.response_url)
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    fal_fake.advance(handle.request_id)
    assert isinstance(await handle.status(with_logs=True), fal_client.InProgress)
    fal_fake.complete(handle.request_id)
    assert (await raw.get(handle.response_url)).status_code == 200


async def test_nsfw_prompts_are_flagged_and_blacked_out(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.nsfw_prompts = ["forbidden"]
    fal_fake.image_scale = 1 / 8
    result = await fal.subscribe(
        KREA, {"prompt": "a Forbidden scene", "num_images": 2, "output_format": "png"}, interval=0.005
    )
    assert result["has_nsfw_concepts"] == [True, True]
    image = decoded((await raw.get(result["images"][0]["url"])).content)
    assert image.format == "PNG" and image.size == (128, 96) and image.getextrema() == ((0, 0),) * 3


def verify(delivery: Delivery, jwks: dict[str, list[dict[str, str]]]) -> bool:
    """What a receiver must do: rebuild the message and try every published Ed25519 key."""
    headers = delivery.headers
    digest = hashlib.sha256(delivery.body).hexdigest()
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            digest,
        ]
    ).encode()
    for key in jwks["keys"]:
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4)))
        try:
            public.verify(bytes.fromhex(headers["x-fal-webhook-signature"]), message)
            return True
        except InvalidSignature:
            continue
    return False


async def test_webhook_is_signed_with_a_key_from_the_jwks(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    handle = await fal.submit(KREA, {"prompt": "x"}, webhook_url=webhook_receiver.url)
    delivery = await webhook_receiver.wait_for(1)
    jwks = (await raw.get(fal_fake.jwks_url)).json()

    assert verify(delivery, jwks)
    assert abs(int(delivery.headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    body = delivery.json()
    assert body["request_id"] == handle.request_id and body["status"] == "OK" and body["error"] is None
    assert body["payload"] == await handle.get()

    fal_fake.webhook_signing = "forged"
    await fal.submit(KREA, {"prompt": "x"}, webhook_url=webhook_receiver.url)
    assert not verify(await webhook_receiver.wait_for(2), jwks)
    fal_fake.webhook_signing = "stale"
    await fal.submit(KREA, {"prompt": "x"}, webhook_url=webhook_receiver.url)
    stale = await webhook_receiver.wait_for(3)
    assert verify(stale, jwks) and time.time() - int(stale.headers["x-fal-webhook-timestamp"]) > 300


async def test_failed_request_webhook_reports_error_and_payload(
    fal: fal_client.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    await fal.submit(KREA, {"num_images": 2}, webhook_url=webhook_receiver.url)
    body = (await webhook_receiver.wait_for(1)).json()
    assert body["status"] == "ERROR" and body["error"] == "Invalid status code: 422"
    assert body["payload"]["detail"][0]["loc"] == ["body", "prompt"]


async def test_fal_client_retries_429_by_itself(fal: fal_client.AsyncClient, fal_fake: FalFake) -> None:
    fal_fake.faults.http_error(429, headers={"Retry-After": "1"}, route="submit", times=2)
    result = await fal.subscribe(KREA, {"prompt": "x"}, interval=0.005)
    assert result["images"] and fal_fake.request_counts["submit"] == 3 and len(fal_fake.jobs) == 1


async def test_fal_client_retries_ingress_503_but_not_an_app_503(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    fal_fake.faults.http_error(503, ingress=True, route="status")
    await fal.subscribe(KREA, {"prompt": "x"}, interval=0.005)
    fal_fake.faults.http_error(503, route="submit")
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await fal.submit(KREA, {"prompt": "x"})
    assert caught.value.status_code == 503 and "x-fal-request-id" in caught.value.response_headers


async def test_a_drop_after_acceptance_makes_fal_client_pay_twice(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    fal_fake.faults.drop_after_accept()
    await fal.subscribe(KREA, {"prompt": "x"}, interval=0.005)
    for job in fal_fake.jobs:
        await fal.result(KREA, job.id)
    assert len(fal_fake.jobs) == 2 and fal_fake.billed == Decimal("0.050")


@pytest.mark.parametrize(
    ("model", "arguments", "price"),
    [
        (KREA, {"prompt": "x", "image_size": {"width": 1500, "height": 1000}, "num_images": 3}, "0.150"),
        ("fal-ai/flux/dev", {"prompt": "x", "image_size": "square"}, "0.025"),
        (KREA, {"prompt": "x", "image_size": {"width": 2048, "height": 2048}}, "0.125"),
    ],
)
async def test_billing_rounds_megapixels_up_per_image(
    fal: fal_client.AsyncClient, fal_fake: FalFake, model: str, arguments: dict[str, object], price: str
) -> None:
    fal_fake.image_scale = 1 / 16
    await fal.subscribe(model, arguments, interval=0.005)
    assert fal_fake.billed == Decimal(price)


async def test_image_to_image_takes_its_size_from_an_uploaded_image(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    url = await fal.upload_image(Image.new("RGB", (1600, 900)), "png")
    assert url.startswith(fal_fake.base_url)
    result = await fal.subscribe("fal-ai/flux/krea/image-to-image", {"prompt": "x", "image_url": url}, interval=0.005)
    assert (result["images"][0]["width"], result["images"][0]["height"]) == (1600, 900)
    assert fal_fake.billed == Decimal("0.050")


async def test_run_returns_the_result_directly(fal: fal_client.AsyncClient, fal_fake: FalFake) -> None:
    result = await fal.run("fal-ai/flux/dev", {"prompt": "x", "sync_mode": True})
    assert result["images"][0]["url"].startswith("data:image/jpeg;base64,")
    assert fal_fake.request_counts["run"] == 1 and fal_fake.billed == Decimal("0.025")


async def test_status_stream_emits_each_change_then_closes(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.manual = True
    handle = await fal.submit(KREA, {"prompt": "x"})
    statuses = []
    async with raw.stream("GET", handle.status_url + "/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                statuses.append(json.loads(line[6:])["status"])
                if statuses[-1] != "COMPLETED":
                    fal_fake.advance(handle.request_id)
    assert statuses == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


async def test_a_failed_job_surfaces_on_result(fal: fal_client.AsyncClient, fal_fake: FalFake) -> None:
    fal_fake.faults.fail_job("CUDA out of memory", status_code=500, error_type="internal_error")
    handle = await fal.submit(KREA, {"prompt": "x"})
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await handle.get(interval=0.005)
    assert caught.value.status_code == 500 and caught.value.error_type == "internal_error"
    status = await handle.status()
    assert isinstance(status, fal_client.Completed) and status.error == "CUDA out of memory"
    assert fal_fake.billed == 0


async def test_a_wrong_key_gets_401(fal_fake: FalFake) -> None:
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await fal_client.AsyncClient(key="other:key").submit(KREA, {"prompt": "x"})
    assert caught.value.status_code == 401


async def test_a_cancel_while_in_progress_only_signals_the_runner_which_finishes_and_bills(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    assert fal_fake.honor_cancel_in_progress is False  # the default, as fal documents it
    fal_fake.manual = True
    handle = await fal.submit(KREA, {"prompt": "x"})
    fal_fake.advance(handle.request_id)  # IN_PROGRESS
    response = await raw.put(handle.cancel_url)
    assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    assert isinstance(await handle.status(), fal_client.InProgress)  # the runner carries on
    fal_fake.advance(handle.request_id)
    status = await handle.status()
    assert isinstance(status, fal_client.Completed) and status.error is None
    assert (await handle.get())["images"] and fal_fake.billed == Decimal("0.025")
    assert fal_fake.charges == [(handle.request_id, Decimal("0.025"))]


async def test_honor_cancel_in_progress_cancels_a_running_request_unbilled(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    fal_fake.manual, fal_fake.honor_cancel_in_progress = True, True
    handle = await fal.submit(KREA, {"prompt": "x"})
    fal_fake.advance(handle.request_id)  # IN_PROGRESS
    await handle.cancel()
    status = await handle.status()
    assert isinstance(status, fal_client.Completed) and status.error_type == "request_cancelled"
    assert fal_fake.billed == 0


async def test_a_runner_server_error_shows_on_status_and_result_and_is_not_billed(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.faults.fail_job("Runner crashed", status_code=500, error_type="runner_server_error")
    handle = await fal.submit(KREA, {"prompt": "x"})
    with pytest.raises(fal_client.FalClientHTTPError):
        await handle.get(interval=0.005)
    status = await raw.get(handle.status_url)
    assert status.status_code == 200
    body = status.json()
    assert (body["status"], body["error"], body["error_type"]) == ("COMPLETED", "Runner crashed", "runner_server_error")
    result = await raw.get(handle.response_url)
    assert result.status_code == 500
    assert result.json() == {"detail": "Runner crashed", "error_type": "runner_server_error"}
    assert fal_fake.billed == 0 and fal_fake.charges == []
    assert fal_fake.faults.fired == {"fail_job:submit": 1}


async def test_results_are_dropped_after_the_retention_time(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    handle = await fal.submit(KREA, {"prompt": "x"})
    await handle.get(interval=0.005)
    fal_fake.result_retention_s = 0.0
    gone = await raw.get(handle.response_url)
    assert (gone.status_code, gone.json()) == (404, {"detail": "Request not found"})
    status = await raw.get(handle.status_url)
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    fal_fake.result_retention_s = 3600.0
    assert (await raw.get(handle.response_url)).status_code == 200


async def test_large_results_are_dropped_sooner(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    small = await fal.submit(KREA, {"prompt": "x"})
    large = await fal.submit(KREA, {"prompt": "x", "sync_mode": True})  # the image inline as a data URI
    await small.get(interval=0.005)
    await large.get(interval=0.005)
    fal_fake.large_result_retention_s = 0.0
    assert len(json.dumps(fal_fake.job(large.request_id).result)) >= fal_fake.large_result_bytes == 10 * 1024
    assert (await raw.get(small.response_url)).status_code == 200
    gone = await raw.get(large.response_url)
    assert (gone.status_code, gone.json()) == (404, {"detail": "Request not found"})


async def test_result_files_expire_after_file_expiry_s(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.image_scale = 1 / 16
    url = (await fal.subscribe(KREA, {"prompt": "x"}, interval=0.005))["images"][0]["url"]
    fal_fake.file_expiry_s = 3600.0
    assert (await raw.get(url)).status_code == 200
    fal_fake.file_expiry_s = 0.0
    gone = await raw.get(url)
    assert (gone.status_code, gone.json()) == (404, {"detail": "Not Found"})


async def test_a_garbled_submit_answer_after_acceptance_still_runs_and_bills(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    fault = fal_fake.faults.garble(route="submit", after_accept=True)
    with pytest.raises(json.JSONDecodeError):
        await fal.submit(KREA, {"prompt": "x"})
    (job,) = fal_fake.jobs
    assert (await fal.result(KREA, job.id))["images"] and fal_fake.billed == Decimal("0.025")
    assert fault.hits == 1 and fal_fake.faults.fired == {"garble:submit:after": 1}


def test_reset_restores_every_new_config_attribute(fal_fake: FalFake) -> None:
    fal_fake.honor_cancel_in_progress, fal_fake.file_expiry_s = True, 1.0
    fal_fake.result_retention_s, fal_fake.large_result_retention_s, fal_fake.large_result_bytes = 1.0, 1.0, 1
    fal_fake.reset()
    assert (fal_fake.honor_cancel_in_progress, fal_fake.file_expiry_s) == (False, None)
    config = (fal_fake.result_retention_s, fal_fake.large_result_retention_s, fal_fake.large_result_bytes)
    assert config == (3600.0, 360.0, 10 * 1024)


async def test_requests_over_the_concurrency_limit_wait_in_queue(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.manual, fal_fake.concurrency_limit = True, 1
    first, second, third = [await fal.submit(KREA, {"prompt": p}) for p in "abc"]
    assert [await h.status() for h in (second, third)] == [fal_client.Queued(0), fal_client.Queued(1)]
    fal_fake.advance(first.request_id)
    fal_fake.complete(first.request_id)
    assert [await h.status() for h in (second, third)] == [fal_client.Queued(0), fal_client.Queued(0)]
    fal_fake.advance(second.request_id)
    in_progress = await raw.get(second.status_url, params={"logs": "1"})  # JS clients send logs=1
    assert in_progress.status_code == 202 and in_progress.json()["logs"] == []
    fal_fake.report_steps(second.request_id, 3)
    status = await second.status(with_logs=True)
    assert isinstance(status, fal_client.InProgress) and status.logs is not None
    assert [line["message"] for line in status.logs] == ["step 1/28", "step 2/28", "step 3/28"]
    assert (await second.status(with_logs=False)) == fal_client.InProgress(logs=None)


async def test_flux_schnell_takes_1_to_12_steps_defaults_to_4_and_bills_0_003_per_megapixel(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.image_scale = 1 / 16
    handle = await fal.submit("fal-ai/flux/schnell", {"prompt": "a fox", "seed": 3, "num_images": 2})
    events = [event async for event in handle.iter_events(with_logs=True, interval=0.005)]
    result = await handle.get()
    assert isinstance(events[-1], fal_client.Completed)
    assert events[-1].logs is not None and events[-1].logs[-1]["message"] == "step 4/4"
    assert [(i["width"], i["height"]) for i in result["images"]] == [(1024, 768)] * 2
    assert fal_fake.billed == Decimal("0.006")  # 0.79 MP rounds up to 1, per image
    job = fal_fake.jobs[-1]
    assert "guidance_scale" not in job.input  # schnell has no guidance

    fal_fake.validate_at_submit = True
    refused = await raw.post("/fal-ai/flux/schnell", json={"prompt": "a fox", "num_inference_steps": 13})
    assert refused.status_code == 422
    (detail,) = refused.json()["detail"]
    assert detail["loc"] == ["body", "num_inference_steps"] and detail["ctx"] == {"le": 12}


async def test_krea_2_turbo_runs_8_steps_bills_0_008_per_megapixel_and_takes_two_accelerations(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fal_fake.image_scale = 1 / 16
    arguments = {"prompt": "a fox", "image_size": {"width": 1536, "height": 1024}, "acceleration": "regular"}
    handle = await fal.submit("fal-ai/krea-2/turbo", {**arguments, "seed": 11, "num_images": 2})
    events = [event async for event in handle.iter_events(with_logs=True, interval=0.005)]
    result = await handle.get()
    assert isinstance(events[-1], fal_client.Completed)
    assert events[-1].logs is not None and events[-1].logs[-1]["message"] == "step 8/8"
    assert result["seed"] == 11 and len(result["images"]) == 2  # image i uses seed + i
    assert (result["images"][0]["width"], result["images"][0]["height"]) == (1536, 1024)
    assert fal_fake.billed == Decimal("0.032")  # 1.57 MP rounds up to 2, per image
    assert not {"num_inference_steps", "guidance_scale"} & set(fal_fake.jobs[-1].input)

    fal_fake.validate_at_submit = True
    refused = await raw.post("/fal-ai/krea-2/turbo", json={"prompt": "a fox", "acceleration": "high"})
    assert refused.status_code == 422
    (detail,) = refused.json()["detail"]
    assert detail["loc"] == ["body", "acceleration"] and detail["type"] == "literal_error"


# --- the upscalers: fal-ai/seedvr/upscale/image, fal-ai/clarity-upscaler, fal-ai/esrgan, fal-ai/aura-sr ---------
SEEDVR, CLARITY, ESRGAN, AURA = (
    "fal-ai/seedvr/upscale/image",
    "fal-ai/clarity-upscaler",
    "fal-ai/esrgan",
    "fal-ai/aura-sr",
)


def png_uri(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize(
    ("model", "arguments", "loc", "kind", "ctx"),
    [
        (SEEDVR, {}, "image_url", "missing", None),
        (SEEDVR, {"upscale_factor": 11}, "upscale_factor", "less_than_equal", {"le": 10}),
        (SEEDVR, {"upscale_factor": 0.5}, "upscale_factor", "greater_than_equal", {"ge": 1}),
        (SEEDVR, {"upscale_mode": "double"}, "upscale_mode", "literal_error", {"expected": "'target' or 'factor'"}),
        (SEEDVR, {"target_resolution": "4k"}, "target_resolution", "literal_error", None),
        (SEEDVR, {"output_format": "jpeg"}, "output_format", "literal_error", {"expected": "'png', 'jpg' or 'webp'"}),
        (SEEDVR, {"noise_scale": 1.5}, "noise_scale", "less_than_equal", {"le": 1}),
        (CLARITY, {}, "image_url", "missing", None),
        (CLARITY, {"upscale_factor": 5}, "upscale_factor", "less_than_equal", {"le": 4}),
        (CLARITY, {"creativity": -0.1}, "creativity", "greater_than_equal", {"ge": 0}),
        (CLARITY, {"resemblance": 2}, "resemblance", "less_than_equal", {"le": 1}),
        (CLARITY, {"num_inference_steps": 3}, "num_inference_steps", "greater_than_equal", {"ge": 4}),
        (CLARITY, {"guidance_scale": 21}, "guidance_scale", "less_than_equal", {"le": 20}),
        (CLARITY, {"prompt": 7}, "prompt", "string_type", None),
        (ESRGAN, {}, "image_url", "missing", None),
        (ESRGAN, {"scale": 9}, "scale", "less_than_equal", {"le": 8}),
        (ESRGAN, {"model": "RealESRGAN_x8"}, "model", "literal_error", None),
        (ESRGAN, {"output_format": "webp"}, "output_format", "literal_error", {"expected": "'png' or 'jpeg'"}),
        (ESRGAN, {"tile": 1.5}, "tile", "int_from_float", None),
        (ESRGAN, {"face": "yes"}, "face", "bool_type", None),
        (AURA, {}, "image_url", "missing", None),
        (AURA, {"upscale_factor": 2}, "upscale_factor", "literal_error", {"expected": "4"}),
        (AURA, {"checkpoint": "v3"}, "checkpoint", "literal_error", {"expected": "'v1' or 'v2'"}),
        (AURA, {"overlapping_tiles": "no"}, "overlapping_tiles", "bool_type", None),
    ],
)
async def test_upscalers_refuse_bad_input_naming_the_field(
    fal_fake: FalFake,
    raw: httpx.AsyncClient,
    model: str,
    arguments: dict[str, object],
    loc: str,
    kind: str,
    ctx: dict[str, object] | None,
) -> None:
    fal_fake.validate_at_submit = True
    body = arguments if loc == "image_url" else {"image_url": png_uri(8, 8), **arguments}
    refused = await raw.post(f"/{model}", json=body)
    assert refused.status_code == 422
    (detail,) = refused.json()["detail"]
    assert (detail["loc"], detail["type"]) == (["body", loc], kind)
    if ctx is not None:
        assert detail["ctx"] == ctx
    assert fal_fake.jobs == []


async def test_an_upscaler_ignores_unknown_fields_and_fills_in_its_defaults(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    await fal.subscribe(ESRGAN, {"image_url": png_uri(8, 8), "prompt": "ignored"}, interval=0.005)
    (job,) = fal_fake.jobs
    defaults = {"scale": 2, "tile": 0, "face": False, "model": "RealESRGAN_x4plus", "output_format": "png"}
    assert job.input == {"image_url": job.input["image_url"], "prompt": "ignored", **defaults}


@pytest.mark.parametrize(
    ("model", "arguments", "size", "keys"),
    [
        (
            SEEDVR,
            {"upscale_mode": "factor", "upscale_factor": 3, "output_format": "png", "seed": 5},
            (900, 600),
            {"image", "seed"},
        ),
        (
            CLARITY,
            {"upscale_factor": 2, "creativity": 0.2, "prompt": "a fox"},
            (600, 400),
            {"image", "seed", "timings"},
        ),
        (ESRGAN, {"scale": 2.5, "model": "RealESRGAN_x4plus", "output_format": "png"}, (750, 500), {"image"}),
        (AURA, {"upscale_factor": 4}, (1200, 800), {"image", "timings"}),
    ],
)
async def test_upscalers_answer_one_image_at_the_input_size_times_the_factor(
    fal: fal_client.AsyncClient,
    fal_fake: FalFake,
    raw: httpx.AsyncClient,
    model: str,
    arguments: dict[str, object],
    size: tuple[int, int],
    keys: set[str],
) -> None:
    result = await fal.subscribe(model, {"image_url": png_uri(300, 200), **arguments}, interval=0.005)
    assert set(result) == keys  # one `image` object, no `images` list
    image = result["image"]
    assert image["content_type"] == "image/png" and image["file_size"] > 0
    if model == SEEDVR:  # fal's seedvr ImageFile example carries no width/height
        assert "width" not in image and result["seed"] == 5
    else:
        assert (image["width"], image["height"]) == size
    downloaded = decoded((await raw.get(image["url"])).content)
    assert downloaded.format == "PNG" and downloaded.size == size
    assert fal_fake.jobs[-1].meta["size"] == size


async def test_seedvr_target_mode_scales_the_shorter_side_and_sync_mode_inlines_the_image(
    fal: fal_client.AsyncClient,
) -> None:
    arguments = {"image_url": png_uri(400, 300), "upscale_mode": "target", "target_resolution": "720p"}
    result = await fal.subscribe(SEEDVR, {**arguments, "sync_mode": True}, interval=0.005)
    assert result["image"]["content_type"] == "image/jpeg"  # seedvr's default output_format is "jpg"
    assert result["image"]["url"].startswith("data:image/jpeg;base64,")
    assert decoded(base64.b64decode(result["image"]["url"].split(",", 1)[1])).size == (960, 720)


async def test_upscalers_read_the_input_size_from_an_upload_or_a_loopback_url(
    fal: fal_client.AsyncClient, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    uploaded = await fal.upload_image(Image.new("RGB", (320, 240)), "png")
    result = await fal.subscribe(ESRGAN, {"image_url": uploaded, "scale": 2}, interval=0.005)
    assert (result["image"]["width"], result["image"]["height"]) == (640, 480)

    out = io.BytesIO()
    Image.new("RGB", (250, 125)).save(out, "PNG")
    krea_fake.files.add_blob("input.png", out.getvalue(), "image/png")  # another 127.0.0.1 server
    loopback = f"{krea_fake.base_url}/files/input.png"
    result = await fal.subscribe(AURA, {"image_url": loopback}, interval=0.005)
    assert (result["image"]["width"], result["image"]["height"]) == (1000, 500)

    result = await fal.subscribe(CLARITY, {"image_url": "https://example.com/x.png"}, interval=0.005)
    assert (result["image"]["width"], result["image"]["height"]) == (2048, 2048)  # default_i2i_size, x2


async def test_an_unreadable_loopback_input_fails_the_request_at_run_time_unbilled(
    fal: fal_client.AsyncClient, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    handle = await fal.submit(SEEDVR, {"image_url": f"{krea_fake.base_url}/files/missing.png"})
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        await handle.get(interval=0.005)
    assert caught.value.status_code == 422
    (detail,) = caught.value.response.json()["detail"]
    assert (detail["loc"], detail["type"]) == (["body", "image_url"], "file_download_error")
    assert fal_fake.billed == 0


@pytest.mark.parametrize(
    ("model", "arguments", "price"),
    [
        # 2048x1536 = 3.1 MP, rounded up to 4, x $0.001
        (SEEDVR, {"upscale_factor": 2, "output_format": "png"}, "0.004"),
        # 4096x3072 = 12.6 MP, rounded up to 13, x $0.001
        (SEEDVR, {"upscale_factor": 4, "output_format": "png"}, "0.013"),
        # 2048x1536 = 3.1 MP, rounded up to 4, x $0.03
        (CLARITY, {"upscale_factor": 2}, "0.12"),
        # 4096x3072 = 12.582912 MP x 0.35 s/MP = 4.404 s (whole ms) x $0.00111/s, exactly
        (ESRGAN, {"scale": 4}, "0.00488844"),
        # fal publishes none: the fake's own default, $0.01 per request
        (AURA, {}, "0.01"),
    ],
)
async def test_the_upscalers_price_table(
    fal: fal_client.AsyncClient, fal_fake: FalFake, model: str, arguments: dict[str, object], price: str
) -> None:
    fal_fake.image_scale = 1 / 16
    await fal.subscribe(model, {"image_url": png_uri(1024, 768), **arguments}, interval=0.005)
    assert fal_fake.billed == Decimal(price)


async def test_aura_sr_bills_the_price_a_test_sets(fal: fal_client.AsyncClient, fal_fake: FalFake) -> None:
    fal_fake.aura_sr_price = Decimal("0.0425")
    await fal.subscribe(AURA, {"image_url": png_uri(64, 64)}, interval=0.005)
    assert fal_fake.billed == Decimal("0.0425")
    fal_fake.reset()
    assert fal_fake.aura_sr_price == Decimal("0.01") and fal_fake.upscale_seconds_per_mp == Decimal("0.35")


async def test_esrgan_is_billed_by_the_inference_time_its_completed_status_reports(
    fal: fal_client.AsyncClient, fal_fake: FalFake
) -> None:
    fal_fake.upscale_seconds_per_mp = Decimal("1.2345")
    handle = await fal.submit(ESRGAN, {"image_url": png_uri(640, 480), "scale": 3})
    events = [event async for event in handle.iter_events(interval=0.005)]
    completed = events[-1]
    assert isinstance(completed, fal_client.Completed) and completed.error is None
    # 1920x1440 = 2.7648 MP x 1.2345 s/MP = 3.4131456 s -> 3.413 s, reported with millisecond precision
    assert completed.metrics == {"inference_time": 3.413}
    assert fal_fake.reported_inference_time(handle.request_id) == 3.413
    assert fal_fake.billed == Decimal("3.413") * Decimal("0.00111") == Decimal("0.00378843")


async def test_drop_metrics_completes_without_metrics_and_still_bills(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    fault = fal_fake.faults.drop_metrics()
    dropped = await fal.submit(ESRGAN, {"image_url": png_uri(100, 100)})
    kept = await fal.submit(ESRGAN, {"image_url": png_uri(100, 100)})
    await dropped.get(interval=0.005)
    await kept.get(interval=0.005)
    body = (await raw.get(dropped.status_url)).json()
    assert body["status"] == "COMPLETED" and "metrics" not in body
    assert await dropped.status() == fal_client.Completed(logs=None, metrics={})  # fal-client's default
    assert (await raw.get(kept.status_url)).json()["metrics"] == {"inference_time": 0.014}  # 0.04 MP x 0.35
    assert fault.hits == 1 and fal_fake.faults.fired == {"drop_metrics:submit": 1}
    assert fal_fake.billed == 2 * Decimal("0.014") * Decimal("0.00111")


async def test_upscale_results_expire_like_the_others(
    fal: fal_client.AsyncClient, fal_fake: FalFake, raw: httpx.AsyncClient
) -> None:
    handle = await fal.submit(CLARITY, {"image_url": png_uri(64, 64)})
    await handle.get(interval=0.005)
    fal_fake.result_retention_s = 0.0
    gone = await raw.get(handle.response_url)
    assert (gone.status_code, gone.json()) == (404, {"detail": "Request not found"})


def test_large_upscale_outputs_are_cheap_to_make() -> None:
    started = time.monotonic()
    data = cheap_png(16384, 16384, seed=3)
    assert time.monotonic() - started < 2.0 and len(data) < 256 * 1024
    assert png_or_webp_size(data) == (16384, 16384)  # past Pillow's own bomb limit: read from the header
    small = decoded(cheap_png(37, 5, seed=3))  # a whole, decodable PNG
    assert small.size == (37, 5) and small.convert("RGB").getpixel((0, 0)) != small.convert("RGB").getpixel((5, 0))
