"""The tools: one ToolSpec each (input and output models, LLM-facing description, hints, handler)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fluxroute.catalog import load_catalog
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.prompts import REWRITE_DESCRIPTION, REWRITE_FIELDS, RewriteOutput, RewriteQuery
from fluxroute.tools.descriptions import (
    CANCEL_FIELDS,
    FINALIZE_FIELDS,
    JOB_FIELDS,
    PLAN_FIELDS,
    cancel_description,
    draft_description,
    draft_fields,
    edit_description,
    edit_fields,
    finalize_description,
    generate_description,
    job_description,
    models_description,
    models_for,
    plan_description,
    request_fields,
    text_to_image_models,
    upscale_description,
    upscale_fields,
    vary_description,
    vary_fields,
)
from fluxroute.tools.image_args import (
    DraftArgs,
    EditArgs,
    FinalizeArgs,
    GenerateArgs,
    PlanArgs,
    UpscaleArgs,
    VaryArgs,
)
from fluxroute.tools.outputs import (
    DraftSetOutput,
    FinalOutput,
    GenerateOutput,
    JobStatusOutput,
    ModelsOutput,
    PlanOutput,
)
from fluxroute.tools.schema import JsonSchema, closed_schema, input_schema, output_schema, strict_schema

Handler = Literal[
    "generate", "edit", "vary", "upscale", "plan", "models", "job", "cancel", "rewrite", "draft", "finalize"
]

# A client's request timeout is often 60 s; a generation still running after this comes back as a job handle.
DEFAULT_WAIT_S = 45.0


class JobQuery(BaseModel):
    """Arguments of get_image_job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1, max_length=64)
    wait_s: float = Field(default=DEFAULT_WAIT_S, ge=0, le=3600)


class JobRef(BaseModel):
    """Arguments of cancel_image_job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1, max_length=64)


class ModelsQuery(BaseModel):
    """Arguments of list_image_models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, min_length=1, max_length=64, description="Only this model id.")
    include_unavailable: bool = Field(default=True, description="Also list offers that cannot run here.")


@dataclass(frozen=True)
class ToolHints:
    """Behaviour hints for clients (MCP tool annotations), stated truthfully."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool

    def to_mcp(self) -> dict[str, bool]:
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }


@dataclass(frozen=True)
class ToolSpec:
    """One tool, the single source every export format and the dispatcher read from."""

    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    hints: ToolHints
    handler: Handler
    field_descriptions: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # top-level string fields whose allowed values come from data (the catalog's model ids)
    enums: Mapping[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    # the MCP Apps view (a ui:// resource the server serves) that shows this tool's result, for hosts that have them
    view: str | None = None

    @functools.cached_property
    def input_schema(self) -> JsonSchema:
        return input_schema(self.input_model, self.field_descriptions, self.enums)

    @functools.cached_property
    def check_schema(self) -> JsonSchema:
        """The input schema arguments are checked against: unknown fields refused at every level."""
        return closed_schema(self.input_schema)

    @functools.cached_property
    def strict_input_schema(self) -> JsonSchema:
        return strict_schema(self.input_schema)

    @functools.cached_property
    def output_schema(self) -> JsonSchema:
        return output_schema(self.output_model)


@functools.cache
def tool_specs() -> tuple[ToolSpec, ...]:
    """Every tool, in the order clients list them; descriptions quote the built-in catalog."""
    catalog = load_catalog()
    editing = {
        "model": [
            "auto",
            *(
                m.id
                for m in catalog.models
                if m.id
                in {
                    *models_for(catalog, "image-to-image"),
                    *models_for(catalog, "instruction-edit"),
                    *models_for(catalog, "inpaint"),
                }
            ),
        ]
    }
    varying = {"model": ["auto", *models_for(catalog, "variation")]}
    upscaling = {"model": ["auto", *models_for(catalog, "upscale")]}
    # generate_image, plan_image_route and draft_images make images from a prompt: models with such an offer
    drawing = {"model": ["auto", *text_to_image_models(catalog)]}
    return (
        ToolSpec(
            name="generate_image",
            title="Generate image",
            description=generate_description(catalog),
            input_model=GenerateArgs,
            output_model=GenerateOutput,
            # a new job (and a charge) per call: not idempotent, even though an idempotency_key dedupes
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="generate",
            field_descriptions=request_fields(catalog),
            enums=drawing,
        ),
        ToolSpec(
            name="plan_image_route",
            title="Plan image route",
            description=plan_description(catalog),
            input_model=PlanArgs,
            output_model=PlanOutput,
            hints=ToolHints(read_only=True, destructive=False, idempotent=True, open_world=False),
            handler="plan",
            field_descriptions=PLAN_FIELDS,
            enums=drawing,
        ),
        ToolSpec(
            name="list_image_models",
            title="List image models",
            description=models_description(catalog),
            input_model=ModelsQuery,
            output_model=ModelsOutput,
            hints=ToolHints(read_only=True, destructive=False, idempotent=True, open_world=False),
            handler="models",
        ),
        ToolSpec(
            name="get_image_job",
            title="Get image job",
            description=job_description(),
            input_model=JobQuery,
            output_model=GenerateOutput,
            # waiting changes nothing; the job it follows may still call its provider
            hints=ToolHints(read_only=True, destructive=False, idempotent=True, open_world=True),
            handler="job",
            field_descriptions=JOB_FIELDS,
        ),
        ToolSpec(
            name="cancel_image_job",
            title="Cancel image job",
            description=cancel_description(),
            input_model=JobRef,
            output_model=JobStatusOutput,
            hints=ToolHints(read_only=False, destructive=True, idempotent=True, open_world=True),
            handler="cancel",
            field_descriptions=CANCEL_FIELDS,
        ),
        ToolSpec(
            name="edit_image",
            title="Edit image",
            description=edit_description(),
            input_model=EditArgs,
            output_model=GenerateOutput,
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="edit",
            field_descriptions=edit_fields(catalog),
            enums=editing,
        ),
        ToolSpec(
            name="vary_image",
            title="Vary image",
            description=vary_description(),
            input_model=VaryArgs,
            output_model=GenerateOutput,
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="vary",
            field_descriptions=vary_fields(catalog),
            enums=varying,
        ),
        ToolSpec(
            name="upscale_image",
            title="Upscale image",
            description=upscale_description(),
            input_model=UpscaleArgs,
            output_model=GenerateOutput,
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="upscale",
            field_descriptions=upscale_fields(catalog),
            enums=upscaling,
        ),
        ToolSpec(
            name="draft_images",
            title="Draft images",
            description=draft_description(),
            input_model=DraftArgs,
            output_model=DraftSetOutput,
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="draft",
            field_descriptions=draft_fields(catalog),
            enums=drawing,
            view="ui://fluxroute/draft-set.html",
        ),
        ToolSpec(
            name="finalize_image",
            title="Finalize image",
            description=finalize_description(),
            input_model=FinalizeArgs,
            output_model=FinalOutput,
            hints=ToolHints(read_only=False, destructive=False, idempotent=False, open_world=True),
            handler="finalize",
            field_descriptions=FINALIZE_FIELDS,
        ),
        ToolSpec(
            name="rewrite_image_prompt",
            title="Rewrite image prompt",
            description=REWRITE_DESCRIPTION,
            input_model=RewriteQuery,
            output_model=RewriteOutput,
            # deterministic and offline: no provider, no model, no spend
            hints=ToolHints(read_only=True, destructive=False, idempotent=True, open_world=False),
            handler="rewrite",
            field_descriptions=REWRITE_FIELDS,
        ),
    )


def get_tool(name: object) -> ToolSpec:
    """The tool called `name`.

    Raises:
        InvalidRequest: no tool has that name (the error lists the names there are).
    """
    specs = tool_specs()
    for spec in specs:
        if spec.name == name:
            return spec
    raise InvalidRequest([FieldError("name", name, f"one of: {', '.join(s.name for s in specs)}")])
