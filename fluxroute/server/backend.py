"""What the server's tools, resources, completions and webhooks run on: the router and the tool library over it,
made once, in a worker thread.

Answering `initialize` and `tools/list` needs neither (the tools are listed from the specs' saved export, see
server/tools.py). Importing the router, its providers, the store and the validator takes longer than the whole
handshake, so a server that makes its own router starts making it once it runs (`warm_up`), while it answers;
a call that comes sooner waits for that same router. Nothing is made twice.

A server that serves over HTTP is one replica of a service (any number of them may share one store): `replicate`
runs beside it, listening on the store's wake bus (webhooks received by another replica, see server/wakes.py) and,
every ADOPT_EVERY_S, adopting the jobs whose follower stopped (`adopt`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from fluxroute.catalog import load_catalog
from fluxroute.server.wakes import LocalWakeBus, WakeBus, wake_bus

if TYPE_CHECKING:
    from fluxroute.router import Router
    from fluxroute.settings import Settings
    from fluxroute.store import Store
    from fluxroute.tools import ToolLibrary

log = logging.getLogger(__name__)

# how often a replica looks for jobs left in flight by a replica that stopped: the lease renewal period
# (fluxroute.store.leases.RENEW_EVERY_S; not imported here, the store loads with the router)
ADOPT_EVERY_S = 15.0


class Backend:
    """The tool library over one router: the one given, or one made for `settings` (and `store`) on first need."""

    def __init__(self, settings: Settings, router: Router | None = None, store: Store | None = None) -> None:
        self.settings = settings if router is None else router.settings
        # read now, not with the router: a bad price override or added offer stops the server at start
        self.catalog = load_catalog(settings) if router is None else router.catalog
        self._store = store
        self._lock = threading.Lock()
        self._made: tuple[Router, ToolLibrary] | None = None if router is None else (router, _library(router))
        self._resumed = False
        # set by `http_app` before the server runs: run `replicate` beside it (wake listener, adoption sweep)
        self.replicated = False
        self._recovered: set[str] = set()  # submitting attempts `adopt` has had the router recover
        self.wakes: WakeBus = LocalWakeBus()  # where a webhook for a job no waiter here follows is published

    async def library(self) -> ToolLibrary:
        """The tool library, made on the first call (off the event loop: the server keeps answering meanwhile);
        the first to get it also adopts the jobs a previous process left in flight."""
        return (await self._ready())[1]

    async def router(self) -> Router:
        """The router the library runs on, made as `library` makes it."""
        return (await self._ready())[0]

    async def warm_up(self) -> None:
        """Make the library and adopt the jobs left in flight now, so that the first call does not wait for it.
        A failure is logged; the calls that need what failed meet it again and report it."""
        try:
            await self._ready()
        except Exception as exc:
            log.warning("fluxroute could not start its router: %s", exc)

    async def aclose(self) -> None:
        """Stop following jobs (they stay in flight for the next start) and close the router's providers."""
        if self._made is not None:
            router, library = self._made
            await library.aclose()
            await router.aclose()

    async def replicate(self, every_s: float | None = None) -> None:
        """Run until cancelled: listen on the store's wake bus (webhooks another replica received for jobs
        followed here) and, every `every_s` seconds (default ADOPT_EVERY_S), `adopt` the jobs of replicas that
        stopped."""
        every_s = ADOPT_EVERY_S if every_s is None else every_s
        try:
            router, _ = await self._ready()
            bus = wake_bus(self.settings, router.store)
            bus.start(self._wake_here, asyncio.get_running_loop())
        except Exception as exc:  # warm_up said why the router could not be made; the store may be unreachable
            log.warning("fluxroute runs without its wake listener: %s", exc)
            bus = LocalWakeBus()
        self.wakes = bus
        try:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await self.adopt()
                except Exception as exc:  # the store is unreachable for now: the next sweep tries again
                    log.warning("fluxroute could not look for jobs left in flight: %s", exc)
        finally:
            self.wakes = LocalWakeBus()
            await asyncio.to_thread(bus.stop)

    async def adopt(self) -> list[str]:
        """Follow here the jobs no live process follows: submissions a stopped process cut off are settled first
        (the router's `recover_in_flight`), then every job with a provider job in flight and a free lease is
        adopted. Returns the adopted jobs' ids. With nothing to adopt it costs two store reads."""
        from fluxroute.store.leases import attempt_free

        router, library = await self._ready()
        store = router.store

        def pending() -> tuple[set[str], list[str]]:
            return {a.id for a in store.submitting_attempts() if attempt_free(a)}, router.in_flight_jobs()

        cut_off, in_flight = await asyncio.to_thread(pending)
        if cut_off - self._recovered:
            # one that cannot be told stays at risk, submitting, until a person settles it: it is looked up in
            # the provider's listing again only along with a newly cut-off one, not on every sweep
            self._recovered |= cut_off
            await router.recover_in_flight()
        elif not in_flight:
            return []
        adopted = library.jobs.resume_in_flight()
        if adopted:
            log.info("following %d job(s) a stopped replica left in flight", len(adopted))
        return adopted

    def _wake_here(self, provider: str, job_id: str) -> bool:
        """A wake from the bus (on the event loop): wake the waiter here that follows `provider`'s job `job_id`,
        if any (False: another replica follows it, or nobody does)."""
        from fluxroute.providers.base import Notifiable

        if self._made is None:
            return False
        # a provider this replica has not made follows nothing here (one that submitted a job is made)
        target = self._made[0].open_provider(provider)
        return isinstance(target, Notifiable) and target.notify(job_id)

    async def _ready(self) -> tuple[Router, ToolLibrary]:
        made = self._made if self._made is not None else await asyncio.to_thread(self._make)
        if not self._resumed:
            self._resumed = True
            try:
                adopted = made[1].jobs.resume_in_flight()
            except Exception as exc:  # the store cannot be read: the calls that need it say why, the others run
                log.warning("fluxroute could not look for jobs left in flight: %s", exc)
            else:
                if adopted:
                    log.info("following %d job(s) a previous process left in flight", len(adopted))
        return made

    def _make(self) -> tuple[Router, ToolLibrary]:
        with self._lock:  # calls that arrive while it is being made wait for it
            if self._made is None:
                from fluxroute.router import Router

                router = Router(self.settings, self.catalog, store=self._store)
                self._made = (router, _library(router))
            return self._made


def _library(router: Router) -> ToolLibrary:
    from fluxroute.tools.library import ToolLibrary

    return ToolLibrary(router)
