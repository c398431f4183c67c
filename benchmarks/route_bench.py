"""Validate + plan latency over a realistic request mix (sizes, aspect ratios, usages, budgets, pins).

Run: python benchmarks/route_bench.py [--calls 20000]
Prints p50/p99 for validation alone, planning alone, and both together (the tool-call path).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

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
        args: dict[str, Any] = {"prompt": rng.choice(PROMPTS)}
        size = rng.random()
        if size < 0.35:
            args["aspect_ratio"] = rng.choice(["1:1", "16:9", "9:16", "4:3", "3:2", "2.35:1", "4:5"])
            if rng.random() < 0.3:
                args["megapixels"] = rng.choice([0.5, 1.0, 2.0])
        elif size < 0.65:
            args["width"], args["height"] = rng.choice([(1024, 1024), (1024, 768), (1920, 1080), (3000, 2000)])
        elif size < 0.8:
            args["image_size"] = rng.choice(["square_hd", "landscape_16_9", "portrait_4_3"])
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    availability = {name: Availability(True) for name in ("krea", "fal", "local")}
    router = Router(Settings(home=Path("/nonexistent")), availability=availability)
    mix = request_mix(args.calls)
    for item in mix[:500]:  # warm-up: imports, compiled validators, caches
        router.plan(validate("plan_image_route", item))  # type: ignore[arg-type]

    validate_us, plan_us, both_us = [], [], []
    clock = time.perf_counter_ns
    for item in mix:
        t0 = clock()
        request = validate("plan_image_route", item)
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
