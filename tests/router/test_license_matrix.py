"""The license matrix: which local weights a request may run on, by declared usage, revenue and reach.

FLUX.1 [dev] / Krea [dev] weights: non-commercial unless the user holds their own license; FLUX.1 [schnell]:
Apache-2.0; Krea 2 open weights: commercial only below US$1M revenue (TTM), with content filtering mandatory
wherever end users can reach the deployment."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fluxroute.router import Router
from fluxroute.types import ImageRequest, Plan

from .conftest import make_router

NON_COMMERCIAL_WEIGHTS = ("local-flux-krea-dev", "local-flux-dev")
KREA_2_LOCAL = ("local-krea-2-raw", "local-krea-2-turbo")
DECLARE = "declare organization_revenue_usd_ttm (or revenue_under_1m = true)"
CHECKER = "some.module:check"


def plan(router: Router, **fields: Any) -> Plan:
    return router.plan(ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": "local", **fields}))


def usable(p: Plan) -> set[str]:
    return {c.offer_id for c in [*p.candidates, *p.unavailable]}


def reasons(p: Plan, offer_id: str) -> str:
    return "; ".join(next(r.reasons for r in p.rejections if r.offer_id == offer_id))


def test_commercial_with_nothing_declared_runs_only_schnell_locally(tmp_path: Path) -> None:
    router = make_router(tmp_path)
    p = plan(router, usage="commercial")
    assert usable(p) == set()  # model auto never picks schnell (catalog: asked for by name), and nothing else fits
    schnell = plan(router, usage="commercial", model="flux-schnell")
    assert usable(schnell) == {"local-flux-schnell"}
    assert schnell.chosen is not None and schnell.chosen.offer_id == "local-flux-schnell"
    assert schnell.chosen.license == "Apache-2.0"
    for offer_id in NON_COMMERCIAL_WEIGHTS:
        assert "FLUX.1 [dev] Non-Commercial License and usage=commercial" in reasons(p, offer_id)
        assert "local_commercial_license" in reasons(p, offer_id)


def test_commercial_with_revenue_undeclared_refuses_local_krea_2_naming_what_to_declare(tmp_path: Path) -> None:
    p = plan(make_router(tmp_path), usage="commercial", model="krea-2")
    assert p.chosen is None
    for offer_id in KREA_2_LOCAL:
        assert reasons(p, offer_id) == (
            f"Krea 2 Community License v1 allows commercial use only below US$1M revenue (TTM); {DECLARE}"
        )
    assert "rejected local krea-2-turbo: Krea 2 Community License v1 allows" in p.explanation


@pytest.mark.parametrize(
    "declared", [{"organization_revenue_usd_ttm": "250000"}, {"revenue_under_1m": True}], ids=["revenue", "flag"]
)
def test_commercial_below_one_million_allows_local_krea_2_with_the_review_duty(
    tmp_path: Path, declared: dict[str, Any]
) -> None:
    p = plan(make_router(tmp_path, **declared), usage="commercial", model="krea-2")
    assert usable(p) == set(KREA_2_LOCAL)
    assert p.chosen is not None and p.chosen.license == "Krea 2 Community License v1"
    # no content checker configured: the plan says the results are marked for manual review
    assert "license duty: Krea 2 Community License v1 asks for a content filter or manual review" in p.explanation
    assert "marked for manual review" in p.explanation
    # the FLUX.1 [dev] weights stay non-commercial whatever the revenue
    p = plan(make_router(tmp_path, **declared), usage="commercial")
    assert usable(p) == set(KREA_2_LOCAL)


def test_with_a_checker_the_duty_names_it(tmp_path: Path) -> None:
    router = make_router(tmp_path, revenue_under_1m=True, local_content_checker=CHECKER)
    p = plan(router, usage="commercial", model="krea-2")
    assert p.chosen is not None
    assert f"license duty: Krea 2 Community License v1: outputs screened by content checker {CHECKER}" in p.explanation


@pytest.mark.parametrize("revenue", ["1000000", "25000000"])
def test_revenue_of_one_million_or_more_refuses_local_krea_2_saying_so(tmp_path: Path, revenue: str) -> None:
    p = plan(make_router(tmp_path, organization_revenue_usd_ttm=revenue), usage="commercial", model="krea-2")
    assert p.chosen is None and not usable(p)
    shown = "US$1M" if revenue == "1000000" else "US$25M"
    assert reasons(p, "local-krea-2-turbo") == (
        "Krea 2 Community License v1 allows commercial use only below US$1M revenue (TTM); "
        f"declared organization_revenue_usd_ttm {shown} is not below it"
    )


def test_revenue_declared_not_under_one_million_refuses_local_krea_2(tmp_path: Path) -> None:
    p = plan(make_router(tmp_path, revenue_under_1m=False), usage="commercial", model="krea-2")
    assert p.chosen is None
    assert reasons(p, "local-krea-2-raw").endswith("declared revenue_under_1m = false")


def test_non_commercial_use_may_run_every_local_weight(tmp_path: Path) -> None:
    p = plan(make_router(tmp_path), usage="non-commercial")
    assert usable(p) == {*NON_COMMERCIAL_WEIGHTS, *KREA_2_LOCAL}
    # no license refusal; local Kontext is listed (model auto) and refused only for its mode
    local = [(r.offer_id, r.reasons) for r in p.rejections if r.provider == "local"]
    assert local == [("local-flux-kontext-dev", ["instruction-edit only; request is text-to-image"])]


def test_own_flux_dev_license_allows_flux_dev_weights_but_not_krea_2(tmp_path: Path) -> None:
    p = plan(make_router(tmp_path, local_commercial_license=True), usage="commercial")
    assert usable(p) == set(NON_COMMERCIAL_WEIGHTS)
    assert DECLARE in reasons(p, "local-krea-2-turbo")


@pytest.mark.parametrize("usage", ["commercial", "non-commercial"])
def test_reachable_by_others_without_a_checker_refuses_local_krea_2_whatever_the_usage(
    tmp_path: Path, usage: str
) -> None:
    router = make_router(tmp_path, remote_reachable=True, revenue_under_1m=True)
    p = plan(router, usage=usage, model="krea-2")
    assert p.chosen is None
    for offer_id in KREA_2_LOCAL:
        assert reasons(p, offer_id) == (
            "Krea 2 Community License v1 requires content filtering wherever end users can reach the deployment, "
            "and this server is reachable by others (serve --allow-remote); configure local_content_checker"
        )
    # FLUX.1 [dev]'s duty is a checker or manual review: a reachable server still runs it (marked for review)
    flux = plan(router, usage="non-commercial", model="flux-dev")
    assert flux.chosen is not None and flux.chosen.offer_id == "local-flux-dev"
    assert "marked for manual review" in flux.explanation


def test_reachable_by_others_with_a_checker_allows_local_krea_2(tmp_path: Path) -> None:
    router = make_router(tmp_path, remote_reachable=True, revenue_under_1m=True, local_content_checker=CHECKER)
    p = plan(router, usage="commercial", model="krea-2")
    assert usable(p) == set(KREA_2_LOCAL)


def test_hosted_krea_2_needs_no_declaration(tmp_path: Path) -> None:
    p = make_router(tmp_path).plan(ImageRequest(prompt="a fox", model="krea-2", usage="commercial"))
    assert p.chosen is not None and p.chosen.offer_id == "fal-krea-2-turbo"
    assert {"krea-2-medium", "krea-2-large"} <= usable(p)


def test_a_non_commercial_license_explains_itself_in_one_actionable_line(tmp_path: Path) -> None:
    from fluxroute.tools import ModelsOutput

    router = make_router(tmp_path)
    offers = {
        o.offer_id: o
        for m in ModelsOutput.from_catalog(router.catalog, router.availability, settings=router.settings).models
        for o in m.offers
    }
    assert offers["local-krea-2-turbo"].license == (
        "Krea 2 Community License v1 — commercial use below US$1M revenue; declare organization_revenue_usd_ttm; "
        "local_content_checker required when others can reach the server"
    )
    assert offers["local-flux-dev"].license.startswith(
        "FLUX.1 [dev] Non-Commercial License — non-commercial only; set local_commercial_license = true"
    )
    assert offers["local-flux-schnell"].license == "Apache-2.0 — commercial use allowed"
    assert offers["fal-krea-2-turbo"].license.endswith("— commercial use allowed")
    assert not offers["local-krea-2-turbo"].commercial_use and offers["local-flux-schnell"].commercial_use
    declared = make_router(tmp_path, organization_revenue_usd_ttm=Decimal("999999.99"))
    listing = ModelsOutput.from_catalog(declared.catalog, declared.availability, settings=declared.settings)
    turbo = next(o for m in listing.models for o in m.offers if o.offer_id == "local-krea-2-turbo")
    assert turbo.commercial_use


@pytest.mark.parametrize(("flags", "reachable"), [([], False), (["--allow-remote", "--insecure-no-auth"], True)])
def test_serve_http_allow_remote_marks_the_servers_settings_reachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: list[str], reachable: bool
) -> None:
    import fluxroute.server
    from fluxroute.cli import main

    built: list[Any] = []
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path))
    monkeypatch.setattr(fluxroute.server, "build_server", lambda settings, *a, **k: built.append(settings))
    monkeypatch.setattr(fluxroute.server, "serve_http", lambda *a, **k: None)
    assert main(["serve", "--http", *flags]) == 0
    (settings,) = built
    assert settings.remote_reachable is reachable
