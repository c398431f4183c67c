"""Each completed job teaches its offer's latency; after LEARN_AFTER jobs the learned figure is the expectation."""

from __future__ import annotations

import math
from pathlib import Path

from fluxroute.router import Router
from fluxroute.router.execute import LEARN_AFTER
from fluxroute.settings import Settings
from fluxroute.store.jobstore import JobStore
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake


async def test_completed_jobs_teach_the_offer_latency_and_replace_the_catalog_figure(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.timings = dict.fromkeys(krea_fake.timings, 0.05)
    request = ImageRequest.parse({"prompt": "a lighthouse at dusk", "model": "flux-dev", "provider": "krea"})
    router = Router(hosted_settings)
    try:
        results = [await router.generate(request) for _ in range(LEARN_AFTER)]
        offer_id = results[0].offer_id
        stats = router.store.latency_stats(offer_id)
        assert stats is not None and stats.n == LEARN_AFTER
        candidate = router.plan(request).chosen
        assert candidate is not None
        # the fake's jobs take a fraction of a second; the planner says seconds: the learned ratio is well below 1
        assert math.exp(stats.log_ratio) < 0.5

        attempt = router.store.attempts_for(results[-1].job_id)[-1]
        expectation = router._executor()._expectation(candidate, attempt)
        assert expectation.spread is not None
        assert expectation.expected_s == candidate.latency_s * math.exp(stats.log_ratio)

        await router.generate(request)
        learned = router.store.latency_stats(offer_id)
        assert learned is not None and learned.n == LEARN_AFTER + 1
    finally:
        await router.aclose()


async def test_before_enough_jobs_the_catalog_figure_is_the_expectation(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    request = ImageRequest.parse({"prompt": "a lighthouse at dusk", "model": "flux-dev", "provider": "krea"})
    router = Router(hosted_settings)
    try:
        result = await router.generate(request)
        candidate = router.plan(request).chosen
        assert candidate is not None
        attempt = router.store.attempts_for(result.job_id)[-1]
        expectation = router._executor()._expectation(candidate, attempt)
        assert expectation.spread is None and expectation.expected_s == candidate.latency_s
    finally:
        await router.aclose()


def test_observations_fold_into_a_weighted_mean_and_deviation(tmp_path: Path) -> None:
    with JobStore.open(tmp_path) as store:
        assert store.latency_stats("krea-flux-1-dev") is None
        store.observe_latency("krea-flux-1-dev", 0.0)
        store.observe_latency("krea-flux-1-dev", 0.2)
        stats = store.latency_stats("krea-flux-1-dev")
        assert stats is not None
        assert stats.n == 2
        assert math.isclose(stats.log_ratio, 0.1)  # the first jobs average
        assert math.isclose(stats.abs_dev, 0.1)
        for _ in range(50):
            store.observe_latency("krea-flux-1-dev", 1.0)
        drifted = store.latency_stats("krea-flux-1-dev")
        assert drifted is not None and drifted.n == 52 and abs(drifted.log_ratio - 1.0) < 1e-3  # follows a drift
        assert store.latency_stats("another-offer") is None


def test_observations_survive_reopening_the_store(tmp_path: Path) -> None:
    with JobStore.open(tmp_path) as store:
        store.observe_latency("krea-flux-1-dev", -0.5)
    with JobStore.open(tmp_path) as store:
        assert store.latency_stats("krea-flux-1-dev") == (1, -0.5, 0.0)
