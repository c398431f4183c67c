"""The fleet's offers (FLUXROUTE_RAY_URL): each local offer again as `ray-<model>`, the same weights, so the same
modes, limits, license rules and content-filter duty; its price per GPU-second, settled at what the replica reports.
Planning only: the fleet's availability is given, as a router reads it from the fleet at start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fluxroute.catalog import load_catalog
from fluxroute.errors import ConfigError
from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.router.execute import billed_cost
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest, Plan

URL = "http://127.0.0.1:9/fluxroute"
FLEET_UP = {
    "krea": Availability(False, "no key"),
    "fal": Availability(False, "no key"),
    "local": Availability(False, "no GPU here"),
    "ray": Availability(True, "2 replicas"),
}


def fleet_router(home: Path, **settings: Any) -> Router:
    return Router(Settings(home=home, ray_url=URL, **settings), availability=dict(FLEET_UP))


def plan(router: Router, **fields: Any) -> Plan:
    return router.plan(ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": "ray", **fields}))


def reasons(p: Plan, offer_id: str) -> str:
    return "; ".join(next(r.reasons for r in p.rejections if r.offer_id == offer_id))


def test_without_a_fleet_there_are_no_fleet_offers_and_their_prices_wait_unused() -> None:
    catalog = load_catalog(Settings(prices={"ray-flux-schnell": Decimal("0.0006")}))
    assert not [o for o in catalog.offers if o.provider == "ray"]
    with pytest.raises(ConfigError) as unknown:
        load_catalog(Settings(prices={"ray-flux-nothing": Decimal("1")}))
    assert "prices.ray-flux-nothing: no such offer" in str(unknown.value) and "ray-flux-schnell" in str(unknown.value)


def test_every_local_offer_is_offered_on_the_fleet_with_the_same_limits_and_license() -> None:
    catalog = load_catalog(Settings(ray_url=URL, prices={"ray-flux-schnell": Decimal("0.0006")}))
    local = {o.id.removeprefix("local-"): o for o in catalog.offers if o.provider == "local"}
    fleet = {o.id.removeprefix("ray-"): o for o in catalog.offers if o.provider == "ray"}
    assert set(fleet) == set(local) and len(fleet) >= 7
    for name, offer in fleet.items():
        twin = local[name]
        assert offer.self_hosted and offer.label == f"ray {name}"
        assert (offer.model, offer.endpoint, offer.modes, offer.size, offer.license, offer.steps, offer.lora) == (
            twin.model,
            twin.endpoint,
            twin.modes,
            twin.size,
            twin.license,
            twin.steps,
            twin.lora,
        )
        assert offer.price.unit == "gpu_second"
    assert fleet["flux-schnell"].price.usd == Decimal("0.0006") and fleet["flux-dev"].price.usd == 0


def test_commercial_use_is_refused_on_the_fleets_non_commercial_weights_as_it_is_locally(tmp_path: Path) -> None:
    p = plan(fleet_router(tmp_path), usage="commercial", model="flux-krea-dev")
    assert p.chosen is None
    assert "FLUX.1 [dev] Non-Commercial License and usage=commercial" in reasons(p, "ray-flux-krea-dev")
    assert "set local_commercial_license = true" in reasons(p, "ray-flux-krea-dev")
    declared = plan(fleet_router(tmp_path, local_commercial_license=True), usage="commercial", model="flux-krea-dev")
    assert declared.chosen is not None and declared.chosen.offer_id == "ray-flux-krea-dev"


def test_krea_2_on_the_fleet_needs_the_revenue_declaration_and_a_checker_when_public(tmp_path: Path) -> None:
    p = plan(fleet_router(tmp_path), usage="commercial", model="krea-2")
    assert "declare organization_revenue_usd_ttm" in reasons(p, "ray-krea-2-turbo")
    small = fleet_router(tmp_path, revenue_under_1m=True)
    assert plan(small, usage="commercial", model="krea-2").chosen is not None
    public = fleet_router(tmp_path, revenue_under_1m=True, remote_reachable=True)
    assert "configure local_content_checker" in reasons(
        plan(public, usage="commercial", model="krea-2"), "ray-krea-2-turbo"
    )


def test_a_fleet_offer_carries_the_review_duty_and_is_unavailable_where_no_replica_holds_its_weights(
    tmp_path: Path,
) -> None:
    availability = {
        **FLEET_UP,
        "ray:black-forest-labs/FLUX.1-Krea-dev": Availability(True, "2 of 2 fleet replicas hold it"),
        "ray:black-forest-labs/FLUX.1-dev": Availability(False, "no replica of the fleet has FLUX.1-dev"),
    }
    router = Router(Settings(home=tmp_path, ray_url=URL), availability=availability)
    p = plan(router, usage="non-commercial", model="flux-krea-dev")
    assert p.chosen is not None and p.chosen.offer_id == "ray-flux-krea-dev"
    assert any("manual review" in line for line in p.explanation.splitlines())
    flux_dev = next(c for c in plan(router, usage="non-commercial", model="flux-dev").unavailable)
    assert (flux_dev.offer_id, flux_dev.unavailable_reason) == (
        "ray-flux-dev",
        "no replica of the fleet has FLUX.1-dev",
    )


def test_a_fleet_job_is_charged_the_gpu_seconds_its_replica_reported(tmp_path: Path) -> None:
    router = fleet_router(tmp_path, usage="non-commercial", prices={"ray-flux-krea-dev": Decimal("0.0004")})
    request = ImageRequest.parse({"prompt": "a fox", "provider": "ray", "model": "flux-krea-dev"})
    candidate = router.plan(request).chosen
    assert candidate is not None
    assert billed_cost(router.catalog, candidate, request, 1, compute_seconds=12.3456) == Decimal("0.004939")
    assert billed_cost(router.catalog, candidate, request, 1) == Decimal(str(candidate.cost_usd))  # no report: estimate
