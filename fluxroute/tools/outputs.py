"""What each tool returns: compact models built from a Plan, a GenerationResult or the catalog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from fluxroute.catalog import Catalog, Offer, license_line, license_refusal
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.providers.base import Availability, Progress
from fluxroute.settings import Settings
from fluxroute.tools.jobs import JobStatus, JobView
from fluxroute.types import Candidate, GenerationResult, Plan, ProviderName

if TYPE_CHECKING:
    from fluxroute.router.drafts import DraftSet, FinalImage, RoundPlan
    from fluxroute.store import LineageLink

# rejected offers a tool result lists (in its rejections and its explanation); the rest are counted
MAX_LISTED_REJECTIONS = 20

PRICE_UNITS: dict[str, str] = {
    "image": "per image",
    "megapixel_ceil": "per megapixel, rounded up per image",
    "gpu_second": "per GPU-second",
    "compute_second": "per compute-second (settled at the compute time the provider reports)",
}


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChosenOffer(_Output):
    """The offer a call runs on: exactly what it sends and what it costs."""

    offer_id: str
    label: str
    provider: ProviderName
    model: str
    width: int
    height: int
    cost_usd: float
    latency_s: float
    adjustments: list[str]
    params: dict[str, object]

    @classmethod
    def from_candidate(cls, candidate: Candidate) -> ChosenOffer:
        return cls(
            offer_id=candidate.offer_id,
            label=candidate.label,
            provider=candidate.provider,
            model=candidate.model,
            width=candidate.width,
            height=candidate.height,
            cost_usd=candidate.cost_usd,
            latency_s=candidate.latency_s,
            adjustments=[str(adjustment) for adjustment in candidate.adjustments],
            params=candidate.params,
        )


class Fallback(_Output):
    label: str
    cost_usd: float


class UnavailableOffer(_Output):
    label: str
    cost_usd: float
    reason: str


class RejectedOffer(_Output):
    label: str
    reasons: list[str]


class PlanOutput(_Output):
    """Where a request would run, why, what it would cost, and what else was considered."""

    chosen: ChosenOffer | None
    fallbacks: list[Fallback]
    unavailable: list[UnavailableOffer]
    rejections: list[RejectedOffer]
    explanation: str
    warnings: list[str] = []
    drafts_cost_usd: float | None = None
    final_cost_usd: float | None = None

    @classmethod
    def from_round(cls, planned: RoundPlan) -> PlanOutput:
        """A draft → final round: the final's plan, both costs, and how the drafts and the final are routed."""
        output = cls.from_plan(planned.final.plan)
        explanation = (
            f"{planned.summary}.\nDrafts: {planned.drafts.explanation}\nFinal: {planned.final.reason}.\n"
            f"{output.explanation}"
        )
        return output.model_copy(
            update={
                "explanation": explanation,
                "drafts_cost_usd": float(planned.drafts.cost_usd),
                "final_cost_usd": float(planned.final_cost_usd),
            }
        )

    @classmethod
    def from_plan(cls, plan: Plan) -> PlanOutput:
        return cls(
            chosen=None if plan.chosen is None else ChosenOffer.from_candidate(plan.chosen),
            fallbacks=[Fallback(label=c.label, cost_usd=c.cost_usd) for c in plan.candidates[1:]],
            unavailable=[
                UnavailableOffer(label=c.label, cost_usd=c.cost_usd, reason=c.unavailable_reason or "unavailable")
                for c in plan.unavailable
            ],
            rejections=[
                RejectedOffer(label=r.label, reasons=r.reasons) for r in plan.listed_rejections(MAX_LISTED_REJECTIONS)
            ],
            explanation=plan.explain(MAX_LISTED_REJECTIONS),
        )


class ImageOutput(_Output):
    path: str | None
    url: str | None
    width: int
    height: int
    format: str
    seed: int | None
    flagged: bool


class JobProgress(_Output):
    """The latest progress event of a running job."""

    status: str
    message: str
    queue_position: int | None
    step: int | None
    total_steps: int | None

    @classmethod
    def from_event(cls, event: Progress) -> JobProgress:
        return cls(
            status=event.status,
            message=event.message,
            queue_position=event.queue_position,
            step=event.step,
            total_steps=event.total_steps,
        )


class GenerateOutput(_Output):
    """A generation job: its images, where they were made, what they cost and why they ran there; or, while
    it runs, its progress so far."""

    job_id: str
    status: JobStatus
    images: list[ImageOutput] = []
    provider: ProviderName | None = None
    model: str | None = None
    offer_id: str | None = None
    cost_usd: float | None = None
    seed: int | None = None
    # the worker that made the images, where the provider names one (a GPU fleet's replica)
    worker: str | None = None
    warnings: list[str] = []
    explanation: str = ""
    progress: JobProgress | None = None
    error: str | None = None
    lineage: list[str] = []

    def with_lineage(self, links: list[LineageLink]) -> GenerateOutput:
        """This output with its images' lineage in words ("image 0 finalized_from job:<id>/<n>")."""
        return self.model_copy(update={"lineage": lineage_lines(self.job_id, links)}) if links else self

    @classmethod
    def from_view(cls, view: JobView) -> GenerateOutput:
        if view.result is not None:
            return cls.from_result(view.result)
        return cls(
            job_id=view.job_id,
            status=view.status,
            progress=None if view.progress is None else JobProgress.from_event(view.progress),
            error=view.error,
        )

    @classmethod
    def from_result(cls, result: GenerationResult) -> GenerateOutput:
        return cls(
            job_id=result.job_id,
            status="succeeded",
            images=[
                ImageOutput(
                    path=image.path,
                    url=image.url,
                    width=image.width,
                    height=image.height,
                    format=image.format,
                    seed=image.seed,
                    flagged=image.flagged,
                )
                for image in result.images
            ],
            provider=result.provider,
            model=result.model,
            offer_id=result.offer_id,
            cost_usd=result.cost_usd,
            seed=result.seed,
            worker=result.worker,
            warnings=result.warnings,
            explanation=result.plan.explain(MAX_LISTED_REJECTIONS),
        )


def lineage_lines(job_id: str, links: list[LineageLink]) -> list[str]:
    """Each link of job `job_id`'s images in words: what they came from, and what came from them."""
    lines = []
    for link in links:
        if link.job_id == job_id and link.relation == "draft_of":
            lines.append(
                f"image {link.image_index} draft_of draft set {link.parent_job_id} (draft {link.parent_index})"
            )
        elif link.job_id == job_id:
            lines.append(f"image {link.image_index} {link.relation} job:{link.parent_job_id}/{link.parent_index}")
        else:
            lines.append(f"image {link.parent_index} -> {link.relation} by job:{link.job_id}/{link.image_index}")
    return lines


class DraftOutput(_Output):
    """One draft of a set: its number on the contact sheet, reference, seed, cost and path."""

    number: int
    image: str
    seed: int | None
    cost_usd: float
    path: str | None


class DraftSetOutput(_Output):
    """A draft set: the drafts, their route and why, the total cost and the contact sheet's path."""

    draft_set_id: str
    drafts: list[DraftOutput]
    offer_id: str
    total_cost_usd: float
    contact_sheet: str | None
    explanation: str
    warnings: list[str] = []

    @classmethod
    def from_set(cls, drafts: DraftSet) -> DraftSetOutput:
        return cls(
            draft_set_id=drafts.id,
            drafts=[
                DraftOutput(number=d.number, image=d.reference, seed=d.seed, cost_usd=d.cost_usd, path=d.path)
                for d in drafts.drafts
            ],
            offer_id=drafts.offer_id,
            total_cost_usd=drafts.total_cost_usd,
            contact_sheet=drafts.contact_sheet,
            explanation=drafts.explanation,
            warnings=drafts.warnings,
        )


class FinalOutput(_Output):
    """The final made from a draft: how (same_seed or image_conditioned) and why, where it ran and what it cost."""

    draft_set_id: str
    draft: int
    method: str
    reason: str
    job_id: str
    offer_id: str
    cost_usd: float
    seed: int | None
    images: list[ImageOutput]
    warnings: list[str]
    # the final upscaled (finalize_image with upscale): its own job, upscaled_from the final
    upscaled: GenerateOutput | None = None

    @classmethod
    def from_final(cls, final: FinalImage) -> FinalOutput:
        generated = GenerateOutput.from_result(final.result)
        return cls(
            draft_set_id=final.draft_set_id,
            draft=final.draft_number,
            method=final.method,
            reason=final.reason,
            job_id=generated.job_id,
            offer_id=final.result.offer_id,
            cost_usd=final.result.cost_usd,
            seed=final.result.seed,
            images=generated.images,
            warnings=generated.warnings,
            upscaled=None if final.upscaled is None else GenerateOutput.from_result(final.upscaled),
        )

    def generation(self) -> GenerateOutput:
        """The final as a generation result (what delivery shows for any image)."""
        return GenerateOutput(
            job_id=self.job_id,
            status="succeeded",
            images=self.images,
            offer_id=self.offer_id,
            cost_usd=self.cost_usd,
            seed=self.seed,
            warnings=self.warnings,
            explanation=self.reason,
        )


class JobStatusOutput(_Output):
    """Where a job stands after a cancel: cancelled, or already finished (and how)."""

    job_id: str
    status: JobStatus
    error: str | None = None

    @classmethod
    def from_view(cls, view: JobView) -> JobStatusOutput:
        return cls(job_id=view.job_id, status=view.status, error=view.error)


class OfferOutput(_Output):
    offer_id: str
    label: str
    provider: ProviderName
    endpoint: str
    price_usd: float | None  # None: not published; set [prices] <offer_id> to use the offer
    modes: list[str]
    price_unit: str
    price_as_of: str
    license: str
    commercial_use: bool
    available: bool
    reason: str | None


class ModelOutput(_Output):
    id: str
    name: str
    summary: str
    offers: list[OfferOutput]


class ModelsOutput(_Output):
    """Every model with its offers: price, license, and whether it can run here (and if not, why)."""

    models: list[ModelOutput]

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog,
        availability: Mapping[str, Availability],
        *,
        settings: Settings | None = None,
        model: str | None = None,
        include_unavailable: bool = True,
    ) -> ModelsOutput:
        """Each offer's license as one line a person can act on, and whether commercial use is allowed under the
        declarations in `settings` (none: the defaults, nothing declared).

        Raises:
            InvalidRequest: `model` names no model in the catalog.
        """
        known = [m.id for m in catalog.models]
        if model is not None and model not in known:
            raise InvalidRequest([FieldError("model", model, f"one of: {', '.join(known)}")])
        declared = Settings() if settings is None else settings
        models = []
        for info in catalog.models:
            if model not in (None, info.id):
                continue
            offers = [
                _offer_output(catalog, offer, availability, declared)
                for offer in catalog.offers
                if offer.model == info.id
            ]
            if not include_unavailable:
                offers = [offer for offer in offers if offer.available]
            models.append(ModelOutput(id=info.id, name=info.name, summary=info.summary, offers=offers))
        return cls(models=models)


def _offer_output(
    catalog: Catalog, offer: Offer, availability: Mapping[str, Availability], settings: Settings
) -> OfferOutput:
    license_ = catalog.licenses[offer.license]
    state = availability.get(f"{offer.provider}:{offer.endpoint}") or availability.get(
        offer.provider, Availability(False, "provider not registered")
    )
    return OfferOutput(
        offer_id=offer.id,
        label=offer.label,
        provider=offer.provider,
        endpoint=offer.endpoint,
        price_usd=None if offer.price.usd is None else float(offer.price.usd),
        modes=list(offer.modes),
        price_unit=PRICE_UNITS[offer.price.unit],
        price_as_of=offer.price.as_of,
        license=license_line(license_, offer),
        commercial_use=license_refusal(license_, offer, settings, "commercial") is None,
        available=state.ok,
        reason=state.reason or None,
    )
