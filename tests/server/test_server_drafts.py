"""draft_images, finalize_image, plan_image_route with drafts and get_image_job's lineage through the MCP client."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

from mcp import types

from fluxroute.server.delivery import INLINE_BUDGET
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_a_round_is_planned_then_drafted_with_a_sheet_then_finalized_with_lineage(
    connect: Connect, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    async with connect() as client:
        planned = await client.call_tool("plan_image_route", {"prompt": "a fox in the snow", "drafts": 4})
        drafts = await client.call_tool("draft_images", {"prompt": "a fox in the snow", "n": 4, "seed": 3})
        assert not drafts.is_error, text_of(drafts)
        draft_set = drafts.structured_content or {}
        final = await client.call_tool("finalize_image", {"draft_set_id": draft_set["draft_set_id"], "index": 3})
        assert not final.is_error, text_of(final)
        job = await client.call_tool("get_image_job", {"job_id": (final.structured_content or {})["job_id"]})

    plan = planned.structured_content or {}
    assert (plan["drafts_cost_usd"], plan["final_cost_usd"]) == (0.012, 0.007)
    assert "4 drafts for $0.012 on fal flux/schnell, the final for $0.007" in text_of(planned)

    assert [d["seed"] for d in draft_set["drafts"]] == [3, 4, 5, 6] and draft_set["total_cost_usd"] == 0.012
    (sheet,) = [block for block in drafts.content if isinstance(block, types.ImageContent)]
    assert len(base64.b64decode(sheet.data)) <= INLINE_BUDGET
    assert len([b for b in drafts.content if isinstance(b, types.ResourceLink)]) == 4
    assert "Pick a number, then call finalize_image" in text_of(drafts)

    finished = final.structured_content or {}
    assert finished["method"] == "image_conditioned" and "strength 0.5" in finished["reason"]
    assert fal_fake.billed + krea_fake.billed == Decimal("0.012") + Decimal(str(finished["cost_usd"]))
    third = draft_set["drafts"][2]["image"]
    assert (job.structured_content or {})["lineage"] == [f"image 0 finalized_from {third}"]


async def test_a_drafts_job_resource_shows_its_lineage_to_the_set(connect: Connect, fal_fake: FalFake) -> None:
    async with connect() as client:
        drafts = await client.call_tool("draft_images", {"prompt": "a fox in the snow", "n": 2, "provider": "fal"})
        draft_set = drafts.structured_content or {}
        job_id = draft_set["drafts"][1]["image"].removeprefix("job:").split("/")[0]
        read = await client.read_resource(f"fluxroute://jobs/{job_id}")

    (content,) = read.contents
    assert isinstance(content, types.TextResourceContents)
    (link,) = json.loads(content.text)["lineage"]
    assert (link["parent_job_id"], link["parent_index"], link["relation"]) == (draft_set["draft_set_id"], 2, "draft_of")
