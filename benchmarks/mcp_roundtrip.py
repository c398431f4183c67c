"""plan_image_route round trips over stdio: `fluxroute serve` against a bare one-tool MCPServer, side by side.

Both servers run as subprocesses started by the SDK's stdio client; calls alternate between them so
machine noise hits both alike, and every call has a new prompt (no plan is reused). Reports p50/p99 per call
and the ratio of medians (target <= 1.3).

With --startup N, it times start-up instead: N rounds, each spawning `fluxroute serve` and the bare server
in turn (the order alternating per round), and timing from spawn to the answer of the first tools/list
(initialize included). Reports the median and p90 per server and the ratio of medians (target <= 1.1).

    python benchmarks/mcp_roundtrip.py [--calls 500] [--era legacy|auto]
    python benchmarks/mcp_roundtrip.py --startup 15
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


def servers(home: str) -> dict[str, StdioServerParameters]:
    env = {k: v for k, v in os.environ.items() if k not in ("FAL_KEY", "KREA_API_TOKEN")}
    env |= {"FLUXROUTE_HOME": home, "FLUXROUTE_CONFIG": "none"}
    return {
        "fluxroute serve": StdioServerParameters(command=sys.executable, args=["-m", "fluxroute", "serve"], env=env),
        "bare MCPServer": StdioServerParameters(
            command=sys.executable, args=[str(HERE / "bare_mcp_server.py")], env=env
        ),
    }


async def first_tools_list(server: StdioServerParameters, era: str) -> float:
    """Seconds from spawning `server` to the answer of its first tools/list (initialize included)."""
    start = time.perf_counter()
    async with Client(server, mode=era) as client:  # type: ignore[arg-type]
        tools = await client.list_tools()
        elapsed = time.perf_counter() - start
    assert tools.tools
    return elapsed


async def startup(rounds: int, era: str) -> int:
    with tempfile.TemporaryDirectory() as home:
        params = servers(home)
        names = list(params)
        for name in names:  # warm the OS file cache and the bytecode caches once, untimed
            await first_tools_list(params[name], era)
        timings: dict[str, list[float]] = {name: [] for name in names}
        for i in range(rounds):
            for name in names if i % 2 == 0 else reversed(names):
                timings[name].append(await first_tools_list(params[name], era))
    print(
        f"start-up to the first tools/list over stdio, {rounds} rounds each (interleaved), era={era}, "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print("| server | median ms | p90 ms | min ms |")
    print("|---|---|---|---|")
    for name, values in timings.items():
        print(
            f"| {name} | {statistics.median(values) * 1e3:.0f} | {quantile(values, 0.9) * 1e3:.0f} "
            f"| {min(values) * 1e3:.0f} |"
        )
    ratio = statistics.median(timings["fluxroute serve"]) / statistics.median(timings["bare MCPServer"])
    print(f"ratio of medians: {ratio:.2f} (target <= 1.1) -> {'met' if ratio <= 1.1 else 'NOT met'}")
    return 0


async def main(calls: int, era: str) -> int:
    with tempfile.TemporaryDirectory() as home:
        params = servers(home)
        fluxroute, bare = params["fluxroute serve"], params["bare MCPServer"]
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
    parser.add_argument("--startup", type=int, metavar="ROUNDS", help="time start-up to the first tools/list instead")
    options = parser.parse_args()
    if options.startup:
        sys.exit(asyncio.run(startup(options.startup, options.era)))
    sys.exit(asyncio.run(main(options.calls, options.era)))
