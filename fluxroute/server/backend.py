"""What the server's tools, resources, completions and webhooks run on: the router and the tool library over it,
made once, in a worker thread.

Answering `initialize` and `tools/list` needs neither (the tools are listed from the specs' saved export, see
server/tools.py). Importing the router, its providers, the store and the validator takes longer than the whole
handshake, so a server that makes its own router starts making it once it runs (`warm_up`), while it answers;
a call that comes sooner waits for that same router. Nothing is made twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from fluxroute.catalog import load_catalog

if TYPE_CHECKING:
    from fluxroute.router import Router
    from fluxroute.settings import Settings
    from fluxroute.store import Store
    from fluxroute.tools import ToolLibrary

log = logging.getLogger(__name__)


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
