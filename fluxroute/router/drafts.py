"""Draft → final: a draft set of n cheap variants routed by the catalog's draft policy, with per-image seeds and a
contact sheet, and the finalize that carries one chosen draft to full quality.

The draft policy is catalog data (Offer.draft, Offer.draft_steps, Offer.seeds_per_image): every offer marked for
drafts that the request's license, size and pins allow is planned as the router plans any request, and the
cheapest whole set wins. Each draft and the final are normal jobs through Router.generate, so budgets,
idempotency and the ledger work as for any call.

A finalize keeps the draft's model, size and seed at full steps when the draft ran on the final's own model at few
steps (the starting noise depends on seed and size, not steps, so the composition usually but not always carries
over); otherwise the draft itself is the init image of an image-to-image offer, at a moderate strength.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from fluxroute.errors import FieldError, InvalidRequest, NoRouteError
from fluxroute.router.contact_sheet import contact_sheet, read_or_none
from fluxroute.router.input_images import Parent
from fluxroute.store.files import private_dir
from fluxroute.types import MAX_SEED, Candidate, GenerationResult, ImageRequest, Plan

if TYPE_CHECKING:
    from fluxroute.catalog import Offer
    from fluxroute.providers.base import ProgressCallback
    from fluxroute.router import Router
    from fluxroute.store import DraftSetRecord

__all__ = [
    "CARRY_OVER",
    "DEFAULT_DRAFTS",
    "DEFAULT_STRENGTH",
    "MAX_DRAFTS",
    "Draft",
    "DraftRoute",
    "DraftSet",
    "FinalImage",
    "FinalizeRoute",
    "RoundPlan",
    "make_drafts",
    "make_final",
    "plan_drafts",
    "plan_final",
    "plan_round",
    "route_final",
]

DEFAULT_DRAFTS = 4
MAX_DRAFTS = 8
DEFAULT_STRENGTH = 0.5  # enough change for full quality, little enough to keep the draft's composition
CARRY_OVER = "composition usually but not always carries over"
PLACEHOLDER_DRAFT = "job:draft/0"  # stands for a draft not made yet when a finalize is planned ahead

FinalizeMethod = Literal["same_seed", "image_conditioned"]


class Draft(BaseModel):
    """One draft of a set: its number on the contact sheet (from 1), where it is, its seed and cost."""

    number: int
    job_id: str
    image_index: int
    seed: int | None
    cost_usd: float
    path: str | None
    width: int
    height: int

    @property
    def reference(self) -> str:
        """The draft as an image input of another tool: job:<job id>/<image index>."""
        return f"job:{self.job_id}/{self.image_index}"


class DraftSet(BaseModel):
    """n cheap variants of one request, the route they took and why, what they cost and the contact sheet."""

    id: str
    prompt: str
    drafts: list[Draft]
    offer_id: str
    label: str
    provider: str
    model: str
    total_cost_usd: float
    explanation: str
    contact_sheet: str | None = Field(default=None, description="Path of the numbered contact sheet (JPEG).")
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def from_record(cls, record: DraftSetRecord) -> DraftSet:
        detail = record.detail
        return cls(
            id=record.id,
            prompt=str(record.request.get("prompt", "")),
            drafts=[Draft.model_validate(d) for d in record.drafts],
            offer_id=str(detail.get("offer_id", "")),
            label=str(detail.get("label", "")),
            provider=str(detail.get("provider", "")),
            model=str(detail.get("model", "")),
            total_cost_usd=float(record.total_cost),
            explanation=str(detail.get("explanation", "")),
            contact_sheet=None if detail.get("contact_sheet") is None else str(detail["contact_sheet"]),
            warnings=[str(w) for w in warnings] if isinstance(warnings := detail.get("warnings"), list) else [],
        )


class FinalImage(BaseModel):
    """The full-quality image made from draft `draft_number` of a set, how, and why that way."""

    draft_set_id: str
    draft_number: int
    method: FinalizeMethod
    reason: str
    result: GenerationResult
    # the final upscaled, when the finalize asked for it (its lineage: upscaled_from the final)
    upscaled: GenerationResult | None = None


@dataclass(frozen=True)
class DraftRoute:
    """Where a draft set runs: `calls` calls of `request` (its num_images each, seeds counted on) on `candidate`."""

    offer: Offer
    request: ImageRequest
    candidate: Candidate
    calls: int
    cost_usd: Decimal
    explanation: str


@dataclass(frozen=True)
class FinalizeRoute:
    """How a draft becomes the final: the request, the offer it is pinned to (same_seed) and why."""

    method: FinalizeMethod
    request: ImageRequest
    offer_id: str | None
    reason: str
    plan: Plan


@dataclass(frozen=True)
class RoundPlan:
    """A draft set and its finalize, planned before anything runs: both costs."""

    drafts: DraftRoute
    final: FinalizeRoute
    n: int

    @property
    def final_cost_usd(self) -> Decimal:
        chosen = self.final.plan.chosen
        return Decimal(0) if chosen is None else Decimal(str(chosen.cost_usd))

    @property
    def summary(self) -> str:
        final = self.final.plan.chosen
        where = "" if final is None else f" on {final.label}{_state(final)}"
        return (
            f"{self.n} drafts for {_usd(self.drafts.cost_usd)} on {self.drafts.candidate.label}"
            f"{_state(self.drafts.candidate)}, the final for {_usd(self.final_cost_usd)}{where} "
            f"({self.final.method.replace('_', ' ')})"
        )


def _state(candidate: Candidate) -> str:
    return "" if candidate.available else f" [not available: {candidate.unavailable_reason}]"


def _usd(amount: Decimal) -> str:
    return f"${amount:.3f}" if amount == round(amount, 3) else f"${amount.normalize()}"


def _check_count(n: int) -> None:
    if not 1 <= n <= MAX_DRAFTS:
        raise InvalidRequest([FieldError("n", n, f"a whole number of drafts from 1 to {MAX_DRAFTS}")])


def plan_drafts(
    router: Router, request: ImageRequest, n: int = DEFAULT_DRAFTS, *, as_if_available: bool = False
) -> DraftRoute:
    """The cheapest draft route the request allows (its license, size and pins), explained. `as_if_available`: where
    no offer is available here (no key, no weights), the route that would run once one is, marked not available.

    Raises:
        InvalidRequest: n out of range, or a request with an input image (drafts are text-to-image).
        NoRouteError: no draft offer can serve it (each one's reasons listed).
    """
    _check_count(n)
    if request.init_image is not None:
        raise InvalidRequest([FieldError("init_image", "(given)", "drafts are made from a prompt; leave it out")])
    seed = min(_first_seed(request), MAX_SEED - n + 1)
    routes: list[DraftRoute] = []
    refused: list[str] = []
    for offer in router.catalog.offers:
        if not (offer.draft or offer.draft_steps):
            continue
        if request.model not in ("auto", offer.model):
            refused.append(f"{offer.label}: model is {offer.model}; request pins model={request.model}")
            continue
        if request.provider not in (None, offer.provider):
            refused.append(f"{offer.label}: pinned to provider={request.provider}")
            continue
        per_call = n if offer.seeds_per_image and n <= offer.max_images else 1
        calls = n // per_call
        update: dict[str, object] = {
            "model": offer.model,
            "provider": offer.provider,
            "num_images": per_call,
            "seed": seed,
            "steps": offer.draft_steps,
            "max_cost_usd": None,
            "idempotency_key": None,
        }
        one = request.model_copy(update=update)
        plan = router.plan(one)
        pool = [*plan.candidates, *plan.unavailable] if as_if_available else plan.candidates
        candidate = next((c for c in pool if c.offer_id == offer.id), None)
        if candidate is None:
            refused.append(_why_not(plan, offer))
            continue
        total = Decimal(str(candidate.cost_usd)) * calls
        if request.max_cost_usd is not None and total > Decimal(str(request.max_cost_usd)):
            refused.append(f"{offer.label}: {n} drafts cost {_usd(total)} > max_cost_usd ${request.max_cost_usd:g}")
            continue
        routes.append(DraftRoute(offer, one, candidate, calls, total, ""))
    if not routes:
        raise NoRouteError("no draft offer can serve this request", refused)
    routes.sort(key=lambda r: (not r.candidate.available, r.cost_usd, r.candidate.latency_s * r.calls))
    best = routes[0]
    return DraftRoute(
        best.offer, best.request, best.candidate, best.calls, best.cost_usd, _explain(best, routes[1:], refused, n)
    )


def _first_seed(request: ImageRequest) -> int:
    """The request's seed; else one from its idempotency key (the same calls again send the same requests, as
    their keys demand); else a random one."""
    if request.seed is not None:
        return request.seed
    if request.idempotency_key is not None:
        digest = hashlib.sha256(request.idempotency_key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % (MAX_SEED - MAX_DRAFTS)
    return secrets.randbelow(MAX_SEED - MAX_DRAFTS)


def _why_not(plan: Plan, offer: Offer) -> str:
    for candidate in plan.unavailable:
        if candidate.offer_id == offer.id:
            return f"{offer.label}: not available ({candidate.unavailable_reason})"
    for rejection in plan.rejections:
        if rejection.offer_id == offer.id:
            return str(rejection)
    return f"{offer.label}: not planned for this request"


def _explain(best: DraftRoute, others: list[DraftRoute], refused: list[str], n: int) -> str:
    offer, candidate = best.offer, best.candidate
    how = f"at {offer.draft_steps} steps (the same model as a full-quality final)" if offer.draft_steps else "as is"
    seeds = (
        "one call, image i uses seed + i"
        if best.calls == 1 and n > 1
        else f"{best.calls} call{'s' if best.calls > 1 else ''}, one seed each"
    )
    lines = [
        f"{n} drafts on {candidate.label} {how} at {candidate.width}x{candidate.height} ({seeds}): "
        f"{_usd(best.cost_usd)} in all, the cheapest draft offer allowed."
    ]
    lines += [f"- adjusted {adjustment}" for adjustment in candidate.adjustments]
    lines += [f"- also possible: {r.candidate.label} for {_usd(r.cost_usd)}" for r in others]
    lines += [f"- not possible: {reason}" for reason in refused]
    return "\n".join(lines)


async def make_drafts(
    router: Router,
    request: ImageRequest,
    n: int = DEFAULT_DRAFTS,
    out_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> DraftSet:
    """Make the draft set: each call a normal job pinned to the draft offer, the set and its lineage recorded, and
    the contact sheet saved next to the drafts. An idempotency_key on `request` keys each call (key:draft-i).

    Raises:
        InvalidRequest, NoRouteError: see plan_drafts (nothing ran).
        FluxrouteError: what Router.generate raises for a call (the calls made before it stay recorded).
    """
    route = plan_drafts(router, request, n)
    first_seed = route.request.seed
    assert first_seed is not None
    per_call = route.request.num_images
    key = request.idempotency_key

    async def one_call(i: int) -> GenerationResult:
        call = route.request.model_copy(
            update={"seed": first_seed + i * per_call, "idempotency_key": None if key is None else f"{key}:draft-{i}"}
        )
        return await router.generate(call, progress, out_dir, offer_id=route.offer.id)

    # every call runs to its end (none is left half-followed, its money unknown); the drafts that came back make
    # the set, and a failed call is reported in it; when none came back, the first failure is raised
    outcomes = await asyncio.gather(*(one_call(i) for i in range(route.calls)), return_exceptions=True)
    results = [outcome for outcome in outcomes if isinstance(outcome, GenerationResult)]
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if not results:
        raise failures[0]
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # cancellation and interrupts go on up
    warnings = [f"a draft call failed: {failure}" for failure in failures]
    drafts: list[Draft] = []
    for i, result in enumerate(results):
        for index, image in enumerate(result.images):
            expected = first_seed + i * per_call + index
            drafts.append(
                Draft(
                    number=len(drafts) + 1,
                    job_id=result.job_id,
                    image_index=index,
                    seed=image.seed if image.seed is not None else expected,
                    cost_usd=result.cost_usd / max(1, len(result.images)),
                    path=image.path,
                    width=image.width,
                    height=image.height,
                )
            )
    total = sum((Decimal(str(result.cost_usd)) for result in results), Decimal(0))
    sheet = await asyncio.to_thread(_save_sheet, drafts, out_dir or router.settings.images_dir, results[0].job_id)
    detail: dict[str, object] = {
        "offer_id": route.offer.id,
        "label": route.candidate.label,
        "provider": route.candidate.provider,
        "model": route.candidate.model,
        "size": [route.candidate.width, route.candidate.height],  # as planned (what the provider was asked for)
        "explanation": route.explanation,
        "contact_sheet": None if sheet is None else str(sheet),
        "warnings": warnings,
    }
    stored = request.model_dump(mode="json", exclude_none=True)
    stored["n"] = n
    listed = [d.model_dump(mode="json") for d in drafts]
    record = await asyncio.to_thread(router.store.record_draft_set, stored, listed, total, detail, key)
    return DraftSet.from_record(record)


def _save_sheet(drafts: list[Draft], directory: Path, stem: str) -> Path | None:
    """The contact sheet as contact-sheet-<first job>.jpg in `directory`; None when no draft was saved to a file."""
    if not any(d.path for d in drafts):
        return None
    data = contact_sheet([read_or_none(d.path) for d in drafts])
    private_dir(directory)
    path = directory / f"contact-sheet-{stem[:12]}.jpg"
    path.write_bytes(data)
    return path


def _original(record: DraftSetRecord) -> ImageRequest:
    stored = {k: v for k, v in record.request.items() if k != "n"}
    return ImageRequest.parse(stored)


def plan_final(
    router: Router,
    draft_offer: Offer,
    request: ImageRequest,
    draft: Draft | None,
    *,
    strength: float | None = None,
    method: Literal["auto", "same_seed", "image_conditioned"] = "auto",
    draft_size: tuple[int, int] | None = None,
    as_if_available: bool = False,
) -> FinalizeRoute:
    """How `draft` (None: planned ahead, before the drafts exist) of a set made on `draft_offer` from `request`
    becomes the final: same model + size + seed at full steps where the draft ran on the final's own model at few
    steps and the final comes out at the draft's size; otherwise image-conditioned (the draft as init image at
    `strength`, default DEFAULT_STRENGTH) on an offer that takes an input image. `draft_size`: the size the drafts
    were planned at (None: the final's own). `as_if_available`: as in plan_drafts.

    Raises:
        InvalidRequest: method="same_seed" where the draft's route cannot keep its seed and size.
    """
    seed = draft.seed if draft is not None else request.seed
    same_model = draft_offer.draft_steps is not None and request.model in ("auto", draft_offer.model)
    if method != "image_conditioned" and same_model:
        final = request.model_copy(
            update={
                "model": draft_offer.model,
                "provider": draft_offer.provider,
                "num_images": 1,
                "seed": seed,
                "idempotency_key": None,
            }
        )
        plan = router.plan(final)
        pool = [*plan.candidates, *plan.unavailable] if as_if_available else plan.candidates
        chosen = next((c for c in pool if c.offer_id == draft_offer.id), None)
        same_size = chosen is not None and draft_size in (None, (chosen.width, chosen.height))
        if chosen is not None and same_size:
            steps = chosen.params.get("num_inference_steps") or chosen.params.get("steps") or "full"
            reason = (
                f"the draft ran on {chosen.label} at {draft_offer.draft_steps} steps: the final runs the same model, "
                f"size ({chosen.width}x{chosen.height}) and seed ({seed}) at {steps} steps; the {CARRY_OVER}"
            )
            pinned = plan.model_copy(update={"candidates": [chosen]})
            return FinalizeRoute("same_seed", final, draft_offer.id, reason, pinned)
    if method == "same_seed":
        raise InvalidRequest(
            [
                FieldError(
                    "method", method, "image_conditioned or auto: this draft's route cannot keep its seed and size"
                )
            ]
        )
    reference = draft.reference if draft is not None else PLACEHOLDER_DRAFT
    final = request.model_copy(
        update={
            "init_image": reference,
            "strength": DEFAULT_STRENGTH if strength is None else strength,
            "num_images": 1,
            "seed": seed,
            "idempotency_key": None,
        }
    )
    planned = router.plan(final, draft_size or _target(router, request))
    if as_if_available and not planned.candidates:
        planned = planned.model_copy(update={"candidates": planned.unavailable[:1]})
    why = (
        f"the draft ran on another model ({draft_offer.label})"
        if draft_offer.draft_steps is None
        else "a different model or size was asked for"
    )
    reason = (
        f"{why}, so a seed does not carry its composition: the final starts from the draft itself "
        f"({reference}) at strength {final.strength:g} on an offer that takes an input image"
    )
    return FinalizeRoute("image_conditioned", final, None, reason, planned)


def _target(router: Router, request: ImageRequest) -> tuple[int, int]:
    plan = router.plan(request)
    return plan.target_width, plan.target_height


def plan_round(
    router: Router, request: ImageRequest, n: int = DEFAULT_DRAFTS, *, as_if_available: bool = False
) -> RoundPlan:
    """The draft set and its finalize, planned (nothing runs): both routes and both costs. `as_if_available`: as in
    plan_drafts (what `fluxroute draft --dry-run` shows before keys are set).

    Raises:
        InvalidRequest, NoRouteError: see plan_drafts.
    """
    drafts = plan_drafts(router, request, n, as_if_available=as_if_available)
    seeded = request.model_copy(update={"seed": drafts.request.seed})
    final = plan_final(router, drafts.offer, seeded, None, as_if_available=as_if_available)
    return RoundPlan(drafts, final, n)


def route_final(
    router: Router,
    draft_set_id: str,
    number: int,
    strength: float | None = None,
    method: Literal["auto", "same_seed", "image_conditioned"] = "auto",
) -> tuple[Draft, FinalizeRoute]:
    """Draft `number` (from 1) of the stored set and how it becomes the final (see plan_final); nothing runs.

    Raises:
        JobNotFound: no such draft set.
        InvalidRequest: no draft with that number, or a method the draft's route cannot take.
    """
    record = router.store.get_draft_set(draft_set_id)
    drafts = [Draft.model_validate(d) for d in record.drafts]
    if not 1 <= number <= len(drafts):
        raise InvalidRequest([FieldError("index", number, f"a draft number from 1 to {len(drafts)}")])
    draft = drafts[number - 1]
    offer = router.catalog.offer(str(record.detail.get("offer_id")))
    size = record.detail.get("size")
    draft_size = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None
    route = plan_final(router, offer, _original(record), draft, strength=strength, method=method, draft_size=draft_size)
    return draft, route


async def make_final(
    router: Router,
    draft_set_id: str,
    number: int,
    *,
    strength: float | None = None,
    method: Literal["auto", "same_seed", "image_conditioned"] = "auto",
    idempotency_key: str | None = None,
    out_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> FinalImage:
    """Draft `number` (from 1) of set `draft_set_id` at full quality, as a normal job; its lineage is recorded.

    Raises:
        JobNotFound: no such draft set.
        InvalidRequest: no draft with that number, or a method the draft's route cannot take.
        FluxrouteError: what Router.generate raises.
    """
    draft, route = await asyncio.to_thread(route_final, router, draft_set_id, number, strength, method)
    request = route.request.model_copy(update={"idempotency_key": idempotency_key})
    parents = (Parent(draft.job_id, draft.image_index, "finalized_from"),)
    result = await router.generate(request, progress, out_dir, offer_id=route.offer_id, parents=parents)
    warnings = [*result.warnings, f"finalized from draft {number} of {draft_set_id}: {route.reason}"]
    return FinalImage(
        draft_set_id=draft_set_id,
        draft_number=number,
        method=route.method,
        reason=route.reason,
        result=result.model_copy(update={"warnings": warnings}),
    )
