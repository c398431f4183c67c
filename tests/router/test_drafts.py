"""Draft → final against the fakes: the draft policy, per-image seeds, the contact sheet, both finalize methods,
the ledger equal to what the fakes billed, and the lineage stored."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import InvalidRequest, NoRouteError
from fluxroute.providers.local import LocalProvider, LocalWorker
from fluxroute.router import Router
from fluxroute.router.contact_sheet import SHEET_BUDGET
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


def request(**fields: object) -> ImageRequest:
    return ImageRequest.parse({"prompt": "a lighthouse at dusk", **fields})


async def test_drafts_run_on_the_cheapest_draft_offer_one_call_per_seed(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        drafts = await router.draft(request(seed=100), n=4)
    finally:
        await router.aclose()
    assert drafts.offer_id == "fal-flux-schnell"
    assert [d.number for d in drafts.drafts] == [1, 2, 3, 4]
    assert [d.seed for d in drafts.drafts] == [100, 101, 102, 103]
    assert len({d.job_id for d in drafts.drafts}) == 4  # fal returns one seed per request: one request each
    assert drafts.total_cost_usd == pytest.approx(0.012)
    assert router.store.total_charged() == fal_fake.billed == Decimal("0.012") and krea_fake.billed == 0
    assert "cheapest draft offer allowed" in drafts.explanation and "krea flux-1-dev" in drafts.explanation
    assert all(d.path is not None and Path(d.path).is_file() for d in drafts.drafts)
    stored = router.store.get_draft_set(drafts.id)
    assert stored.total_cost == Decimal("0.012")
    links = router.store.lineage(drafts.drafts[2].job_id)
    assert [(lk.parent_job_id, lk.parent_index, lk.relation) for lk in links] == [(drafts.id, 3, "draft_of")]


async def test_the_contact_sheet_is_a_small_numbered_jpeg(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.image_scale = 1  # full-size drafts: the sheet must still fit the preview budget
    router = Router(hosted_settings)
    try:
        drafts = await router.draft(request(seed=7), n=4)
    finally:
        await router.aclose()
    assert drafts.contact_sheet is not None
    data = Path(drafts.contact_sheet).read_bytes()
    assert len(data) <= SHEET_BUDGET
    with Image.open(io.BytesIO(data)) as sheet:
        assert sheet.format == "JPEG" and sheet.width >= 600  # two tiles of a few hundred pixels side by side


async def test_krea_drafts_at_few_steps_finalize_with_the_same_seed_at_full_steps(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        drafts = await router.draft(request(model="flux-dev", seed=5), n=2)
        final = await router.finalize(drafts.id, 2)
    finally:
        await router.aclose()
    assert drafts.offer_id == "krea-flux-1-dev" and "at 8 steps" in drafts.explanation
    assert [d.seed for d in drafts.drafts] == [5, 6]
    assert final.method == "same_seed" and "usually but not always carries over" in final.reason
    assert final.result.offer_id == "krea-flux-1-dev" and final.result.seed == 6
    assert final.result.plan.candidates[0].params.get("steps") == 25
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.021") and fal_fake.billed == 0
    links = router.store.lineage(final.result.job_id)
    draft = drafts.drafts[1]
    assert [(lk.parent_job_id, lk.parent_index, lk.relation) for lk in links] == [
        (draft.job_id, draft.image_index, "finalized_from")
    ]


async def test_schnell_drafts_finalize_from_the_draft_as_init_image(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        drafts = await router.draft(request(seed=11), n=2)
        final = await router.finalize(drafts.id, 1)
    finally:
        await router.aclose()
    assert drafts.offer_id == "fal-flux-schnell"
    assert final.method == "image_conditioned" and "strength 0.5" in final.reason
    assert final.result.images and final.result.offer_id in ("krea-flux-1-dev", "fal-flux-krea-i2i")
    assert router.store.total_charged() == krea_fake.billed + fal_fake.billed
    assert Decimal(str(final.result.cost_usd)) + Decimal("0.006") == router.store.total_charged()
    assert router.store.lineage(final.result.job_id)[0].relation == "finalized_from"


def test_a_round_is_planned_with_both_costs(hosted_settings: Settings) -> None:
    planned = Router(hosted_settings).plan_round(request(), 4)
    assert planned.drafts.cost_usd == Decimal("0.012")
    assert planned.summary.startswith("4 drafts for $0.012 on fal flux/schnell, the final for $0.007")


def test_a_model_without_draft_offers_has_no_draft_route(hosted_settings: Settings) -> None:
    with pytest.raises(NoRouteError, match="no draft offer"):
        Router(hosted_settings).plan_round(request(model="flux-krea-dev"), 4)


def test_draft_count_is_checked(hosted_settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="n"):
        Router(hosted_settings).plan_round(request(), 9)


async def test_a_failed_draft_call_leaves_the_others_as_the_set_and_says_so(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    fal_fake.faults.fail_job("fal broke", status_code=500, error_type="runner_server_error")
    router = Router(hosted_settings)
    try:
        drafts = await router.draft(request(seed=1), n=3)
    finally:
        await router.aclose()
    assert len(drafts.drafts) == 2 and [d.number for d in drafts.drafts] == [1, 2]
    assert len(drafts.warnings) == 1 and "fal broke" in drafts.warnings[0]
    assert router.store.total_charged() == fal_fake.billed == Decimal("0.006") and krea_fake.billed == 0


async def test_local_drafts_are_one_call_with_seed_plus_i_and_finalize_with_the_same_seed(
    local_settings: Settings, local_worker: LocalWorker
) -> None:
    router = Router(local_settings, providers={"local": LocalProvider(local_settings, worker=local_worker)})
    try:
        drafts = await router.draft(request(provider="local", width=64, height=64, steps=3, seed=40), n=2)
        final = await router.finalize(drafts.id, 2)
    finally:
        await router.aclose()
    assert drafts.offer_id == "local-flux-krea-dev" and len({d.job_id for d in drafts.drafts}) == 1
    assert [d.seed for d in drafts.drafts] == [40, 41]
    assert final.method == "same_seed" and final.result.images[0].seed == 41
    assert final.result.plan.candidates[0].params["num_inference_steps"] == 3  # the request's own steps
    assert router.store.lineage(final.result.job_id)[0].parent_job_id == drafts.drafts[1].job_id


def test_a_provider_pin_keeps_the_drafts_on_that_provider(hosted_settings: Settings) -> None:
    planned = Router(hosted_settings).plan_round(request(provider="krea"), 4)
    assert planned.drafts.offer.id == "krea-flux-1-dev"
    assert "fal flux/schnell: pinned to provider=krea" in planned.drafts.explanation


async def test_drafts_again_under_the_same_key_are_the_same_set_paid_once(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        first = await router.draft(request(idempotency_key="round-1"), n=2)  # no seed: one from the key
        again = await router.draft(request(idempotency_key="round-1"), n=2)
    finally:
        await router.aclose()
    assert again.id == first.id and [d.job_id for d in again.drafts] == [d.job_id for d in first.drafts]
    assert router.store.total_charged() == fal_fake.billed == Decimal("0.006")
