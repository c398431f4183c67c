"""How plans of a large catalog are shown: tool results (plan_image_route, and the explanation a generation
returns) list at most MAX_LISTED_REJECTIONS rejected offers and count the rest; the plan itself keeps them all."""

from __future__ import annotations

import random
from pathlib import Path

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from fluxroute.cli import CLI_LISTED_REJECTIONS, _plan_text
from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import GenerateOutput, PlanOutput, ToolLibrary, get_tool
from fluxroute.tools.outputs import MAX_LISTED_REJECTIONS
from fluxroute.types import GenerationResult, ImageRequest

from .test_planner_equivalence import grown_offers

ALL = {name: Availability(True) for name in ("krea", "fal", "local")}


def grown_router(tmp_path: Path, offers: int) -> Router:
    settings = Settings(home=tmp_path, offers=grown_offers(random.Random(offers), offers))
    return Router(settings, availability=ALL)


async def test_plan_image_route_lists_some_rejections_and_counts_the_rest(tmp_path: Path) -> None:
    router = grown_router(tmp_path, 300)
    args = {"prompt": "a fox", "usage": "commercial", "provider": "fal"}

    output = await ToolLibrary(router).dispatch("plan_image_route", args)

    plan = router.plan(ImageRequest(prompt="a fox", usage="commercial", provider="fal"))
    assert isinstance(output, PlanOutput)
    assert plan.rejected > MAX_LISTED_REJECTIONS + 100
    assert [r.label for r in output.rejections] == [r.label for r in plan.rejections[:MAX_LISTED_REJECTIONS]]
    more = plan.rejected - MAX_LISTED_REJECTIONS
    assert output.explanation.endswith(f"\n… and {more} more offers rejected")
    assert output.explanation.count("\nrejected ") == MAX_LISTED_REJECTIONS
    assert plan.explanation.count("\nrejected ") == plan.rejected == len(plan.rejections)
    Draft202012Validator(get_tool("plan_image_route").output_schema).validate(output.model_dump(mode="json"))


async def test_a_small_catalog_lists_every_rejection(tmp_path: Path) -> None:
    router = Router(Settings(home=tmp_path), availability=ALL)

    output = await ToolLibrary(router).dispatch("plan_image_route", {"prompt": "a fox", "usage": "commercial"})

    plan = router.plan(ImageRequest(prompt="a fox", usage="commercial"))
    assert isinstance(output, PlanOutput)
    assert output.explanation == plan.explanation
    assert [(r.label, r.reasons) for r in output.rejections] == [(r.label, r.reasons) for r in plan.rejections]


def test_a_generation_result_explains_with_the_same_short_list(tmp_path: Path) -> None:
    router = grown_router(tmp_path, 300)
    plan = router.plan(ImageRequest(prompt="a fox", provider="krea"))
    assert plan.chosen is not None
    result = GenerationResult(
        job_id="j",
        images=[],
        provider="krea",
        model=plan.chosen.model,
        offer_id=plan.chosen.offer_id,
        cost_usd=0.1,
        plan=plan,
    )

    output = GenerateOutput.from_result(result)

    assert output.explanation == plan.explain(MAX_LISTED_REJECTIONS)
    assert output.explanation.count("\nrejected ") == MAX_LISTED_REJECTIONS
    assert "more offers rejected" in output.explanation


def test_route_explain_lists_every_rejection_short_of_a_huge_catalog(tmp_path: Path) -> None:
    for offers, listed in ((120, None), (800, CLI_LISTED_REJECTIONS)):
        plan = grown_router(tmp_path, offers).plan(ImageRequest(prompt="a fox", provider="local"))
        text = _plan_text(plan, explain=True)
        assert text.count("\nrejected ") == (listed or plan.rejected)
        assert ("more offers rejected" in text) == (listed is not None)
