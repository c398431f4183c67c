"""Peer comparison: fluxroute vs LiteLLM on the same loopback fal fake, each against its own direct client.

Run: python benchmarks/peer_litellm.py [--calls-1 20] [--calls-16 128] [--calls-64 512] [--rounds 2]
                                       [--sizes 64x64,1MP] [--profile out.pstats]

The fal fake (tests/fakes/fal.py) runs in its own process: fal's queue host and its fal.run host on two loopback
ports, 90 ms jobs (30 ms IN_QUEUE + 60 ms IN_PROGRESS: the finish falls mid-way between the catalog schedule's
2nd and 3rd status checks, ~50 and ~130 ms after submission; with the fake's default 60 ms a few ms of jitter flip
a call between ~60 and ~140 ms, and the queue paths' percentiles with it). Images: the fake's 64x64 PNG (1024x1024
logical, image_scale 1/16) and a 1 MP PNG of ~1.4 MB (1024x1024, the fake's gradient with film grain, as in
gateway_overhead.py --use). Every call sends a prompt no earlier call sent.

LiteLLM 1.110.2 is not a fluxroute dependency: this script creates benchmarks/.peer-venv (python -m venv, then
pip install litellm==1.110.2 httpx) when it is missing or holds another version, and runs the LiteLLM side there
as a subprocess (peer_litellm_worker.py) that stays alive and runs one block per command, so the rounds interleave.

Paths (each round runs every path's block in turn, the order rotating from round to round):
  litellm             litellm.aimage_generation(model="fal_ai/fal-ai/flux/dev", api_base=<fake's fal.run host>):
                      LiteLLM's fal_ai image generation makes one synchronous POST {api_base}/fal-ai/flux/dev and
                      returns the image URLs; it downloads nothing (worker process, peer venv)
  litellm direct      the same POST with plain httpx, image URLs taken from the JSON (worker process, peer venv)
  fluxroute           Router.generate with only fal available, on the fake's queue host (fal_base_url), a temporary
                      home, FLUXROUTE_CONFIG=none: plan, SQLite records, submit, status polls, GET the result,
                      download, decode check, write the file; its per-offer learned latency on, as shipped
  fluxroute direct    plain httpx doing fluxroute's queue requests: POST the same parameters, GET …/status?logs=true
                      on fluxroute's catalog PollSchedule (a check at once, then 50 ms growing 1.6x), GET
                      response_url, GET the image, write it to a file
  fluxroute unlearned Router.generate as above, with a home of its own and the learned latency kept off
                      (execute.LEARN_AFTER raised for its blocks): fluxroute's own work on the catalog schedule the
                      direct client polls on, separating its per-call cost from its polling policy (diagnostic)
overhead = path - its own direct client at the same percentile (c=1); throughput = calls/s relative to its own
direct client's (c=16, c=64). --profile FILE: afterwards, stage timers over the fluxroute path and cProfile over the
unlearned one (1 MP), top functions printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import itertools
import json
import multiprocessing
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the fakes live in tests/, not in the package
sys.path.insert(0, str(HERE))  # the helpers shared with gateway_overhead.py

import gateway_overhead as gw  # noqa: E402

from fluxroute.providers import downloads  # noqa: E402
from fluxroute.providers.base import Availability  # noqa: E402
from fluxroute.providers.fal import FalProvider  # noqa: E402
from fluxroute.providers.polling import Pace, PollSchedule  # noqa: E402
from fluxroute.router import Router  # noqa: E402
from fluxroute.router import execute as execute_module  # noqa: E402
from fluxroute.settings import Settings  # noqa: E402
from fluxroute.store import images as images_module  # noqa: E402
from fluxroute.store.jobstore import JobStore  # noqa: E402
from fluxroute.types import ImageRequest  # noqa: E402
from tests.fakes import images as fake_images  # noqa: E402
from tests.fakes.fal import FalFake  # noqa: E402

LITELLM_VERSION = "1.110.2"
PEER_VENV = HERE / ".peer-venv"
WORKER = HERE / "peer_litellm_worker.py"
KEY = "bench-fal-key:secret"
ENDPOINT = "fal-ai/flux/dev"
REQUEST = {"prompt": "a lighthouse at dusk", "model": "flux-dev", "provider": "fal", "width": 1024, "height": 1024}
SIZES = {"64x64": 1 / 16, "1MP": 1.0}
TIMINGS = {"IN_QUEUE": 0.03, "IN_PROGRESS": 0.06}
PATHS = ("litellm", "litellm direct", "fluxroute", "fluxroute direct", "fluxroute unlearned")
DIRECT_OF = {"litellm": "litellm direct", "fluxroute": "fluxroute direct", "fluxroute unlearned": "fluxroute direct"}
WORKER_PATH = {"litellm": "litellm", "litellm direct": "direct"}
NEVER = 10**9


# --- the peer venv ----------------------------------------------------------------------------------------------------


def peer_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_peer_venv(venv: Path) -> Path:
    """benchmarks/.peer-venv with litellm==LITELLM_VERSION (and httpx), created or repaired when it is not so."""
    python = peer_python(venv)
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'), m.version('httpx'))"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split()[0] == LITELLM_VERSION:
            return python
    print(f"setting up {venv} (litellm=={LITELLM_VERSION}) ...", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"litellm=={LITELLM_VERSION}", "httpx"], check=True)
    subprocess.run(check, check=True, capture_output=True)
    return python


class Worker:
    """The LiteLLM worker process: one block per command, answered with its latencies and its own CPU time."""

    def __init__(self, python: Path, run_url: str, log: Path) -> None:
        self._log = log
        with log.open("w") as err:
            self._proc = subprocess.Popen(
                [str(python), str(WORKER), "--run-url", run_url, "--key", KEY],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        hello = self._read()
        self.version = hello["litellm"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the LiteLLM worker stopped:\n{self._log.read_text()[-3000:]}")
        return dict(json.loads(line))

    def _send(self, command: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()

    async def block(self, path: str, calls: int, concurrency: int, tag: str) -> dict[str, Any]:
        self._send({"op": "block", "path": path, "calls": calls, "concurrency": concurrency, "tag": tag})
        return await asyncio.to_thread(self._read)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send({"op": "quit"})
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


# --- the fal fake in its own process ---------------------------------------------------------------------------------

_fake_render = fake_images.render


def bench_render(spec: fake_images.ImageSpec, scale: float = 1.0) -> bytes:
    """The fake's own gradient when scaled down (64x64); at full size, gateway_overhead's photo-like 1 MP PNG."""
    return gw.photo_render(spec, scale) if scale >= 1.0 else _fake_render(spec, scale)


def fake_command(fake: FalFake, state: dict[str, float], command: str, *args: Any) -> Any:
    if command == "scale":
        state["scale"] = args[0]
        command = "fresh"
    if command == "fresh":  # forget old jobs: the fake scans every job it knows on each request
        fake.reset()
        fake.image_scale = state["scale"]
        fake.timings = dict(TIMINGS)
        return None
    if command == "counts":
        return dict(fake.request_counts)
    raise ValueError(command)


def serve_fake(conn: Connection) -> None:
    """Child process: run the fal fake, answer commands until "stop"."""
    fake_images.render = bench_render  # type: ignore[assignment]
    state = {"scale": 1 / 16}
    with FalFake(key=KEY) as fake:
        fake_command(fake, state, "fresh")
        conn.send((fake.base_url, fake.run_url))
        while True:
            command, *args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            conn.send(fake_command(fake, state, command, *args))


class FakeHandle:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve_fake, args=(child,), daemon=True)
        self._process.start()
        self.base_url, self.run_url = self._conn.recv()

    def call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, *args))
        return self._conn.recv()

    def stop(self) -> None:
        self.call("stop")
        self._process.join(5)


# --- fluxroute's side -------------------------------------------------------------------------------------------------


def fal_only() -> dict[str, Availability]:
    return {"krea": Availability(False, "off"), "fal": Availability(True), "local": Availability(False, "off")}


def router_for(fake: FakeHandle, home: Path) -> Router:
    settings = Settings(home=home, fal_key=SecretStr(KEY), fal_base_url=fake.base_url, provider_timeout_s=120)
    return Router(settings, availability=fal_only())


@contextlib.contextmanager
def learning_off() -> Iterator[None]:
    """The executor follows every job on the catalog's estimate, whatever the store learned."""
    assert hasattr(execute_module, "LEARN_AFTER"), "fluxroute.router.execute.LEARN_AFTER is gone: update this script"
    saved = execute_module.LEARN_AFTER
    execute_module.LEARN_AFTER = NEVER
    try:
        yield
    finally:
        execute_module.LEARN_AFTER = saved


class QueueDirect:
    """fluxroute's fal requests by hand: the queue client with the key, the image client without (as FalProvider
    has), POST once, status with logs on the catalog PollSchedule, GET response_url, GET the image, write it."""

    def __init__(self, queue_url: str, expected_s: float, out: Path) -> None:
        self.queue = queue_url.rstrip("/")
        self.api = httpx.AsyncClient(headers={"Authorization": f"Key {KEY}"}, timeout=httpx.Timeout(120.0, connect=5.0))
        self.cdn = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        self.expected_s = expected_s
        self.out = out
        out.mkdir(parents=True, exist_ok=True)

    async def generate(self, params: dict[str, object], name: str) -> None:
        response = await self.api.post(f"{self.queue}/{ENDPOINT}", json=params)  # never repeated: it may bill
        response.raise_for_status()
        request_id = response.json()["request_id"]
        owner, app = ENDPOINT.split("/")[:2]
        response_url = f"{self.queue}/{owner}/{app}/requests/{request_id}"
        schedule, started = PollSchedule(expected_s=self.expected_s), time.monotonic()
        while True:
            status = (await self._get(self.api, response_url + "/status", {"logs": "true"})).json()
            if status["status"] == "COMPLETED":
                break
            await asyncio.sleep(schedule.next_delay(time.monotonic() - started))
        if status.get("error"):
            raise RuntimeError(f"request {request_id} failed: {status['error']}")
        output = (await self._get(self.api, response_url)).json()
        data = (await self._get(self.cdn, output["images"][0]["url"])).content
        (self.out / f"{name}.png").write_bytes(data)

    @staticmethod
    async def _get(client: httpx.AsyncClient, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """A GET is retried once on a transport error (a keep-alive connection the server just closed), as
        fluxroute retries its GETs; otherwise such a race would count against the direct client alone."""
        for attempt in (1, 2):
            try:
                return (await client.get(url, params=params)).raise_for_status()
            except httpx.TransportError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.cdn.aclose()


class Paths:
    """The five paths; the two LiteLLM ones run in the worker, the rest here."""

    def __init__(self, fake: FakeHandle, worker: Worker, home: Path) -> None:
        self.fake = fake
        self.worker = worker
        self.router = router_for(fake, home / "fluxroute")
        self.unlearned = router_for(fake, home / "fluxroute-unlearned")
        candidate = self.router.plan(ImageRequest.parse(REQUEST)).chosen
        assert candidate is not None and candidate.offer_id == "fal-flux-dev", candidate
        self.params = dict(candidate.params)
        self.direct = QueueDirect(fake.base_url, candidate.latency_s, home / "direct")
        self.counter = itertools.count()

    def prompt(self) -> tuple[int, str]:
        n = next(self.counter)
        return n, f"{REQUEST['prompt']}, take {n}"

    async def fluxroute(self) -> None:
        await self.router.generate(ImageRequest.parse(REQUEST | {"prompt": self.prompt()[1]}))

    async def fluxroute_unlearned(self) -> None:
        await self.unlearned.generate(ImageRequest.parse(REQUEST | {"prompt": self.prompt()[1]}))

    async def fluxroute_direct(self) -> None:
        n, prompt = self.prompt()
        await self.direct.generate(self.params | {"prompt": prompt}, str(n))

    async def block(self, name: str, calls: int, concurrency: int, out: gw.Block) -> None:
        if name in WORKER_PATH:
            tag = f"b{next(self.counter)}"
            answer = await self.worker.block(WORKER_PATH[name], calls, concurrency, tag)
            out.latencies_ms += answer["latencies_ms"]
            if answer["latencies_ms"]:
                out.block_p50s.append(gw.percentile(answer["latencies_ms"], 0.5))
            out.calls += calls
            out.wall_s += answer["wall_s"]
            out.cpu_s += answer["cpu_s"]
            out.errors += answer["errors"]
            return
        calls_of: dict[str, Callable[[], Awaitable[None]]] = {
            "fluxroute": self.fluxroute,
            "fluxroute direct": self.fluxroute_direct,
            "fluxroute unlearned": self.fluxroute_unlearned,
        }
        with learning_off() if name == "fluxroute unlearned" else contextlib.nullcontext():
            await gw.run_block(calls_of[name], calls, concurrency, out)

    async def aclose(self) -> None:
        await self.direct.aclose()
        await self.router.aclose()
        await self.unlearned.aclose()


Results = dict[tuple[str, int, str], gw.Block]


async def compare(
    fake: FakeHandle, worker: Worker, home: Path, sizes: list[str], levels: list[tuple[int, int]], rounds: int
) -> Results:
    paths = Paths(fake, worker, home)
    results: Results = defaultdict(gw.Block)
    try:
        for size in sizes:
            fake.call("scale", SIZES[size])
            for name in PATHS:  # warm-up: connections, SQLite, the fake's image cache, fluxroute's learned latency
                await paths.block(name, 8, 2, gw.Block())
            for concurrency, calls in levels:
                for r in range(rounds):
                    shift = r % len(PATHS)
                    for name in PATHS[shift:] + PATHS[:shift]:
                        fake.call("fresh")
                        await paths.block(
                            name, max(1, calls // rounds), concurrency, results[(size, concurrency, name)]
                        )
                    print(f"  {size} c={concurrency} round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        await paths.aclose()
    return results


# --- where fluxroute's time goes --------------------------------------------------------------------------------------


def stage_targets() -> list[tuple[object, str, str]]:
    wanted: list[tuple[object, str, str]] = [
        (Router, "plan", "plan"),
        (FalProvider, "submit", "fal submit (POST)"),
        (FalProvider, "wait", "fal wait: status, result, download"),
        (Pace, "pause", "  of which pauses between status checks"),
        (FalProvider, "_status", "  of which status checks (GET)"),
        (FalProvider, "_result", "  of which result (GET response_url)"),
        (downloads.ResultDownloads, "image", "  of which image download + decode"),
        (downloads, "decode_image", "    of which decode check"),
        (execute_module.Executor, "_save", "save: bill, image file, records"),
        (images_module.ImageStore, "save", "  of which image save"),
        (execute_module.Executor, "_observe_latency", "learn latency (thread)"),
    ]
    wanted += [(JobStore, name, f"sqlite {name}") for name in gw.STORE_WRITES]
    return [(owner, attr, label) for owner, attr, label in wanted if hasattr(owner, attr)]


async def attribution(fake: FakeHandle, home: Path, calls: int, profile: str) -> tuple[dict[str, float], float]:
    fake.call("scale", SIZES["1MP"])
    router = router_for(fake, home / "attribution")
    unlearned = router_for(fake, home / "profile")
    counter = itertools.count()

    async def call(r: Router) -> None:
        await r.generate(ImageRequest.parse(REQUEST | {"prompt": f"{REQUEST['prompt']}, profiled {next(counter)}"}))

    await gw.run_block(functools.partial(call, router), 5, 1, gw.Block())  # learns, as in the comparison
    timers, wall = gw.StageTimers(), gw.Block()
    fake.call("fresh")
    with timers.wrapped(stage_targets()):
        await gw.run_block(functools.partial(call, router), calls, 1, wall)
    with learning_off():
        await gw.run_block(functools.partial(call, unlearned), 5, 1, gw.Block())
        fake.call("fresh")
        profiler = cProfile.Profile()
        profiler.enable()
        await gw.run_block(functools.partial(call, unlearned), 4 * calls, 1, gw.Block())
        profiler.disable()
    profiler.dump_stats(profile)
    await router.aclose()
    await unlearned.aclose()
    return {label: total / calls for label, total in timers.totals_ms.items()}, sum(wall.latencies_ms) / calls


# --- report -----------------------------------------------------------------------------------------------------------


def report(results: Results, sizes: list[str]) -> list[str]:
    lines: list[str] = []
    for size in sizes:
        lines += [
            "",
            f"images {size}",
            f"{'c':>3} {'path':<21}{'calls':>6}{'err':>4}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'calls/s':>9}"
            f"{'cpu ms':>8}{'+p50 ms':>9}{'+p99 ms':>9}{'x thru':>8}",
        ]
        levels = sorted({c for s, c, _ in results if s == size})
        for concurrency in levels:
            for name in PATHS:
                block = results[(size, concurrency, name)]
                values = block.latencies_ms or [float("nan")]
                p50, p99 = gw.percentile(values, 0.5), gw.percentile(values, 0.99)
                extra = ""
                if name in DIRECT_OF:
                    base = results[(size, concurrency, DIRECT_OF[name])]
                    b50, b99 = gw.percentile(base.latencies_ms, 0.5), gw.percentile(base.latencies_ms, 0.99)
                    thru = (block.calls / block.wall_s) / (base.calls / base.wall_s)
                    extra = f"{p50 - b50:>9.2f}{p99 - b99:>9.2f}{thru:>8.3f}"
                lines.append(
                    f"{concurrency:>3} {name:<21}{len(block.latencies_ms):>6}{len(block.errors):>4}{p50:>9.2f}"
                    f"{p99:>9.2f}{sum(values) / len(values):>9.2f}{block.calls / block.wall_s:>9.1f}"
                    f"{block.cpu_s / block.calls * 1000:>8.2f}{extra}"
                )
        lines += verdicts(results, size, levels)
    errors = [f"{s} c={c} {name}: {e}" for (s, c, name), block in sorted(results.items()) for e in block.errors]
    return lines + errors[:10]


def _overhead(results: Results, size: str, concurrency: int, name: str) -> tuple[float, float, float]:
    block, base = results[(size, concurrency, name)], results[(size, concurrency, DIRECT_OF[name])]
    p50 = gw.percentile(block.latencies_ms, 0.5) - gw.percentile(base.latencies_ms, 0.5)
    p99 = gw.percentile(block.latencies_ms, 0.99) - gw.percentile(base.latencies_ms, 0.99)
    return p50, p99, (block.calls / block.wall_s) / (base.calls / base.wall_s)


def verdicts(results: Results, size: str, levels: list[int]) -> list[str]:
    lines = []
    for concurrency in levels:
        lite = _overhead(results, size, concurrency, "litellm")
        for name in ("fluxroute", "fluxroute unlearned"):
            flux = _overhead(results, size, concurrency, name)
            if concurrency == 1:
                met = "met" if flux[0] <= lite[0] and flux[1] <= lite[1] else "NOT met"
                lines.append(
                    f"{size} c=1 {name}: overhead p50 {flux[0]:+.2f} / p99 {flux[1]:+.2f} ms vs LiteLLM's "
                    f"{lite[0]:+.2f} / {lite[1]:+.2f} ms: {met}"
                )
            else:
                met = "met" if flux[2] >= lite[2] else "NOT met"
                lines.append(
                    f"{size} c={concurrency} {name}: throughput {flux[2]:.3f} of its direct client vs LiteLLM's "
                    f"{lite[2]:.3f}: {met}"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls-1", type=int, default=20, help="calls per path at concurrency 1, all rounds")
    parser.add_argument("--calls-16", type=int, default=128, help="calls per path at concurrency 16, all rounds")
    parser.add_argument("--calls-64", type=int, default=512, help="calls per path at concurrency 64, all rounds")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per concurrency level")
    parser.add_argument("--sizes", default="64x64,1MP", help="comma-separated: 64x64, 1MP")
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV, help="where LiteLLM's venv lives")
    parser.add_argument("--tmp", help="where the temporary homes go (default: the system temp dir)")
    parser.add_argument("--profile", help="then time fluxroute's stages and cProfile it into this .pstats file")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    assert all(s in SIZES for s in sizes), f"--sizes: choose from {', '.join(SIZES)}"
    os.environ["FLUXROUTE_CONFIG"] = "none"
    started = time.monotonic()
    python = ensure_peer_venv(args.peer_venv)
    levels = [(1, args.calls_1), (16, args.calls_16), (64, args.calls_64)]
    fake = FakeHandle()
    per_call: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="fluxroute-peer-", dir=args.tmp) as tmp:
            worker = Worker(python, fake.run_url, Path(tmp) / "worker.log")
            try:
                results = asyncio.run(compare(fake, worker, Path(tmp), sizes, levels, args.rounds))
            finally:
                worker.close()
            if args.profile:
                per_call, mean_ms = asyncio.run(attribution(fake, Path(tmp), 10, args.profile))
    finally:
        fake.stop()
    out = [
        f"peer: fluxroute vs LiteLLM {worker.version} on the fal fake; {gw.machine()}; fake in its own process, "
        f"{sum(TIMINGS.values()) * 1000:g} ms jobs, fresh prompt per call, {args.rounds} interleaved rounds",
        *report(results, sizes),
    ]
    if per_call:
        out += ["", f"fluxroute (learned), 1 MP, c=1: mean {mean_ms:.1f} ms per call; ms per call in each stage:"]
        labels = [label for _, _, label in stage_targets()]
        out += [f"  {label:<44}{per_call[label]:>9.2f}" for label in labels if per_call.get(label, 0.0) >= 0.005]
    out.append(f"total run time {time.monotonic() - started:.0f} s")
    print("\n".join(out))
    if args.profile:
        print(f"\ncProfile of {4 * 10} fluxroute unlearned calls, 1 MP, c=1 (top by own time):")
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(12)
        print("fluxroute's own functions, by cumulative time:")
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats("fluxroute/", 20)


if __name__ == "__main__":
    main()
