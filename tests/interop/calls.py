"""A converted tool list, exercised the way a strict model would use it: every tool filled, validated and run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary, export, get_tool, validate
from fluxroute.types import ImageRequest, Plan
from tests.interop.strict_fill import JsonSchema, fill

IMAGE_TOOLS = ("generate_image", "plan_image_route")
FINALIZE = "finalize_image"


def mcp_input_schemas() -> dict[str, JsonSchema]:
    """fluxroute's own input schema of every tool, by name (what `fluxroute serve` lists)."""
    return {tool["name"]: tool["inputSchema"] for tool in export("mcp")}


def image_request(parsed: BaseModel) -> ImageRequest:
    """The ImageRequest validated arguments of an image tool stand for."""
    to_request = getattr(parsed, "request", None)
    if callable(to_request):
        request = to_request()
        assert isinstance(request, ImageRequest)
        return request
    assert isinstance(parsed, ImageRequest), type(parsed)
    return parsed


def plan_filled(router: Router, name: str, args: Mapping[str, Any]) -> Plan:
    """Arguments of an image tool, validated as fluxroute validates a call and planned; the plan has an offer."""
    parsed = validate(name, dict(args))
    plan = router.plan(image_request(parsed))
    assert plan.candidates, f"{name} {dict(args)}: no offer: {plan.explanation}"
    return plan


def conforms(name: str, output: BaseModel) -> dict[str, Any]:
    """`output` as JSON, checked against the tool's published output schema."""
    data = output.model_dump(mode="json")
    Draft202012Validator(get_tool(name).output_schema).validate(data)
    return data


async def exercise(settings: Settings, converted: Mapping[str, JsonSchema]) -> dict[str, dict[str, Any]]:
    """Fill every converted tool schema as a strict model must, validate and plan the image tools, then run
    every tool through fluxroute's dispatcher (generating first, so the job tools get a real job id).

    Returns each tool's output as JSON.
    """
    originals = mcp_input_schemas()
    assert sorted(converted) == sorted(originals), "a converter lost or invented tools"
    router = Router(settings)
    for name in IMAGE_TOOLS:
        plan_filled(router, name, fill(converted[name], originals[name]))

    library = ToolLibrary(router)
    outputs: dict[str, dict[str, Any]] = {}
    try:
        generated = await library.dispatch(
            "generate_image", fill(converted["generate_image"], originals["generate_image"])
        )
        outputs["generate_image"] = conforms("generate_image", generated)
        assert outputs["generate_image"]["status"] == "succeeded", outputs["generate_image"]
        assert outputs["generate_image"]["images"], outputs["generate_image"]
        job_id = outputs["generate_image"]["job_id"]
        for name, schema in converted.items():
            if name not in ("generate_image", FINALIZE):
                output = await library.dispatch(name, fill(schema, originals[name], job_id=job_id))
                outputs[name] = conforms(name, output)
        # finalize_image takes the draft set draft_images made (a model copies its id from that result)
        args = {
            **fill(converted[FINALIZE], originals[FINALIZE]),
            "draft_set_id": outputs["draft_images"]["draft_set_id"],
        }
        outputs[FINALIZE] = conforms(FINALIZE, await library.dispatch(FINALIZE, args))
    finally:
        await library.aclose()
    assert outputs["plan_image_route"]["chosen"] is not None, outputs["plan_image_route"]
    return outputs
