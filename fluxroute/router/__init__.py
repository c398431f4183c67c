"""The Router facade: plan a request, run it with fallback, resume what a previous process left in flight."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fluxroute.catalog import Catalog, load_catalog
from fluxroute.errors import JobNotFound, ProviderError
from fluxroute.providers import create_provider
from fluxroute.providers.availability import check_availability
from fluxroute.providers.base import Availability, ProgressCallback, Provider
from fluxroute.router.execute import Executor
from fluxroute.router.planner import Planner
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from fluxroute.types import GenerationResult, ImageRequest, Plan

__all__ = ["Router"]

# a submission takes seconds; one still unconfirmed after this was cut off by a crash
STALE_SUBMISSION = timedelta(minutes=2)
PLAN_CACHE_SIZE = 256


class Router:
    """Plans and runs image requests. Availability is checked once, at construction; providers and the
    store are created on first use, so planning needs neither keys nor a writable home."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog | None = None,
        availability: Mapping[str, Availability] | None = None,
        store: JobStore | None = None,
        providers: Mapping[str, Provider] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog(settings)
        if availability is None:
            local_repos = [offer.endpoint for offer in self.catalog.offers if offer.provider == "local"]
            availability = check_availability(settings, local_repos)
        self.availability: dict[str, Availability] = dict(availability)
        self.planner = Planner(self.catalog, settings, self.availability)
        # plans depend only on the request, the settings, the catalog and availability, all fixed here
        self._plans: dict[ImageRequest, Plan] = {}
        self._store = store
        self._providers: dict[str, Provider] = dict(providers or {})

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore.open(self.settings.home)
        return self._store

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = create_provider(name, self.settings)
        return self._providers[name]

    def plan(self, request: ImageRequest) -> Plan:
        """The plan for `request`; the same request is planned once (a tool call plans to ask for approval,
        to check it, and to run, and agents often plan before they generate)."""
        plan = self._plans.get(request)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                del self._plans[next(iter(self._plans))]
            plan = self._plans[request] = self.planner.plan(request)
        return plan

    async def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
        on_job: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """Plan, then run the candidates in order until one succeeds. `on_job` hears the job id as soon as
        the job is recorded (before any provider call), so a caller can hand out a handle to it.

        Raises:
            NoRouteError: nothing configured can serve the request (every reason listed).
            BudgetExceeded: every candidate would cross a spending cap.
            AllProvidersFailed: every candidate failed; each provider's error is attached.
            ProviderError: a failure after which trying elsewhere could pay twice or go against the caller.
        """
        return await self._executor().run(request, self.plan(request), progress, out_dir, on_job)

    async def resume_in_flight(
        self, progress: ProgressCallback | None = None
    ) -> list[GenerationResult | ProviderError]:
        """Collect jobs a previous process submitted but never saw finish; each is saved and billed once."""
        outcomes: list[GenerationResult | ProviderError] = []
        for job_id in self.in_flight_jobs():
            try:
                outcomes.append(await self.resume_job(job_id, progress))
            except ProviderError as exc:
                outcomes.append(exc)
        return outcomes

    def in_flight_jobs(self) -> list[str]:
        """Ids of jobs with a provider job in flight that no process is following (after a restart).

        Attempts that stopped mid-submission (no provider job id recorded) cannot be followed; once older
        than STALE_SUBMISSION they are marked failed with that reason.
        """
        stale = datetime.now(UTC) - STALE_SUBMISSION
        for attempt in self.store.submitting_attempts():
            if attempt.started_at > stale:
                continue  # possibly another live process, mid-submission
            self.store.finish_attempt(
                attempt.id, status="failed", error="process stopped while submitting; provider job id unknown"
            )
        return list(dict.fromkeys(attempt.job_id for attempt in self.store.in_flight_attempts()))

    async def resume_job(self, job_id: str, progress: ProgressCallback | None = None) -> GenerationResult:
        """Follow job `job_id`'s in-flight provider job to the end: wait, save, bill once.

        Raises:
            JobNotFound: no such job, or it has no provider job in flight.
            ProviderError: the provider job failed.
        """
        in_flight = [a for a in self.store.attempts_for(job_id) if a.status == "in_flight"]
        if not in_flight:
            raise JobNotFound(f"job {job_id} has no provider job in flight")
        return await self._executor().resume(in_flight[-1], progress)

    def _executor(self) -> Executor:
        return Executor(self.settings, self.catalog, self.store, self.provider)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
