"""Validate + plan latency over a realistic request mix (sizes, aspect ratios, usages, budgets, pins), fresh
requests every call (each plan is computed, none served from the plan cache).

Run: python benchmarks/route_bench.py [--calls 20000]
Prints p50/p99 for validation alone, planning alone, and both together (the tool-call path). Plan latency with the
catalog grown to more offers is benchmarks/plan_scale.py, which reuses this module's request mix and catalog.
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from fluxroute.catalog import _builtin_data
from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import validate
from fluxroute.types import ImageRequest

PROMPTS = [
    "a lighthouse at dusk",
    "portrait of an elderly fisherman, weathered skin, soft window light, 85mm lens, shallow depth of field",
    "isometric cozy coffee shop interior, warm light, plants, wooden furniture",
    "product photo of a ceramic mug on a linen tablecloth, morning light",
    "a fox in fresh snow, telephoto, golden hour",
]


def request_mix(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        # a fresh prompt per call: no two requests alike, as real callers send them
        args: dict[str, Any] = {"prompt": f"{rng.choice(PROMPTS)}, variation {rng.randrange(10**9)}"}
        size = rng.random()
        if size < 0.35:
            ratio = rng.choice(["1:1", "16:9", "9:16", "4:3", "3:2", "2.35:1", "4:5"])
            args["size"] = ratio + (f"@{rng.choice([0.5, 1.0, 2.0])}MP" if rng.random() < 0.3 else "")
        elif size < 0.65:
            args["size"] = "{}x{}".format(*rng.choice([(1024, 1024), (1024, 768), (1920, 1080), (3000, 2000)]))
        elif size < 0.8:
            args["size"] = rng.choice(["square_hd", "landscape_16_9", "portrait_4_3"])
        if rng.random() < 0.4:
            args["model"] = rng.choice(["flux-krea-dev", "flux-dev", "krea-2"])
        if rng.random() < 0.3:
            args["usage"] = rng.choice(["commercial", "non-commercial"])
        if rng.random() < 0.2:
            args["max_cost_usd"] = rng.choice([0.01, 0.05, 0.1])
        if rng.random() < 0.15:
            args["provider"] = rng.choice(["krea", "fal", "local"])
        if rng.random() < 0.2:
            args["num_images"] = rng.randint(1, 4)
        if rng.random() < 0.2:
            args["steps"] = rng.randint(10, 50)
        if rng.random() < 0.1:
            args["prefer"] = "speed"
        out.append(args)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def grown_offers(count: int, repriced: bool = False) -> list[dict[str, Any]]:
    """`count` - (built-in offers) extra offers: copies of the built-in ones under new ids; `repriced`: each
    copy with an endpoint and a price of its own (the price raised by 0.1% per copy)."""
    builtin = _builtin_data()["offers"]
    extra = []
    for i in range(max(0, count - len(builtin))):
        offer = copy.deepcopy(builtin[i % len(builtin)])
        offer["id"] = f"{offer['id']}-copy{i}"
        if repriced and "usd" in offer["price"]:
            offer["endpoint"] = f"{offer['endpoint']}-{i}"
            offer["price"]["usd"] = str(Decimal(offer["price"]["usd"]) * (1 + Decimal(i + 1) / 1000))
        extra.append(offer)
    return extra


def router_with(offers: int, repriced: bool = False) -> Router:
    availability = {name: Availability(True) for name in ("krea", "fal", "local")}
    settings = Settings(home=Path("/nonexistent"), offers=grown_offers(offers, repriced))
    return Router(settings, availability=availability)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    router = router_with(0)
    mix = request_mix(args.calls)
    for item in mix[:500]:  # warm-up: imports, compiled validators
        router.plan(validate("plan_image_route", item).request())  # type: ignore[attr-defined]

    validate_us, plan_us, both_us = [], [], []
    clock = time.perf_counter_ns
    for item in mix:
        t0 = clock()
        request = validate("plan_image_route", item).request()  # type: ignore[attr-defined]
        t1 = clock()
        assert isinstance(request, ImageRequest)
        router.plan(request)
        t2 = clock()
        validate_us.append((t1 - t0) / 1000)
        plan_us.append((t2 - t1) / 1000)
        both_us.append((t2 - t0) / 1000)

    print(f"fluxroute route bench: {args.calls} calls, {platform.python_version()}, {platform.machine()}")
    print(f"{'stage':<18}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}")
    for name, values in (("validate", validate_us), ("plan", plan_us), ("validate+plan", both_us)):
        p50, p99, mean = percentile(values, 0.5), percentile(values, 0.99), statistics.fmean(values)
        print(f"{name:<18}{p50:>10.1f}{p99:>10.1f}{mean:>10.1f}")
    print(f"target: validate+plan p99 <= 200 us -> {'met' if percentile(both_us, 0.99) <= 200 else 'NOT met'}")


if __name__ == "__main__":
    main()
