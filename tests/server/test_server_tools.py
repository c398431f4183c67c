"""The MCP tools through the SDK's in-memory client, in both protocol eras, generating on the provider fakes."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import types

from fluxroute.settings import Settings
from fluxroute.tools import tool_specs
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect

FAL = {"provider": "fal", "model": "flux-krea-dev"}


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_tools_list_publishes_each_spec_with_its_schemas_and_truthful_hints(connect: Connect) -> None:
    async with connect() as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert list(listed) == [spec.name for spec in tool_specs()]
    for spec in tool_specs():
        tool = listed[spec.name]
        assert tool.input_schema == spec.input_schema
        assert tool.output_schema == spec.output_schema
        assert tool.description == spec.description
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is spec.hints.read_only
        assert tool.annotations.open_world_hint is spec.hints.open_world
        assert tool.annotations.idempotent_hint is spec.hints.idempotent
    assert listed["plan_image_route"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert listed["generate_image"].annotations.idempotent_hint is False  # type: ignore[union-attr]


async def test_bad_arguments_come_back_as_a_tool_error_naming_field_value_and_range(
    connect: Connect, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "num_images": 7})

    assert result.is_error
    assert "num_images: got 7; allowed range 1–4" in text_of(result)
    assert fal_fake.jobs == [] and krea_fake.jobs == []  # nothing reached a provider


async def test_an_unknown_argument_is_named_with_the_fields_there_are(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool("plan_image_route", {"prompt": "a fox", "colour": "red"})

    assert result.is_error
    assert "colour" in text_of(result)


async def test_plan_image_route_returns_structured_content_and_the_explanation(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool("plan_image_route", {"prompt": "a fox", "size": "16:9"})

    assert not result.is_error
    assert result.structured_content is not None
    chosen = result.structured_content["chosen"]
    assert chosen["width"] / chosen["height"] == pytest.approx(16 / 9, rel=0.03)
    assert "chose" in text_of(result)


async def test_generate_image_streams_provider_progress_in_order_then_returns_images(
    connect: Connect, fal_fake: FalFake
) -> None:
    fal_fake.timings = {"IN_QUEUE": 0.3, "IN_PROGRESS": 0.3}
    heard: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, total, message))

    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", **FAL}, progress_callback=on_progress)

    assert not result.is_error, text_of(result)
    values = [progress for progress, _, _ in heard]
    assert values == sorted(values) and len(set(values)) == len(values)  # strictly increasing
    messages = [message or "" for _, _, message in heard]
    assert messages and all(message.startswith("fal: ") for message in messages)
    first_running = next(i for i, m in enumerate(messages) if "IN_PROGRESS" in m)
    assert all("IN_PROGRESS" not in m for m in messages[:first_running])
    assert any("IN_QUEUE" in m for m in messages[:first_running])
    assert result.structured_content is not None and result.structured_content["status"] == "succeeded"


async def test_a_four_image_2mp_result_stays_far_under_client_limits_with_links_paths_and_urls(
    connect: Connect, fal_fake: FalFake
) -> None:
    fal_fake.image_scale = 1  # full-size 2 MP images
    arguments = {"prompt": "a fox", **FAL, "num_images": 4, "size": "1:1@2MP"}

    async with connect() as client:
        result = await client.call_tool("generate_image", arguments)
        encoded = result.model_dump_json(by_alias=True, exclude_none=True)

        assert not result.is_error, text_of(result)
        assert len(encoded) < 400_000  # Claude Desktop rejects over 1 MiB; Claude Code warns past 25k tokens
        previews = [block for block in result.content if isinstance(block, types.ImageContent)]
        links = [block for block in result.content if isinstance(block, types.ResourceLink)]
        assert len(previews) == len(links) == 4
        assert all(preview.mime_type == "image/jpeg" for preview in previews)
        structured = result.structured_content
        assert structured is not None
        images = structured["images"]
        assert all(image["width"] * image["height"] > 1_900_000 for image in images)
        assert all(image["path"] and image["url"] for image in images)

        read = await client.read_resource(str(links[2].uri))
        (contents,) = read.contents
        assert isinstance(contents, types.BlobResourceContents)
        assert contents.mime_type == links[2].mime_type == "image/png"
        assert base64.b64decode(contents.blob) == Path(images[2]["path"]).read_bytes()


async def test_a_short_wait_budget_returns_a_job_handle_that_get_image_job_resumes_without_paying_twice(
    connect: Connect, fal_fake: FalFake
) -> None:
    fal_fake.manual = True

    async with connect() as client:
        first = await client.call_tool("generate_image", {"prompt": "a fox", **FAL, "wait_s": 0.3})
        handle = first.structured_content
        assert handle is not None and handle["status"] == "running", text_of(first)
        assert "get_image_job" in text_of(first) and handle["job_id"] in text_of(first)

        still = await client.call_tool("get_image_job", {"job_id": handle["job_id"], "wait_s": 0.2})
        assert still.structured_content is not None and still.structured_content["status"] == "running"

        (job,) = fal_fake.jobs
        fal_fake.complete(job.id)
        done = await client.call_tool("get_image_job", {"job_id": handle["job_id"], "wait_s": 10})

    assert not done.is_error, text_of(done)
    assert done.structured_content is not None and done.structured_content["status"] == "succeeded"
    assert len(done.structured_content["images"]) == 1
    assert len(fal_fake.jobs) == 1 and fal_fake.billed == Decimal("0.025")


async def test_a_client_that_gives_up_does_not_stop_the_job(connect: Connect, fal_fake: FalFake) -> None:
    fal_fake.manual = True

    async with connect() as client:
        with pytest.raises(Exception):  # noqa: B017 - the client's own timeout, whatever it raises
            await client.call_tool("generate_image", {"prompt": "a fox", **FAL}, read_timeout_seconds=0.5)
        for _ in range(200):  # the job reaches fal in its own time; bounded
            if fal_fake.jobs:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        (job,) = fal_fake.jobs
        assert job.status != "CANCELLED"
        fal_fake.complete(job.id)
        jobs = json.loads((await client.read_resource("fluxroute://jobs")).contents[0].text)  # type: ignore[union-attr]
        done = await client.call_tool("get_image_job", {"job_id": jobs["jobs"][0]["job_id"], "wait_s": 10})

    assert done.structured_content is not None and done.structured_content["status"] == "succeeded"


async def test_cancel_image_job_stops_the_provider_job_and_charges_nothing(connect: Connect, fal_fake: FalFake) -> None:
    fal_fake.manual = True

    async with connect() as client:
        first = await client.call_tool("generate_image", {"prompt": "a fox", **FAL, "wait_s": 0.2})
        assert first.structured_content is not None
        job_id = first.structured_content["job_id"]
        cancelled = await client.call_tool("cancel_image_job", {"job_id": job_id})
        again = await client.call_tool("get_image_job", {"job_id": job_id, "wait_s": 0})

    assert cancelled.structured_content is not None
    assert cancelled.structured_content["status"] == "cancelled"
    # the request was still queued: fal dropped it, which its final state proves
    assert cancelled.structured_content["error"].startswith("cancelled by the caller; not charged")
    assert again.is_error and "cancelled" in text_of(again)
    assert fal_fake.billed == 0


async def test_an_unknown_job_id_is_a_tool_error(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool("get_image_job", {"job_id": "0" * 32})

    assert result.is_error and "0" * 32 in text_of(result)


async def test_provider_failures_are_tool_errors_with_the_providers_message_and_no_secret(
    connect: Connect, fal_fake: FalFake, settings: Settings
) -> None:
    fal_fake.faults.http_error(403, route="submit", body={"detail": "key revoked"})

    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", **FAL})

    text = text_of(result)
    assert result.is_error and "403" in text
    assert settings.fal_key is not None and settings.fal_key.get_secret_value() not in text


async def test_rewrite_image_prompt_returns_the_rewrite_with_its_changes(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "rewrite_image_prompt", {"prompt": "a fox in snow, no blur", "model": "flux-dev", "aspect_ratio": "16:9"}
        )

    assert not result.is_error, text_of(result)
    rewrite = result.structured_content
    assert rewrite is not None
    assert "fox" in rewrite["prompt"] and "snow" in rewrite["prompt"] and "no blur" not in rewrite["prompt"]
    assert rewrite["changes"]


async def test_an_unknown_model_in_generate_image_is_named_not_an_opaque_failure(
    connect: Connect, krea_fake: KreaFake
) -> None:
    """The spend-approval step reads the request before the call does: a model the catalog lacks used to escape
    from it as an exception the SDK reported only as "Error executing tool"."""
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "a cat", "model": "nonexistent"})
    text = text_of(result)
    assert result.is_error and "model" in text and "nonexistent" in text and "flux-dev" in text, text
    assert sum(krea_fake.request_counts.values()) == 0
