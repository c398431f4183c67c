"""Plan latency as the catalog grows: 8 (built-in), 80 and 800 offers, a fresh request on every call.

Run: python benchmarks/plan_scale.py [--offers 8 80 800] [--calls 1000] [--baseline OLD_PLANNER.py] [--memory]
[--repriced] [--freeze]

The catalog is grown with copies of the built-in offers under new ids (route_bench.grown_offers; `--repriced`:
each copy with an endpoint and a price of its own, so that offers alike are priced one by one); requests are
route_bench's mix, each with its own prompt, so no plan comes from the cache. Per catalog size, p50/p99 in µs of:

- plan: `Planner.plan` alone (what it builds at once: ranked candidates; rejections, explanation and the request
  as JSON are built when first read);
- +tool: the plan and the plan_image_route result made from it (`PlanOutput.from_plan`: the first
  MAX_LISTED_REJECTIONS rejections and a shortened explanation), what a tool call pays after validation;
- +full: the plan with every deferred field built (read): all it held at once before they were deferred;
- router: `Router.plan`, the planner behind the plan cache (every call a miss: planned, kept, the oldest dropped).

GC pauses (gc.callbacks) are counted over the timed calls, by generation: how many, their total and the longest;
`--freeze` moves what exists after setup (imports, catalog, warm-up) out of later collections first, as
`fluxroute serve` does after start-up.
`--baseline` times another planner module (say the previous one: `git show HEAD:fluxroute/router/planner.py >
/tmp/old_planner.py`) on the same requests, interleaved call by call with the current one, and prints the ratios
of its times to plan's and to +full's.
`--memory` prints the bytes a plan holds (tracemalloc), as planned and once built in full, beside
planner.plan_bytes, the estimate the plan cache counts.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

from route_bench import percentile, request_mix, router_with  # benchmarks/ is on the path of a script run here

from fluxroute.router import Router
from fluxroute.router.planner import plan_bytes
from fluxroute.tools import PlanOutput, validate
from fluxroute.types import ImageRequest

WARM_UP = 50
STAGES = ("plan", "+tool", "+full", "router")


class GcPauses:
    """Every collection's duration while a stage is named, by stage and generation."""

    def __init__(self) -> None:
        self.pauses: dict[tuple[str, int], list[float]] = {}
        self.stage: str | None = None
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if self.stage is None:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            spent = (time.perf_counter() - self._started) * 1000
            self.pauses.setdefault((self.stage, info["generation"]), []).append(spent)

    def line(self, stage: str) -> str:
        parts = []
        for generation in (0, 1, 2):
            values = self.pauses.get((stage, generation), [])
            if values:
                parts.append(f"gen{generation} {len(values)}x {sum(values):.1f} ms (max {max(values):.2f})")
        return ", ".join(parts) or "none"


def load_planner(path: Path) -> ModuleType:
    """A planner module from a file (an earlier version), imported under its own name."""
    spec = importlib.util.spec_from_file_location("baseline_planner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fresh_requests(offers: int, calls: int) -> list[ImageRequest]:
    return [validate("plan_image_route", item).request() for item in request_mix(calls + WARM_UP, seed=offers)]  # type: ignore[attr-defined]


def measure(offers: int, calls: int, baseline: ModuleType | None, repriced: bool = False, freeze: bool = False) -> None:
    router = router_with(offers, repriced)
    planner = router.planner
    old = None if baseline is None else baseline.Planner(router.catalog, router.settings, router.availability)
    cached = Router(router.settings, catalog=router.catalog, availability=router.availability)
    requests = fresh_requests(offers, calls)
    for request in requests[:WARM_UP]:
        PlanOutput.from_plan(planner.plan(request)).model_dump()
        assert planner.plan(request).explanation
        cached.plan(request)
        if old is not None:
            old.plan(request)
    names = (*STAGES, "baseline") if old is not None else STAGES
    stages: dict[str, list[float]] = {name: [] for name in names}
    if freeze:  # as `fluxroute serve` does after start-up: what exists now is left out of later collections
        gc.collect()
        gc.freeze()
    now = time.perf_counter_ns
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    try:
        for n, request in enumerate(requests[WARM_UP:]):
            if old is not None and n % 2:  # the baseline first on every other call
                pauses.stage, start = "baseline", now()
                old.plan(request)
                stages["baseline"].append((now() - start) / 1000)
            pauses.stage, start = "plan", now()
            plan = planner.plan(request)
            planned = now()
            pauses.stage = "+tool"
            PlanOutput.from_plan(plan)
            stages["plan"].append((planned - start) / 1000)
            stages["+tool"].append((now() - start) / 1000)
            pauses.stage, start = "+full", now()
            assert planner.plan(request).explanation  # builds every deferred field
            stages["+full"].append((now() - start) / 1000)
            pauses.stage, start = "router", now()
            cached.plan(request)
            stages["router"].append((now() - start) / 1000)
            if old is not None and not n % 2:
                pauses.stage, start = "baseline", now()
                old.plan(request)
                stages["baseline"].append((now() - start) / 1000)
            pauses.stage = None
    finally:
        gc.callbacks.remove(pauses)
        gc.unfreeze()
    row = [f"{len(router.catalog.offers):>7}"]
    for name in names:
        values = stages[name]
        row.append(f"{percentile(values, 0.5):>14.1f}{percentile(values, 0.99):>9.1f}")
    if old is not None:
        for name in ("plan", "+full"):  # the baseline's time over this planner's
            p50 = percentile(stages["baseline"], 0.5) / percentile(stages[name], 0.5)
            p99 = percentile(stages["baseline"], 0.99) / percentile(stages[name], 0.99)
            row.append(f"{p50:>14.2f}x{p99:>7.2f}x")
    print("".join(row))
    alike, kinds = len(set(planner._alike)), len(set(planner._kind))
    print(f"{'':>9}offers alike but for id and label: {alike} groups; alike but for price and endpoint: {kinds}")
    print(f"{'':>9}plans kept by the router: {len(cached._plans)}; GC pauses during each stage:")
    for name in names:
        print(f"{'':>9}{name:<9}{pauses.line(name)}")


def memory(offers: int) -> None:
    router = router_with(offers)
    requests = fresh_requests(offers, 100)
    for request in requests[:WARM_UP]:
        router.planner.plan(request).model_dump()
    sample = requests[WARM_UP:]
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        plans = [router.planner.plan(request) for request in sample]
        planned = tracemalloc.get_traced_memory()[0] - start
        for plan in plans:
            plan.model_dump()
        built = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    estimate = sum(plan_bytes(plan, request) for plan, request in zip(plans, sample, strict=True))
    count = len(plans)
    print(f"{len(router.catalog.offers):>7}{planned // count:>12}{built // count:>12}{estimate // count:>12}")


def run(
    sizes: list[int], calls: int, baseline: ModuleType | None = None, repriced: bool = False, freeze: bool = False
) -> None:
    """The latency table, a row and its GC pauses per catalog size."""
    python = f"{platform.python_version()}, {platform.machine()}"
    catalog = "copies with prices of their own" if repriced else "copies"
    frozen = ", start-up objects frozen (gc.freeze)" if freeze else ""
    print(f"fluxroute plan scale: {calls} fresh requests per size, catalog grown with {catalog}{frozen}, {python}")
    names = (*STAGES, "baseline") if baseline is not None else STAGES
    header = "".join(f"{name + ' p50':>14}{'p99':>9}" for name in names)
    ratios = f"{'old/plan p50':>15}{'p99':>8}{'old/+full p50':>15}{'p99':>8}" if baseline else ""
    print(f"{'offers':>7}{header}{ratios}  (µs)")
    for offers in sizes:
        measure(offers, calls, baseline, repriced, freeze)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offers", type=int, nargs="+", default=[8, 80, 800])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="another planner.py, timed interleaved with this one")
    parser.add_argument("--memory", action="store_true", help="bytes per plan, and the plan cache's estimate")
    parser.add_argument("--repriced", action="store_true", help="each copy with an endpoint and a price of its own")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after setup, as `fluxroute serve` does")
    args = parser.parse_args()
    baseline = None if args.baseline is None else load_planner(args.baseline)
    run(args.offers, args.calls, baseline, args.repriced, args.freeze)
    if args.memory:
        print(f"{'offers':>7}{'planned B':>12}{'built B':>12}{'estimate B':>12}  (bytes per plan)")
        for offers in args.offers:
            memory(offers)


if __name__ == "__main__":
    main()
