"""Completion detection without webhooks: how long after a job ends fluxroute notices it, and at what cost in status
checks, for a naive 2 s poll, the catalog-estimate schedule, and the schedule around each offer's learned latency.

Part 1 (schedule, exact): jobs whose lengths are drawn per offer from a log-normal (a different median per offer,
clipped to 1-60 s; log-space sigma swept) are followed by the real schedule classes on a simulated clock (a check
answers at once), and every completed job teaches the offer's learned latency through the real store
(`JobStore.observe_latency` on a temporary SQLite file, the executor's LEARN_AFTER rule and `polling.learned`).
No time compression: the figures are in real seconds, and thousands of jobs run in seconds.

Part 2 (end to end, real HTTP, real time): the same comparison through `Router.generate` (the executor's hook:
learned expectation in, observation out), `KreaProvider.wait` with the catalog figure, and a naive httpx loop,
against the Krea fake on 127.0.0.1 (in this process), whose jobs last a log-normal draw each (median 6 s for
flux-dev, 15 s for krea-2). Jobs run in waves (learning happens between them). No time compression. Delay = from the
fake's `finished_at` to the first status check that arrived after it (the fake's request log, one monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluxroute.providers import polling
from fluxroute.providers.polling import NAIVE_INTERVAL_S, Expectation, PollSchedule, Schedule, schedule_for
from fluxroute.router.execute import LEARN_AFTER
from fluxroute.store.jobstore import JobStore

CATALOG_S = 7.34  # the planner's estimate for a 1 MP flux-dev job on Krea, used as every simulated offer's figure
MEDIANS_S = {"offer-a": 2.5, "offer-b": 6.0, "offer-c": 15.0, "offer-d": 40.0}
SIGMAS = (0.01, 0.02, 0.05, 0.10, 0.20)
TARGET_MS = 100.0


def draw(rng: random.Random, median_s: float, sigma: float) -> float:
    return min(max(rng.lognormvariate(math.log(median_s), sigma), 1.0), 60.0)


@dataclass
class Followed:
    delay_s: float
    checks: int


def follow(length_s: float, schedule: Schedule, expectation: Expectation) -> Followed:
    """A job ending at `length_s` followed as provider.wait does: a check at once, then one after each delay."""
    at, checks = 0.0, 1
    while at < length_s:
        expectation.running_s = at
        at += schedule.next_delay(at)
        expectation.seen_s = at
        checks += 1
    return Followed(at - length_s, checks)


def naive(length_s: float) -> Followed:
    checks = 1 + math.ceil(length_s / NAIVE_INTERVAL_S)
    return Followed((checks - 1) * NAIVE_INTERVAL_S - length_s, checks)


def simulate(sigma: float, jobs_per_offer: int, seed: int) -> dict[str, list[Followed]]:
    rng = random.Random(seed)
    out: dict[str, list[Followed]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="fluxroute-completion-") as tmp, JobStore.open(Path(tmp)) as store:
        for _ in range(jobs_per_offer):
            for offer, median in MEDIANS_S.items():
                length = draw(rng, median, sigma)
                out["naive 2 s poll"].append(naive(length))
                catalog = Expectation(CATALOG_S)
                out["catalog estimate"].append(follow(length, PollSchedule(expected_s=CATALOG_S), catalog))
                stats = store.latency_stats(offer)
                if stats is None or stats.n < LEARN_AFTER:
                    expectation = Expectation(CATALOG_S)
                else:
                    expectation = polling.learned(CATALOG_S, stats.log_ratio, stats.abs_dev, stats.n)
                followed = follow(length, schedule_for(expectation), expectation)
                out["learned (all jobs)"].append(followed)
                if expectation.spread is not None:
                    out["learned (after 3 jobs)"].append(followed)
                    assert followed.checks <= naive(length).checks, (length, expectation)
                finished = expectation.finished_s()
                if finished is not None:
                    store.observe_latency(offer, math.log(finished / CATALOG_S))
    return out


def summary(results: list[Followed]) -> tuple[float, float, float, float]:
    delays = sorted(r.delay_s * 1000 for r in results)
    p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
    return statistics.fmean(delays), p95, statistics.fmean(r.checks for r in results), max(r.checks for r in results)


def part1(jobs_per_offer: int) -> list[str]:
    lines = [
        f"Part 1: schedule on a simulated clock; offers' medians {', '.join(f'{m:g}' for m in MEDIANS_S.values())} s, "
        f"catalog figure {CATALOG_S:g} s, {jobs_per_offer} jobs per offer",
        f"{'sigma':>6}  {'mode':<24}{'mean ms':>9}{'p95 ms':>9}{'checks/job':>11}{'max':>5}{'naive/job':>10}",
    ]
    for sigma in SIGMAS:
        results = simulate(sigma, jobs_per_offer, seed=7)
        naive_mean = statistics.fmean(r.checks for r in results["naive 2 s poll"])
        for mode, followed in results.items():
            mean, p95, checks, most = summary(followed)
            verdict = "" if "learned" not in mode else ("  met" if mean <= TARGET_MS else "  NOT met")
            lines.append(
                f"{sigma:>6.2f}  {mode:<24}{mean:>9.0f}{p95:>9.0f}{checks:>11.2f}{most:>5}{naive_mean:>10.2f}{verdict}"
            )
    return lines


# --- part 2: end to end through Router.generate and the Krea fake ------------------------------------------------


def part2(sigma: float, waves: int, per_wave: int) -> list[str]:
    import httpx
    from pydantic import SecretStr

    from fluxroute.providers.base import Availability
    from fluxroute.providers.krea import KreaProvider
    from fluxroute.router import Router
    from fluxroute.settings import Settings
    from fluxroute.types import ImageRequest
    from tests.fakes.krea import KreaFake

    # each model's jobs last a log-normal draw around its own median (the fake reads `phases` at creation)
    medians = {"flux-dev": 6.0, "krea-2": 15.0}  # model -> median seconds of its Krea jobs
    models = {"flux-dev": "flux-dev", "krea-2": "krea-2"}
    rng = random.Random(3)

    class JitteredKrea(KreaFake):
        def create_job(self, **kwargs: Any) -> Any:
            phases = kwargs["phases"]
            length = draw(rng, medians["krea-2" if "krea-2" in str(kwargs["model"]) else "flux-dev"], sigma)
            kwargs["phases"] = [(status, length / len(phases)) for status, _ in phases]
            return super().create_job(**kwargs)

    fake = JitteredKrea(token="bench-krea-token").start()
    fake.image_scale = 1 / 16
    lines: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fluxroute-completion-") as tmp:
            settings = Settings(
                home=Path(tmp), krea_api_token=SecretStr("bench-krea-token"), krea_base_url=fake.base_url
            )
            availability = {"krea": Availability(True), "fal": Availability(False, "off"), "local": Availability(False)}
            finished: dict[str, list[tuple[str, str]]] = defaultdict(list)  # mode -> (model, job id)
            wave = 0

            async def run() -> None:
                router = Router(settings, availability=availability)
                provider = KreaProvider(settings)
                api = httpx.AsyncClient(base_url=fake.base_url, headers={"Authorization": "Bearer bench-krea-token"})

                def scaled_candidate(model: str) -> Any:
                    request = ImageRequest.parse({"prompt": "a lighthouse", "model": model, "provider": "krea"})
                    candidate = router.plan(request).chosen
                    assert candidate is not None
                    return request, candidate

                async def learned(model: str) -> None:
                    request, _ = scaled_candidate(model)
                    result = await router.generate(request)
                    attempt = router.store.attempts_for(result.job_id)[-1]
                    mode = "executor, wave 1" if wave == 0 else "executor, learned"
                    finished[mode].append((model, attempt.provider_job_id or ""))

                async def catalog(model: str) -> None:
                    _, candidate = scaled_candidate(model)
                    job_id = await provider.submit(candidate)
                    await provider.wait(job_id, candidate, None, 600)
                    finished["catalog estimate"].append((model, job_id))

                async def naive_poll(model: str) -> None:
                    _, candidate = scaled_candidate(model)
                    answer = await api.post(f"/generate/image/{candidate.endpoint}", json=dict(candidate.params))
                    job_id = answer.json()["job_id"]
                    while (await api.get(f"/jobs/{job_id}")).json()["status"] not in {"completed", "failed"}:
                        await asyncio.sleep(NAIVE_INTERVAL_S)
                    finished["naive 2 s poll"].append((model, job_id))

                nonlocal wave
                for wave in range(waves):  # noqa: B007 (read by learned())
                    await asyncio.gather(
                        *(
                            mode(model)
                            for model in models.values()
                            for mode in (learned, catalog, naive_poll)
                            for _ in range(per_wave)
                        )
                    )
                await api.aclose()
                await provider.aclose()
                await router.aclose()

            asyncio.run(run())
        polls: dict[str, list[float]] = defaultdict(list)
        for record in fake.request_log:
            if record.route == "get_job":
                polls[record.path.rsplit("/", 1)[-1]].append(record.at)
        lines.append(
            f"Part 2: Router.generate / KreaProvider.wait / naive loop against the Krea fake, sigma {sigma:g}, "
            f"real time, {waves} waves of {per_wave} jobs per model and mode; medians {medians} s"
        )
        lines.append(f"{'mode':<22}{'model':<10}{'n':>4}{'mean ms':>9}{'p95 ms':>9}{'checks/job':>11}{'naive/job':>10}")
        for mode, jobs in finished.items():
            for model in models.values():
                delays, checks, naive_checks = [], [], []
                for m, job_id in jobs:
                    if m != model:
                        continue
                    job = fake.job(job_id)
                    assert job.finished_at is not None
                    times = polls[job_id]
                    delays.append((min(t for t in times if t >= job.finished_at) - job.finished_at) * 1000)
                    checks.append(len(times))
                    naive_checks.append(1 + math.ceil((job.finished_at - job.created_at) / NAIVE_INTERVAL_S))
                delays.sort()
                lines.append(
                    f"{mode:<22}{model:<10}{len(delays):>4}{statistics.fmean(delays):>9.0f}"
                    f"{delays[int(0.95 * len(delays))]:>9.0f}{statistics.fmean(checks):>11.2f}"
                    f"{statistics.fmean(naive_checks):>10.2f}"
                )
    finally:
        fake.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="part 1: jobs per offer and sigma (default 500)")
    parser.add_argument("--sigma", type=float, default=0.02, help="part 2: log-space sigma of job lengths")
    parser.add_argument("--waves", type=int, default=6, help="part 2: waves (learning happens between them)")
    parser.add_argument("--per-wave", type=int, default=4, help="part 2: jobs per model and mode in a wave")
    parser.add_argument("--skip-e2e", action="store_true", help="part 1 only")
    args = parser.parse_args()
    started = time.monotonic()
    out = [f"completion detection: {platform.machine()}, {platform.python_version()}", "", *part1(args.jobs)]
    if not args.skip_e2e:
        out += ["", *part2(args.sigma, args.waves, args.per_wave)]
    out.append(f"total run time {time.monotonic() - started:.0f} s")
    print("\n".join(out))


if __name__ == "__main__":
    main()
