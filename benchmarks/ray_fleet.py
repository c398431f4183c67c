"""A GPU fleet on Ray Serve: throughput of 1 against 2 worker replicas, side by side in one run, with the tiny
random-weight FLUX pipeline on the CPU, every job a fresh request through `Router.generate` (store, ledger, images
saved); then a plan for an H200 fleet.

Each configuration is deployed with `fluxroute.fleet.deploy` (what `fluxroute ray deploy` runs) on one local Ray
instance, warmed with one job per replica (the pipeline loads once per replica), then given `--jobs` generations at
once. Rows:
    local, in-process      the same jobs on the local provider in this process (one worker thread): the baseline
    fleet 1 x 1 CPU        one replica holding one CPU
    fleet 2 x 1 CPU        two replicas, one CPU each (data parallel: the fleet's way to scale)
    fleet 1 x 2 CPUs       one replica holding both CPUs (torch's threads instead of replicas)

The GPU plan turns seconds per image on one GPU into images per hour per GPU and for a fleet, adding the fleet's own
overhead per job measured here (fleet 1 x 1 CPU at one job at a time, minus the local provider's time for the same
jobs). Seconds per image come from `--gpu-json` (the output of benchmarks/local_gpu.py on an H200) when given, else
from the published anchors in the reference notes.

    .venv/bin/python benchmarks/ray_fleet.py [--jobs 24] [--size 256] [--steps 8] [--gpu-json local_gpu.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# seconds per 1024x1024 FLUX.1 [dev] image, 28 steps, on one GPU (capabilities-facts.md, "Scale-out"; local-facts.md)
PUBLISHED = {
    "H100, diffusers + torch.compile (xDiT docs)": 4.30,
    "H100, diffusers eager (xDiT docs)": 6.71,
    "H200, transformer FLOP floor at 790 TFLOP/s (benchmarks/local_gpu.py)": 2.64,
    "H200, fluxroute's configured-pipeline target (benchmarks/RESULTS.md)": 3.50,
}


def settings_for(weights: Path, home: Path, url: str | None = None) -> Any:
    from fluxroute.settings import Settings

    return Settings(
        home=home,
        local_model=weights,
        local_device="cpu",
        usage="non-commercial",
        ray_url=url,
        prices={"ray-flux-krea-dev": Decimal("0.001")},
        provider_timeout_s=600,
    )


async def run_jobs(router: Any, provider: str, jobs: int, size: int, steps: int, start: int, at_once: int) -> dict:
    """`jobs` fresh generations (each its own prompt and seed), `at_once` in flight; wall time and latencies."""
    from fluxroute.types import ImageRequest

    latencies: list[float] = []
    gate = asyncio.Semaphore(at_once)

    async def one(index: int) -> str | None:
        request = ImageRequest.parse(
            {
                "prompt": f"a lighthouse at dusk, study {start + index}",
                "provider": provider,
                "model": "flux-krea-dev",
                "width": size,
                "height": size,
                "steps": steps,
                "seed": start + index,
            }
        )
        async with gate:
            began = time.perf_counter()
            result = await router.generate(request)
            latencies.append(time.perf_counter() - began)
            return result.worker

    began = time.perf_counter()
    workers = await asyncio.gather(*(one(i) for i in range(jobs)))
    wall = time.perf_counter() - began
    return {
        "wall_s": wall,
        "images_per_min": 60 * jobs / wall,
        "p50_s": statistics.median(latencies),
        "max_s": max(latencies),
        "replicas_used": len({w for w in workers if w}),
    }


def deploy_fleet(weights: Path, replicas: int, cpus: float, port: int) -> str:
    import httpx
    from ray import serve

    from fluxroute.fleet import deploy
    from fluxroute.fleet.app import APP_NAME

    if APP_NAME in serve.status().applications:
        serve.delete(APP_NAME)
    url = deploy(
        settings_for(weights, Path(tempfile.mkdtemp())),
        replicas=replicas,
        gpus_per_replica=0,
        cpus_per_replica=cpus,
        host="127.0.0.1",
        port=port,
        route_prefix="/fluxroute",
        num_cpus=2,
    )
    deadline = time.monotonic() + 120
    while True:
        report = httpx.get(f"{url}/v1/fleet", timeout=5).json()
        fresh = [r for r in report["replicas"] if r["state"] != "silent" and r["since"] > 0]
        if len(report["replicas"]) >= replicas and len(fresh) >= replicas and report["weights"]:
            return url
        if time.monotonic() > deadline:
            raise SystemExit(f"the fleet never reported {replicas} replicas: {report}")
        time.sleep(0.5)


async def measure(args: argparse.Namespace, weights: Path) -> dict[str, Any]:
    from fluxroute.router import Router
    from tests.replicas.harness import free_port

    rows: dict[str, Any] = {}
    port = free_port()
    # the baseline: the local provider in this process (warm first)
    router = Router(settings_for(weights, Path(tempfile.mkdtemp())))
    await run_jobs(router, "local", 1, args.size, args.steps, 0, 1)
    rows["local, in-process (1 at a time)"] = await run_jobs(router, "local", 8, args.size, args.steps, 10_000, 1)
    rows["local, in-process"] = await run_jobs(router, "local", args.jobs, args.size, args.steps, 20_000, args.jobs)
    await router.aclose()
    configurations = (("fleet 1 x 1 CPU", 1, 1.0), ("fleet 2 x 1 CPU", 2, 1.0), ("fleet 1 x 2 CPUs", 1, 2.0))
    for label, replicas, cpus in configurations:
        url = deploy_fleet(weights, replicas, cpus, port)
        router = Router(settings_for(weights, Path(tempfile.mkdtemp()), url))
        # warm every replica: one job each at once (each loads its pipeline)
        await run_jobs(router, "ray", replicas, args.size, args.steps, 30_000, replicas)
        if replicas == 1 and cpus == 1.0:
            rows["fleet 1 x 1 CPU (1 at a time)"] = await run_jobs(router, "ray", 8, args.size, args.steps, 10_000, 1)
        rows[label] = await run_jobs(router, "ray", args.jobs, args.size, args.steps, 40_000, args.jobs)
        await router.aclose()
        print(f"{label}: {rows[label]}", flush=True)
    return rows


def gpu_plan(overhead_s: float, gpu_json: Path | None, gpus: int) -> list[dict[str, Any]]:
    sources = dict(PUBLISHED)
    if gpu_json is not None:
        data = json.loads(gpu_json.read_text(encoding="utf-8"))
        for variant in data.get("variants", []):
            sources[f"measured: {variant['variant']} ({data.get('machine', '?')})"] = float(variant["median_s"])
    plan = []
    for source, seconds in sources.items():
        per_gpu = 3600 / (seconds + overhead_s)
        plan.append({"source": source, "s_per_image": seconds, "per_gpu_per_h": per_gpu, "fleet_per_h": gpus * per_gpu})
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--gpu-json", type=Path, help="benchmarks/local_gpu.py --out file from an H200")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the planned fleet (default 8: one H200 node)")
    args = parser.parse_args()

    import ray

    from tests.fakes.tiny_flux import build_tiny_flux

    weights = build_tiny_flux(Path(tempfile.mkdtemp()))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = asyncio.run(measure(args, weights))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    base = rows["fleet 1 x 1 CPU"]["images_per_min"]
    print(f"\n{args.jobs} jobs of {args.size}x{args.size}, {args.steps} steps, all at once (tiny pipeline, CPU)\n")
    print("| configuration | images/min | x fleet 1 x 1 CPU | p50 s | max s | replicas used |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in rows.items():
        if "1 at a time" in label:
            continue
        print(
            f"| {label} | {row['images_per_min']:.1f} | {row['images_per_min'] / base:.2f} | {row['p50_s']:.2f} | "
            f"{row['max_s']:.2f} | {row['replicas_used'] or '-'} |"
        )
    overhead = rows["fleet 1 x 1 CPU (1 at a time)"]["p50_s"] - rows["local, in-process (1 at a time)"]["p50_s"]
    print(
        f"\nfleet overhead per job (one at a time, p50): {overhead * 1000:.0f} ms "
        f"(fleet {rows['fleet 1 x 1 CPU (1 at a time)']['p50_s']:.3f} s, "
        f"local {rows['local, in-process (1 at a time)']['p50_s']:.3f} s)\n"
    )
    print(f"GPU plan: 1024x1024, 28 steps, fleet overhead {max(overhead, 0) * 1000:.0f} ms per job added")
    print(f"| seconds per image from | s/image | images/h per GPU | images/h, {args.gpus} GPUs |")
    print("|---|---:|---:|---:|")
    for row in gpu_plan(max(overhead, 0.0), args.gpu_json, args.gpus):
        print(f"| {row['source']} | {row['s_per_image']:.2f} | {row['per_gpu_per_h']:.0f} | {row['fleet_per_h']:.0f} |")


if __name__ == "__main__":
    main()
