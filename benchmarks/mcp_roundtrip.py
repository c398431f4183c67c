"""plan_image_route round trips over stdio: `fluxroute serve` against a bare one-tool MCPServer, side by side.

Both servers run as subprocesses started by the SDK's stdio client; calls alternate between them so
machine noise hits both alike, and every call has a new prompt (no plan is reused). Reports p50/p99 per call
and the ratio of medians (target <= 1.3).

    python benchmarks/mcp_roundtrip.py [--calls 500] [--era legacy|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent


def arguments(i: int) -> dict[str, object]:
    # a new prompt every call, so no call is answered from fluxroute's plan cache
    return {"prompt": f"a lighthouse at dusk, 35mm film, frame {i}", "aspect_ratio": "16:9"}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(calls: int, era: str) -> int:
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k not in ("FAL_KEY", "KREA_API_TOKEN")}
        env |= {"FLUXROUTE_HOME": home, "FLUXROUTE_CONFIG": "none"}
        fluxroute = StdioServerParameters(command=sys.executable, args=["-m", "fluxroute", "serve"], env=env)
        bare = StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_mcp_server.py")], env=env)
        async with Client(fluxroute, mode=era) as ours, Client(bare, mode=era) as baseline:  # type: ignore[arg-type]
            clients = {"fluxroute serve": ours, "bare MCPServer": baseline}
            timings: dict[str, list[float]] = {name: [] for name in clients}
            for client in clients.values():  # warm up: imports, first-call caches
                for i in range(20):
                    await client.call_tool("plan_image_route", arguments(-i))
            for i in range(calls):
                for name, client in clients.items():
                    start = time.perf_counter()
                    result = await client.call_tool("plan_image_route", arguments(i))
                    timings[name].append(time.perf_counter() - start)
                    assert not result.is_error
    print(
        f"plan_image_route over stdio, {calls} calls each, era={era}, {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    print("| server | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {quantile(values, 0.99) * 1e3:.2f} |")
    ratio = statistics.median(timings["fluxroute serve"]) / statistics.median(timings["bare MCPServer"])
    print(f"ratio of medians: {ratio:.2f} (target <= 1.3) -> {'met' if ratio <= 1.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--era", choices=["legacy", "auto"], default="legacy")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(options.calls, options.era)))
