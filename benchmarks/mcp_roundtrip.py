"""plan_image_route round trips over stdio: `fluxroute serve` against a bare one-tool MCPServer, side by side.

Both servers run as subprocesses started by the SDK's stdio client; calls alternate between them so
machine noise hits both alike, and every call has a new prompt (no plan is reused). Reports p50/p99 per call
and the ratio of medians (target <= 1.2).

With --startup N, it times start-up instead: N rounds, each spawning `fluxroute serve` and the bare server
in turn (the order rotating per round), and timing from spawn to the answer of the first tools/list
(initialize included), then the first tools/call (plan_image_route: the bare server echoes, fluxroute plans),
sent right after the answer or --pause seconds later, as a client that waits for its model would. Reports the
median and p90 per server and the ratio of medians (target <= 1.1).

--tree DIR (repeatable) adds `fluxroute serve` run from another copy of the source (PYTHONPATH=DIR, e.g. the
committed tree from `git archive HEAD | tar -x -C DIR`), timed in the same rounds: before and after side by side.

    python benchmarks/mcp_roundtrip.py [--calls 500] [--era legacy|auto] [--tree DIR]
    python benchmarks/mcp_roundtrip.py --startup 15 [--tree DIR] [--pause 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
OURS = "fluxroute serve"
BARE = "bare MCPServer"
STARTUP_TARGET = 1.1
ROUNDTRIP_TARGET = 1.2


def arguments(i: int) -> dict[str, object]:
    # a new prompt every call, so no call is answered from fluxroute's plan cache
    return {"prompt": f"a lighthouse at dusk, 35mm film, frame {i}", "aspect_ratio": "16:9"}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def servers(home: str, trees: list[Path]) -> dict[str, StdioServerParameters]:
    """`fluxroute serve` from this checkout and from each of `trees` (each with a home of its own under `home`:
    trees may differ in their store's schema), and the bare server."""
    env = {k: v for k, v in os.environ.items() if k not in ("FAL_KEY", "KREA_API_TOKEN", "PYTHONPATH")}
    env |= {"FLUXROUTE_HOME": str(Path(home) / "0"), "FLUXROUTE_CONFIG": "none"}
    serve = ["-m", "fluxroute", "serve"]
    found = {OURS: StdioServerParameters(command=sys.executable, args=serve, env=env, cwd=HERE.parent)}
    for i, tree in enumerate(trees, 1):
        found[f"{OURS} ({tree})"] = StdioServerParameters(
            command=sys.executable,
            args=serve,
            env=env | {"PYTHONPATH": str(tree), "FLUXROUTE_HOME": str(Path(home) / str(i))},
            cwd=tree,
        )
    found[BARE] = StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_mcp_server.py")], env=env)
    return found


async def first_calls(server: StdioServerParameters, era: str, i: int, pause: float) -> tuple[float, float]:
    """Seconds from spawning `server` to the answer of its first tools/list (initialize included), and of its
    first tools/call, sent `pause` seconds after that answer."""
    start = time.perf_counter()
    async with Client(server, mode=era) as client:  # type: ignore[arg-type]
        tools = await client.list_tools()
        listed = time.perf_counter()
        await asyncio.sleep(pause)
        sent = time.perf_counter()
        result = await client.call_tool("plan_image_route", arguments(i))
        called = time.perf_counter()
    assert tools.tools and not result.is_error, result.content
    return listed - start, called - sent


def ratios(timings: dict[str, list[float]], target: float) -> None:
    for name, values in timings.items():
        if name != BARE:
            ratio = statistics.median(values) / statistics.median(timings[BARE])
            verdict = "met" if ratio <= target else "NOT met"
            print(f"ratio of medians, {name} / {BARE}: {ratio:.2f} (target <= {target}) -> {verdict}")


async def startup(rounds: int, era: str, trees: list[Path], pause: float) -> int:
    with tempfile.TemporaryDirectory() as home:
        params = servers(home, trees)
        names = list(params)
        for name in names:  # warm the OS file cache and the bytecode caches once, untimed
            await first_calls(params[name], era, -1, pause)
        listed: dict[str, list[float]] = {name: [] for name in names}
        called: dict[str, list[float]] = {name: [] for name in names}
        for i in range(rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:  # each takes each place in turn
                to_list, to_call = await first_calls(params[name], era, i, pause)
                listed[name].append(to_list)
                called[name].append(to_call)
    print(
        f"start-up to the first tools/list over stdio, {rounds} rounds each (interleaved), era={era}, "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"| server | median ms | p90 ms | min ms | first tools/call {pause:g} s later, median ms |")
    print("|---|---|---|---|---|")
    for name, values in listed.items():
        print(
            f"| {name} | {statistics.median(values) * 1e3:.0f} | {quantile(values, 0.9) * 1e3:.0f} "
            f"| {min(values) * 1e3:.0f} | {statistics.median(called[name]) * 1e3:.0f} |"
        )
    ratios(listed, STARTUP_TARGET)
    return 0


async def main(calls: int, era: str, trees: list[Path]) -> int:
    with tempfile.TemporaryDirectory() as home:
        params = servers(home, trees)
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(Client(server, mode=era))  # type: ignore[arg-type]
                for name, server in params.items()
            }
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
    ratios(timings, ROUNDTRIP_TARGET)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--era", choices=["legacy", "auto"], default="legacy")
    parser.add_argument("--startup", type=int, metavar="ROUNDS", help="time start-up to the first tools/list instead")
    parser.add_argument(
        "--tree", type=Path, action="append", default=[], help="also run `fluxroute serve` from this source tree"
    )
    parser.add_argument("--pause", type=float, default=0.0, help="with --startup: seconds between tools/list and call")
    options = parser.parse_args()
    trees = [tree.resolve() for tree in options.tree]
    if options.startup:
        sys.exit(asyncio.run(startup(options.startup, options.era, trees, options.pause)))
    sys.exit(asyncio.run(main(options.calls, options.era, trees)))
