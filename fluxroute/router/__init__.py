"""The Router facade: plan a request, run it with fallback, resume what a previous process left in flight."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from fluxroute.catalog import Catalog, load_catalog
from fluxroute.errors import FieldError, FluxrouteError, InvalidRequest, JobBusy, JobNotFound, NoRouteError
from fluxroute.providers import create_provider
from fluxroute.providers.availability import check_availability, is_upscaler_ref, local_availability_by_repo
from fluxroute.providers.base import Availability, ProgressCallback, Provider
from fluxroute.router.drafts import (
    DEFAULT_DRAFTS,
    DraftSet,
    FinalImage,
    FinalizeRoute,
    RoundPlan,
    make_drafts,
    make_final,
    plan_round,
    route_final,
)
from fluxroute.router.execute import CancelReport, Executor
from fluxroute.router.input_images import (
    Parent,
    check_input_images,
    input_urls,
    parents_of,
    resolve_references,
    source_prompt,
)
from fluxroute.router.input_size import probe_input_size
from fluxroute.router.planner import Planner, plan_bytes
from fluxroute.settings import Settings
from fluxroute.store import Store, open_store
from fluxroute.store.leases import attempt_free
from fluxroute.types import MAX_UPSCALE_FACTOR, GenerationResult, ImageRequest, Plan

__all__ = ["Router"]

# the plan cache keeps at most about this many bytes of plans (planner.plan_bytes), oldest dropped first
PLAN_CACHE_BYTES = 16 * 1024 * 1024


class Router:
    """Plans and runs image requests. Availability is checked once, at construction; providers and the
    store are created on first use, so planning needs neither keys nor a writable home."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog | None = None,
        availability: Mapping[str, Availability] | None = None,
        store: Store | None = None,
        providers: Mapping[str, Provider] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog(settings)
        if availability is None:
            local_repos = [offer.endpoint for offer in self.catalog.offers if offer.provider == "local"]
            fleet_endpoints = [offer.endpoint for offer in self.catalog.offers if offer.provider == "ray"]
            availability = check_availability(settings, local_repos, fleet_endpoints)
            # each local offer runs only where its own weights are; an upscaler says why it cannot (its weights
            # file, spandrel) even where no pipeline can run either
            asked = local_repos if availability["local"].ok else [r for r in local_repos if is_upscaler_ref(r)]
            by_repo = local_availability_by_repo(settings, asked)
            availability = {**availability, **{f"local:{repo}": a for repo, a in by_repo.items()}}
        self.availability: dict[str, Availability] = dict(availability)
        self.planner = Planner(self.catalog, settings, self.availability)
        # plans depend only on the request, the settings, the catalog and availability, all fixed here
        self._plans: dict[tuple[ImageRequest, tuple[int, int] | None], tuple[Plan, int]] = {}
        self._plans_bytes = 0  # the sum of the sizes kept with the plans
        self._store = store
        self._providers: dict[str, Provider] = dict(providers or {})

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = create_provider(name, self.settings)
        return self._providers[name]

    def open_provider(self, name: str) -> Provider | None:
        """Provider `name` if this router has made it already (it may be following jobs), else None."""
        return self._providers.get(name)

    def plan(self, request: ImageRequest, input_size: tuple[int, int] | None = None) -> Plan:
        """The plan for `request`; the same request is planned once (a tool call plans to ask for approval,
        to check it, and to run, and agents often plan before they generate). `input_size` is what
        `await self.input_size(request)` read: offers whose output follows the input image are priced by it;
        without it they are estimated at the requested size (and say so)."""
        key = (request, input_size)
        kept = self._plans.get(key)
        if kept is not None:
            return kept[0]
        plan = self.planner.plan(request, input_size)
        size = plan_bytes(plan, request)
        if size > PLAN_CACHE_BYTES:
            return plan  # larger than the whole cache: not kept
        while self._plans and self._plans_bytes + size > PLAN_CACHE_BYTES:
            self._plans_bytes -= self._plans.pop(next(iter(self._plans)))[1]
        self._plans[key] = (plan, size)
        self._plans_bytes += size
        return plan

    def source_prompt(self, reference: str) -> str | None:
        """The prompt of the job a `job:<job_id>/<n>` reference names (None for any other image, or a job not
        here): what an upscale of an earlier result is about, for the upscalers that read a prompt."""
        return source_prompt(reference, self.store) if reference.startswith("job:") else None

    def resolve_references(self, request: ImageRequest) -> ImageRequest:
        """`request` with its `job:<job_id>/<n>` image inputs (earlier results) read from the store as data:
        URIs; unchanged when it has none.

        Raises:
            InvalidRequest: a reference names no saved image here (by field).
        """
        if not any(url.startswith("job:") for _, url in input_urls(request)):
            return request  # the store is not opened for nothing: a plan creates no files
        return resolve_references(request, self.store, self.settings)

    async def input_size(self, request: ImageRequest) -> tuple[int, int] | None:
        """The entry every caller passes before planning (generate, `fluxroute route`, plan_image_route):
        first the request's image URLs are checked (see router/input_images.py: public http(s) addresses
        without credentials, or base64 PNG/JPEG/WebP data: URIs within the byte and pixel limits), then the
        pixel size of `request.init_image` is read when an offer that may serve the request outputs at its
        input image's size (and bills by it); None, reading nothing, when no such offer is in play. Only the
        image's header is read, through the address guard.

        Raises:
            InvalidRequest: an image URL is refused, or init_image cannot be fetched or read as an image where
                its size decides the price; each FieldError names the field and why (nothing was sent or
                reserved).
        """
        await check_input_images(request, self.settings)
        if request.init_image is None or not self.planner.needs_input_size(request):
            return None
        return await probe_input_size(request.init_image, self.settings)

    async def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
        on_job: Callable[[str], None] | None = None,
        *,
        offer_id: str | None = None,
        parents: tuple[Parent, ...] | None = None,
    ) -> GenerationResult:
        """Plan, then run the candidates in order until one succeeds. `on_job` hears the job id as soon as
        the job is recorded (before any provider call), so a caller can hand out a handle to it. `offer_id` runs
        only that offer's candidate (no fallback): the draft → final workflow pins the route it planned.
        `parents`: the lineage its images get (default: the earlier result its init_image names by reference,
        `job:<id>/<n>`, edited_from or varied_from by the request's mode), stored and embedded in each image.

        Raises:
            InvalidRequest: an image URL is refused (see `input_size`), or init_image cannot be fetched or read
                where its size decides the price.
            NoRouteError: nothing configured can serve the request (every reason listed).
            BudgetExceeded: every candidate would cross a spending cap.
            AllProvidersFailed: every candidate failed; each provider's error is attached.
            ProviderError: a failure after which trying elsewhere could pay twice or go against the caller.
        """
        parents = parents_of(request) if parents is None else parents
        request = self.resolve_references(request)
        plan = self.plan(request, await self.input_size(request))  # before anything is recorded or reserved
        if offer_id is not None:
            pinned = [c for c in plan.candidates if c.offer_id == offer_id]
            if not pinned:
                reasons = [str(r) for r in plan.rejections if r.offer_id == offer_id]
                reasons += [f"{c.label}: not available ({c.unavailable_reason})" for c in plan.unavailable]
                raise NoRouteError(f"offer {offer_id} cannot serve this request", reasons)
            plan = plan.model_copy(update={"candidates": pinned})
        return await self._executor().run(request, plan, progress, out_dir, on_job, parents)

    async def draft(
        self,
        request: ImageRequest,
        n: int = DEFAULT_DRAFTS,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
    ) -> DraftSet:
        """n cheap variants of `request` as one draft set (per-image seeds, costs, a numbered contact sheet),
        routed by the catalog's draft policy (see fluxroute.router.drafts).

        Raises:
            InvalidRequest: n out of range, an input image, or what generate refuses.
            NoRouteError: no draft offer can serve the request (each one's reasons listed).
            FluxrouteError: what generate raises for a draft call.
        """
        return await make_drafts(self, request, n, out_dir, progress)

    def plan_round(self, request: ImageRequest, n: int = DEFAULT_DRAFTS, *, as_if_available: bool = False) -> RoundPlan:
        """A draft set of `request` and its finalize, planned with both costs; nothing runs. `as_if_available`: where no
        offer is available here (no key, no weights), the round that would run once one is, marked not available."""
        return plan_round(self, request, n, as_if_available=as_if_available)

    def plan_finalize(self, draft_set_id: str, index: int, *, strength: float | None = None) -> FinalizeRoute:
        """How draft `index` of set `draft_set_id` would become the final: method, reason, plan and cost.

        Raises:
            JobNotFound: no such draft set.
            InvalidRequest: no draft `index`.
        """
        return route_final(self, draft_set_id, index, strength)[1]

    async def finalize(
        self,
        draft_set_id: str,
        index: int,
        *,
        strength: float | None = None,
        method: Literal["auto", "same_seed", "image_conditioned"] = "auto",
        idempotency_key: str | None = None,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
        upscale: float | None = None,
    ) -> FinalImage:
        """Draft `index` (from 1) of set `draft_set_id` at full quality: the same model, size and seed at full
        steps where the draft ran on that model, else the draft as init image at `strength` (default 0.5). With
        `upscale`, the final is then upscaled by that factor (faithfully, routed like any upscale; its own job,
        upscaled_from the final, idempotent under `idempotency_key` + ":upscale").

        Raises:
            JobNotFound: no such draft set.
            InvalidRequest: no draft `index`, or a method the draft's route cannot take.
            FluxrouteError: what generate raises.
        """
        if upscale is not None and not 1 <= upscale <= MAX_UPSCALE_FACTOR:  # refused before the final is paid for
            raise InvalidRequest([FieldError("upscale", upscale, f"a factor from 1 to {MAX_UPSCALE_FACTOR}")])
        final = await make_final(
            self,
            draft_set_id,
            index,
            strength=strength,
            method=method,
            idempotency_key=idempotency_key,
            out_dir=out_dir,
            progress=progress,
        )
        if upscale is None:
            return final
        request = ImageRequest(
            prompt=str(final.result.plan.request.get("prompt") or "an image"),
            init_image=f"job:{final.result.job_id}/0",
            task="upscale",
            upscale_factor=upscale,
            idempotency_key=None if idempotency_key is None else f"{idempotency_key[:190]}:upscale",
        )
        upscaled = await self.generate(request, progress, out_dir)
        return final.model_copy(update={"upscaled": upscaled})

    async def resume_in_flight(
        self, progress: ProgressCallback | None = None
    ) -> list[GenerationResult | FluxrouteError]:
        """Collect jobs a previous process submitted but never saw finish; each is saved and billed once.
        Submissions cut off before their answer are looked up in the provider's job listing first."""
        outcomes: list[GenerationResult | FluxrouteError] = []
        for job_id in await self.recover_in_flight():
            try:
                outcomes.append(await self.resume_job(job_id, progress))
            except FluxrouteError as exc:
                outcomes.append(exc)
        return outcomes

    async def recover_in_flight(self) -> list[str]:
        """Settle what stopped processes left mid-submission, then list the jobs with a provider job to follow.

        A submission whose process has stopped is reconciled with the provider's job listing: the job it
        created is adopted (and followed), or its budget released when it created none; where that cannot be
        told (no listing, several candidates) it stays at risk and shows in `fluxroute jobs`.
        """
        executor = self._executor()
        for attempt in self.store.submitting_attempts():
            if attempt_free(attempt):  # its call ended with it at risk, or its process stopped
                with contextlib.suppress(JobBusy):  # another process took it up meanwhile
                    await executor.recover_submission(attempt)
        return self.in_flight_jobs()

    def in_flight_jobs(self) -> list[str]:
        """Ids of jobs with a provider job in flight (accepted, not yet settled) that no live process follows."""
        return list(dict.fromkeys(a.job_id for a in self.store.in_flight_attempts() if attempt_free(a)))

    async def resume_job(self, job_id: str, progress: ProgressCallback | None = None) -> GenerationResult:
        """Follow job `job_id`'s in-flight provider job to the end: wait, save, bill once.

        Raises:
            JobNotFound: no such job, or it has no provider job in flight.
            JobBusy: a live process follows it already.
            PaymentAtRisk: the provider job's outcome is still unknown (it stays at risk).
            ProviderError: the provider job failed.
            ResultNotSaved: it was billed, and its images could not be saved.
        """
        in_flight = [a for a in self.store.attempts_for(job_id) if a.status == "in_flight"]
        if not in_flight:
            raise JobNotFound(f"job {job_id} has no provider job in flight")
        return await self._executor().resume(in_flight[-1], progress)

    async def follow_job(self, job_id: str, progress: ProgressCallback | None = None) -> GenerationResult | None:
        """Follow job `job_id` to its end wherever it runs: resumed here when no live process follows it, watched
        in the store while one does (another replica). None: it ended without a result here (see its record).

        Raises:
            JobNotFound: no such job.
            FluxrouteError: what resuming it here raises.
        """
        return await self._executor().follow_job(job_id, progress)

    async def cancel_job(self, job_id: str) -> CancelReport:
        """Ask the provider to cancel job `job_id` and report what it answered, and what that means for the
        money (only a job cancelled before it ran is certain not to be charged).

        Raises:
            JobNotFound: no such job.
        """
        job = self.store.get_job(job_id)
        open_attempts = [a for a in self.store.attempts_for(job_id) if a.status in ("submitting", "in_flight")]
        if not open_attempts:
            return CancelReport(job_id, None, f"job {job_id} is {job.status}; there is nothing to cancel")
        return await self._executor().cancel(open_attempts[-1])

    def settle_job(self, job_id: str, *, billed: bool) -> list[str]:
        """Close job `job_id`'s amounts at risk by what the provider's own records (its dashboard, request
        history or invoice) say: `billed` charges them, otherwise they are released. One line per attempt.

        Raises:
            JobNotFound: no such job, or nothing of it is at risk.
        """
        self.store.get_job(job_id)
        held = self.store.at_risk(job_id)
        if not held:
            raise JobNotFound(f"job {job_id} has nothing at risk to settle")
        executor = self._executor()
        return [executor.settle(attempt, billed=billed) for attempt, _ in held]

    def _executor(self) -> Executor:
        return Executor(self.settings, self.catalog, self.store, self.provider)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
