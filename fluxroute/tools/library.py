"""The dispatcher: a tool call, validated, run by the router it was given, answered with the output model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel

from fluxroute.catalog import Catalog
from fluxroute.errors import ConsentRequired, InvalidRequest, UnsafeURL
from fluxroute.prompts import RewriteQuery, rewrite_image_prompt
from fluxroute.providers.base import Availability, ProgressCallback
from fluxroute.router.drafts import DraftSet, FinalImage, FinalizeRoute, RoundPlan
from fluxroute.settings import Settings
from fluxroute.tools.image_args import (
    DraftArgs,
    EditArgs,
    FinalizeArgs,
    GenerateArgs,
    ImageArgs,
    PlanArgs,
    UpscaleArgs,
    VaryArgs,
)
from fluxroute.tools.jobs import BackgroundJobs, JobRunner
from fluxroute.tools.outputs import (
    DraftSetOutput,
    FinalOutput,
    GenerateOutput,
    JobStatusOutput,
    ModelsOutput,
    PlanOutput,
)
from fluxroute.tools.specs import JobQuery, JobRef, ModelsQuery, get_tool
from fluxroute.tools.validation import validate
from fluxroute.types import ImageRequest, Plan


class ImageRouter(JobRunner, Protocol):
    """What the tools need of fluxroute.router.Router: what background jobs need, and planning."""

    settings: Settings
    catalog: Catalog

    @property
    def availability(self) -> Mapping[str, Availability]: ...

    def plan(self, request: ImageRequest, input_size: tuple[int, int] | None = None) -> Plan: ...

    def resolve_references(self, request: ImageRequest) -> ImageRequest: ...

    async def input_size(self, request: ImageRequest) -> tuple[int, int] | None: ...

    def plan_round(self, request: ImageRequest, n: int = 4) -> RoundPlan: ...

    async def draft(self, request: ImageRequest, n: int = 4, progress: ProgressCallback | None = None) -> DraftSet: ...

    def plan_finalize(self, draft_set_id: str, index: int, *, strength: float | None = None) -> FinalizeRoute: ...

    def source_prompt(self, reference: str) -> str | None: ...

    async def finalize(
        self,
        draft_set_id: str,
        index: int,
        *,
        strength: float | None = None,
        idempotency_key: str | None = None,
        progress: ProgressCallback | None = None,
        upscale: float | None = None,
    ) -> FinalImage: ...


@dataclass(frozen=True)
class SpendQuestion:
    """A generate_image call the user should approve first: what it would cost and why it needs asking."""

    estimate_usd: Decimal
    ceiling_usd: Decimal  # the most any candidate (fallbacks included) could cost
    label: str
    reasons: list[str]

    @property
    def message(self) -> str:
        extra = f" (up to {usd(self.ceiling_usd)} if it falls back)" if self.ceiling_usd > self.estimate_usd else ""
        reasons = "; ".join(self.reasons)
        return f"This generation is estimated at {usd(self.estimate_usd)} on {self.label}{extra}: {reasons}."


def usd(amount: Decimal) -> str:
    """'$0.100', '$0.007', '$0.0035': at least three decimals, more only when the amount has them."""
    return f"${amount:.3f}" if amount == round(amount, 3) else f"${amount.normalize()}"


class ToolLibrary:
    """Runs tool calls against one router; nothing reaches a provider before the arguments validate, and no
    call costs more than the user agreed to without being asked (fail closed)."""

    def __init__(self, router: ImageRouter) -> None:
        self.router = router
        self.jobs = BackgroundJobs(router)

    async def dispatch(
        self,
        name: str,
        args: object,
        progress: ProgressCallback | None = None,
        *,
        approved_usd: Decimal | None = None,
    ) -> BaseModel:
        """Validate `args` for tool `name`, run it, and return its output model; `progress` hears from the
        job generate_image or get_image_job follows. `approved_usd` is what the user agreed to spend on
        this call when asked (MCP elicitation); it also caps the call.

        Raises:
            InvalidRequest: unknown tool or invalid arguments (nothing ran), or a model the catalog lacks.
            ConsentRequired: generate_image would cost more than the user agreed to (nothing ran).
            JobNotFound: get_image_job or cancel_image_job with an unknown job id.
            FluxrouteError: whatever the router raises while generating (budget, provider failures).
        """
        spec = get_tool(name)
        parsed = validate(name, args)
        match spec.handler, parsed:
            case "generate", GenerateArgs():
                return await self.generate(parsed, progress, approved_usd)
            case "edit", EditArgs():
                return await self.generate(parsed.generate_args(), progress, approved_usd)
            case "vary", VaryArgs():
                return await self.generate(parsed.generate_args(), progress, approved_usd)
            case "upscale", UpscaleArgs():
                source_prompt = self.router.source_prompt(parsed.image)
                return await self.generate(parsed.generate_args(source_prompt), progress, approved_usd)
            case "plan", PlanArgs() if parsed.drafts is not None:
                planned = self.router.plan_round(self.image_request(parsed), parsed.drafts)
                return PlanOutput.from_round(planned).model_copy(update={"warnings": parsed.deprecations()})
            case "plan", ImageArgs():
                request = self.image_request(parsed)
                output = PlanOutput.from_plan(self.router.plan(request, await self.router.input_size(request)))
                return output.model_copy(update={"warnings": parsed.deprecations()})
            case "job", JobQuery():
                job = GenerateOutput.from_view(await self.jobs.wait(parsed.job_id, parsed.wait_s, progress))
                return job.with_lineage(self.router.store.lineage(parsed.job_id))
            case "draft", DraftArgs():
                return await self.draft(parsed, progress, approved_usd)
            case "finalize", FinalizeArgs():
                return await self.finalize(parsed, progress, approved_usd)
            case "cancel", JobRef():
                return JobStatusOutput.from_view(await self.jobs.cancel(parsed.job_id))
            case "models", ModelsQuery():
                return self.list_models(parsed)
            case "rewrite", RewriteQuery():
                return rewrite_image_prompt(parsed)
        raise TypeError(f"tool {name}: handler {spec.handler!r} cannot take {type(parsed).__name__}")

    async def generate(
        self, args: GenerateArgs, progress: ProgressCallback | None = None, approved_usd: Decimal | None = None
    ) -> GenerateOutput:
        question = await self.spend_question(args)
        if question is not None and (approved_usd is None or approved_usd < question.ceiling_usd):
            raise ConsentRequired(
                f"{question.message} Nothing was spent. Ask the user; if they agree, call again with "
                "confirm_spend=true."
            )
        # `job:` references are read by the router itself, which records them as the images' lineage
        request = args.request(max_cost_usd=None if approved_usd is None else float(approved_usd))
        job_id = await self.jobs.start(request)
        output = GenerateOutput.from_view(await self.jobs.wait(job_id, args.wait_s, progress))
        return output.model_copy(update={"warnings": [*args.deprecations(), *output.warnings]})

    async def draft(
        self, args: DraftArgs, progress: ProgressCallback | None = None, approved_usd: Decimal | None = None
    ) -> DraftSetOutput:
        """draft_images: the set planned, its cost put to the approval thresholds, then made."""
        request = self.router.resolve_references(args.request())
        planned = self.router.plan_round(request, args.n)
        self._check_spend(planned.drafts.cost_usd, f"{args.n} drafts", args.confirm_spend, approved_usd)
        return DraftSetOutput.from_set(await self.router.draft(request, args.n, progress))

    async def finalize(
        self, args: FinalizeArgs, progress: ProgressCallback | None = None, approved_usd: Decimal | None = None
    ) -> FinalOutput:
        """finalize_image: the chosen draft at full quality; its cost is put to the thresholds from the set's
        own request (the final costs about what one image of it does)."""
        if not args.confirm_spend and approved_usd is None:
            route = self.router.plan_finalize(args.draft_set_id, args.index, strength=args.strength)
            if route.plan.chosen is not None:
                self._check_spend(Decimal(str(route.plan.chosen.cost_usd)), "the final", False, None)
        final = await self.router.finalize(
            args.draft_set_id, args.index, strength=args.strength, idempotency_key=args.idempotency_key,
            progress=progress, upscale=args.upscale,
        )  # fmt: skip
        return FinalOutput.from_final(final)

    def _check_spend(self, estimate: Decimal, what: str, confirmed: bool, approved_usd: Decimal | None) -> None:
        """Refuse (ConsentRequired) a spend above the approval thresholds that the user has not approved."""
        if confirmed or (approved_usd is not None and approved_usd >= estimate):
            return
        settings = self.router.settings
        if settings.confirm_above_usd is not None and estimate > settings.confirm_above_usd:
            raise ConsentRequired(
                f"{what}: estimated at {usd(estimate)}, more than {usd(settings.confirm_above_usd)}, the amount a "
                "call may spend without asking. Nothing was spent. Ask the user; if they agree, call again with "
                "confirm_spend=true."
            )

    def image_request(self, args: ImageArgs, max_cost_usd: float | None = None) -> ImageRequest:
        """The library request for tool arguments, with `job:<id>/<n>` image references read from the store.

        Raises:
            InvalidRequest: a bad size, or a reference to no saved image (named by field).
        """
        return self.router.resolve_references(args.request(max_cost_usd))

    async def spend_question(self, args: object) -> SpendQuestion | None:
        """What to ask the user before generate_image `args` run, or None when the call needs no approval
        (under the thresholds, confirm_spend=true, or arguments that will be refused anyway). The estimate is
        the one generate will reserve: priced by the input image's size where the output follows it."""
        try:
            parsed = args if isinstance(args, GenerateArgs) else validate("generate_image", args)
        except InvalidRequest:
            return None
        if not isinstance(parsed, GenerateArgs) or parsed.confirm_spend:
            return None
        try:
            request = self.image_request(parsed)
            input_size = await self.router.input_size(request)
        except (InvalidRequest, UnsafeURL):
            return None  # generate refuses it the same way, before anything is spent
        plan = self.router.plan(request, input_size)
        if plan.chosen is None:
            return None
        estimate = Decimal(str(plan.chosen.cost_usd))
        ceiling = max(Decimal(str(c.cost_usd)) for c in plan.candidates)
        settings = self.router.settings
        reasons = []
        if settings.confirm_above_usd is not None and estimate > settings.confirm_above_usd:
            reasons.append(f"more than {usd(settings.confirm_above_usd)}, the amount a call may spend without asking")
        if settings.confirm_daily_usd is not None:
            spent = self.router.store.spend_summary().spent_today
            if spent + estimate > settings.confirm_daily_usd:
                reasons.append(
                    f"with {usd(spent)} spent today it would pass {usd(settings.confirm_daily_usd)}, "
                    "the daily amount that may be spent without asking"
                )
        return SpendQuestion(estimate, max(ceiling, estimate), plan.chosen.label, reasons) if reasons else None

    def list_models(self, query: ModelsQuery) -> ModelsOutput:
        return ModelsOutput.from_catalog(
            self.router.catalog,
            self.router.availability,
            settings=self.router.settings,
            model=query.model,
            include_unavailable=query.include_unavailable,
        )

    async def aclose(self) -> None:
        await self.jobs.aclose()
