"""draft_images and finalize_image through the tool library: arguments, approval before spending, outputs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fluxroute.errors import ConsentRequired, InvalidRequest, JobNotFound, NoRouteError
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary
from fluxroute.tools.outputs import DraftSetOutput, FinalOutput
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


async def test_drafts_above_the_approval_threshold_ask_first_and_spend_nothing(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    settings = hosted_settings.model_copy(update={"confirm_above_usd": Decimal("0.01")})
    library = ToolLibrary(Router(settings))
    try:
        with pytest.raises(ConsentRequired, match=r"4 drafts: estimated at \$0.012"):
            await library.dispatch("draft_images", {"prompt": "a fox", "n": 4})
        assert fal_fake.jobs == []
        approved = await library.dispatch("draft_images", {"prompt": "a fox", "n": 4, "confirm_spend": True})
    finally:
        await library.aclose()
    assert isinstance(approved, DraftSetOutput) and len(approved.drafts) == 4


async def test_finalize_names_a_missing_set_or_draft(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    library = ToolLibrary(Router(hosted_settings))
    try:
        with pytest.raises(JobNotFound, match="no draft set"):
            await library.dispatch("finalize_image", {"draft_set_id": "nope", "index": 1})
        drafts = await library.dispatch("draft_images", {"prompt": "a fox", "n": 2, "seed": 9})
        assert isinstance(drafts, DraftSetOutput)
        with pytest.raises(InvalidRequest, match="a draft number from 1 to 2"):
            await library.dispatch("finalize_image", {"draft_set_id": drafts.draft_set_id, "index": 3})
        final = await library.dispatch("finalize_image", {"draft_set_id": drafts.draft_set_id, "index": 1})
    finally:
        await library.aclose()
    assert isinstance(final, FinalOutput) and final.draft == 1 and final.images


async def test_plan_with_drafts_is_refused_for_a_model_without_draft_offers(hosted_settings: Settings) -> None:
    library = ToolLibrary(Router(hosted_settings))
    try:
        with pytest.raises(NoRouteError, match="no draft offer"):
            await library.dispatch("plan_image_route", {"prompt": "a fox", "model": "flux-krea-dev", "drafts": 2})
    finally:
        await library.aclose()


async def test_a_final_above_the_approval_threshold_asks_first_with_its_own_cost(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    settings = hosted_settings.model_copy(update={"confirm_above_usd": Decimal("0.02")})
    library = ToolLibrary(Router(settings))
    try:
        drafts = await library.dispatch("draft_images", {"prompt": "a fox", "n": 2, "provider": "fal"})
        assert isinstance(drafts, DraftSetOutput)
        with pytest.raises(ConsentRequired, match=r"the final: estimated at \$0.025"):
            await library.dispatch("finalize_image", {"draft_set_id": drafts.draft_set_id, "index": 1})
    finally:
        await library.aclose()
    assert fal_fake.billed == Decimal("0.006") and krea_fake.billed == 0
