"""The Router facade: plan a request (and, with providers, run it) under one settings object."""

from __future__ import annotations

from fluxroute.catalog import Catalog, load_catalog
from fluxroute.providers.availability import check_availability
from fluxroute.providers.base import Availability
from fluxroute.router.planner import Planner
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest, Plan

__all__ = ["Router"]


class Router:
    """Plans image requests against the catalog; availability is checked once, at construction."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog | None = None,
        availability: dict[str, Availability] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog(settings)
        self.availability: dict[str, Availability] = (
            dict(check_availability(settings)) if availability is None else availability
        )
        self.planner = Planner(self.catalog, settings, self.availability)

    def plan(self, request: ImageRequest) -> Plan:
        return self.planner.plan(request)
