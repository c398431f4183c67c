"""The dispatcher: a tool call, validated, run by the router it was given, answered with the output model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel

from fluxroute.catalog import Catalog
from fluxroute.providers.base import Availability, ProgressCallback
from fluxroute.settings import Settings
from fluxroute.tools.outputs import GenerateOutput, ModelsOutput, PlanOutput
from fluxroute.tools.specs import ModelsQuery, get_tool
from fluxroute.tools.validation import validate
from fluxroute.types import GenerationResult, ImageRequest, Plan


class ImageRouter(Protocol):
    """What the tools need of fluxroute.router.Router."""

    settings: Settings
    catalog: Catalog

    @property
    def availability(self) -> Mapping[str, Availability]: ...

    def plan(self, request: ImageRequest) -> Plan: ...

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> GenerationResult: ...


class ToolLibrary:
    """Runs tool calls against one router; nothing reaches a provider before the arguments validate."""

    def __init__(self, router: ImageRouter) -> None:
        self.router = router

    async def dispatch(self, name: str, args: object, progress: ProgressCallback | None = None) -> BaseModel:
        """Validate `args` for tool `name`, run it, and return its output model; `progress` hears from
        generate_image's job.

        Raises:
            InvalidRequest: unknown tool or invalid arguments (nothing ran), or a model the catalog lacks.
            FluxrouteError: whatever the router raises while generating (budget, provider failures).
        """
        spec = get_tool(name)
        parsed = validate(name, args)
        match spec.handler, parsed:
            case "plan", ImageRequest():
                return PlanOutput.from_plan(self.router.plan(parsed))
            case "generate", ImageRequest():
                return GenerateOutput.from_result(await self.router.generate(parsed, progress))
            case "models", ModelsQuery():
                return self.list_models(parsed)
        raise TypeError(f"tool {name}: handler {spec.handler!r} cannot take {type(parsed).__name__}")

    def list_models(self, query: ModelsQuery) -> ModelsOutput:
        return ModelsOutput.from_catalog(
            self.router.catalog,
            self.router.availability,
            local_commercial_license=self.router.settings.local_commercial_license,
            model=query.model,
            include_unavailable=query.include_unavailable,
        )
