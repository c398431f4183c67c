"""Gateway overhead: fluxroute end to end vs a direct HTTP client against the same Krea fake, and completion detection.

Run: python benchmarks/gateway_overhead.py [--quick] [--calls 320] [--calls-64 1280] [--tmp DIR] [--profile out.pstats]
     python benchmarks/gateway_overhead.py --use [--calls 60] [--calls-16 160] [--calls-64 N] [--rounds 3]
         [--providers krea,fal] [--paths direct,fluxroute,old-decode[,+preview]]   (overhead as used, only)

Part 1 (overhead): every call is one 50 ms job on the Krea fake (tests/fakes; its own process unless
  --fake-in-process), returning a 64x64 PNG.
  direct     httpx only: POST /generate/image/bfl/flux-1-dev, poll GET /jobs/{id} on fluxroute's own
             PollSchedule (so both sides poll at the same moments and only fluxroute's own work differs), GET the image
  provider   KreaProvider.submit + wait (error mapping, progress plumbing, image decode check)
  fluxroute  Router.generate(ImageRequest): plan, SQLite job/attempt/ledger records, budget reservation,
             image saved with embedded parameters (no preview: MCP results make theirs); the real user path
  Modes are interleaved in rounds so drift hits all of them alike. overhead = path - direct at the same percentile.
  --use: overhead as it is used, alone: a fresh prompt on every call (no plan-cache hit), at c=1 and c=16 (and
  c=64 with --calls-64), for a 64x64 PNG and a real-size 1 MP PNG (~1.4 MB: the fake's gradient with film grain, so
  it compresses like a photo), on the Krea path and on the fal path (each fake in its own process). Paths:
  direct      Krea: DirectClient below; fal: fal_client.AsyncClient (submit, status polls, GET the response URL)
              and a plain httpx client for the image; both write each image to a file
  fluxroute   Router.generate, as it is
  old-decode  the same call as it was before results were checked structurally: the full-pixel decode check
              every result paid for (kept below as `old_decode_image`), and the image save's glob and sliced
              copies (`old_saved_stem`, `old_png_with_text`): the before figures
  +preview    the same call followed by the JPEG preview every result paid for before previews were made for MCP
              results only (kept below as `old_preview`)
  Both sides poll on the catalog's PollSchedule: fluxroute's learned schedule (from the 3rd job of an offer on)
  is kept off here, since a direct client has nothing to learn from and the two would not poll at the same moments.
Part 2 (attribution): the fluxroute path again at concurrency 1 with timers wrapped around its stages.
Part 3 (completion detection): jobs of several lengths, delay from the fake's `finished_at` to the status poll that
  saw the end and to wait() returning, and GET /jobs requests per job, for fluxroute's adaptive schedule (with the
  catalog's latency estimate, and with an estimate equal to the true length), the webhook path
  (X-Webhook-URL -> a loopback receiver -> provider.notify), and a naive client polling every 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import glob
import io
import itertools
import multiprocessing
import os
import platform
import pstats
import random
import re
import ssl
import statistics
import sys
import tempfile
import time
import types
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client
import httpx
from PIL import Image
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fakes live in tests/, not in the package

from fluxroute.errors import JobFailed, WebhookRejected
from fluxroute.providers import downloads
from fluxroute.providers.base import Availability, ProviderImage
from fluxroute.providers.image_header import png_or_webp_size
from fluxroute.providers.krea import KreaProvider
from fluxroute.providers.polling import PollSchedule
from fluxroute.providers.url_guard import without_credentials
from fluxroute.providers.webhooks import krea_webhook_job_id
from fluxroute.router import Router
from fluxroute.router import execute as execute_module
from fluxroute.settings import Settings
from fluxroute.store import images as images_module
from fluxroute.store.jobstore import JobStore
from fluxroute.types import Candidate, ImageRequest
from tests.fakes import images as fake_images
from tests.fakes import webhooks
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

TOKEN = "bench-krea-token"
FAL_KEY = "bench-fal-key:secret"
JOB_S = 0.050  # the fixed provider latency of part 1
IMAGE_SCALE = 1 / 16  # 1024x1024 logical -> a 64x64 gradient PNG served (~250 bytes): transfer time stays out
PHASES = ("queued", "scheduled", "processing", "sampling")  # the fake's timed statuses (intermediate-complete off)
REQUEST = {"prompt": "a lighthouse at dusk", "model": "flux-dev", "provider": "krea", "width": 1024, "height": 1024}
OFFERS = {"krea": "krea-flux-1-dev", "fal": "fal-flux-dev"}
SERVED_BYTES: dict[tuple[str, str], int] = {}  # (provider, image size label) -> bytes of one image, as downloaded
USE_PATHS = ("direct", "fluxroute", "old-decode", "+preview")
NAIVE_INTERVAL_S = 2.0
STAGGER_S = 3.0
TERMINAL = {"completed", "failed", "cancelled"}


IMAGE_SCALES = {"64x64": IMAGE_SCALE, "1MP": 1.0}
_scale = IMAGE_SCALE


def set_job_length(fake: KreaFake | FalFake, seconds: float) -> None:
    if isinstance(fake, FalFake):
        fake.timings = {"IN_QUEUE": seconds / 5, "IN_PROGRESS": seconds * 4 / 5}
    else:
        fake.timings = dict.fromkeys(PHASES, seconds / len(PHASES)) | {"intermediate-complete": 0.0}
    fake.image_scale = _scale


@functools.lru_cache(maxsize=8)
def photo_like(width: int, height: int, fmt: str) -> bytes:
    """The fake's gradient with film grain: a full-size PNG as large as a real 1 MP render (~1.4 MB)."""
    ramp, size = Image.linear_gradient("L"), (width, height)
    grain = Image.effect_noise(size, 8).convert("L")
    channels = (ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 90))
    image = Image.merge("RGB", [Image.blend(channel, grain, 0.5) for channel in channels])
    out = io.BytesIO()
    image.save(out, "PNG" if fmt == "png" else "JPEG", **({"compress_level": 6} if fmt == "png" else {"quality": 90}))
    return out.getvalue()


def photo_render(spec: fake_images.ImageSpec, scale: float = 1.0) -> bytes:
    """Used by the fake in this benchmark: one cached image per size, so no call pays for rendering it."""
    return photo_like(max(1, round(spec.width * scale)), max(1, round(spec.height * scale)), spec.fmt)


def old_decode_image(
    data: bytes, url: str | None, *, provider: str, max_pixels: int, flagged: bool = False
) -> ProviderImage:
    """downloads.decode_image as it was before results were checked structurally: Pillow decodes every pixel
    (`image.load()`) only to catch a truncated or garbled body."""
    where = "a data: URI" if url is None else without_credentials(url)

    def too_large(width: int, height: int) -> JobFailed:
        return JobFailed(
            f"the result image from {where} declares {width}x{height} pixels, more than max_image_pixels "
            f"({max_pixels}); it was not decoded",
            provider=provider,
            billing="charged",
        )

    size = png_or_webp_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise too_large(*size)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise too_large(image.width, image.height)
            image.load()
            content_type = Image.MIME.get(image.format or "", "application/octet-stream")
            return ProviderImage(data, image.width, image.height, content_type, url=url, flagged=flagged)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise JobFailed(
            f"the result image from {where} cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
            provider=provider,
            billing="charged",
            retryable=True,
        ) from None


def old_png_with_text(data: bytes, key: str, text: str) -> bytes:
    """images._png_with_text before it copied the image once: two slices, then their concatenation."""
    payload = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    chunk = b"iTXt" + payload
    packed = len(payload).to_bytes(4, "big") + chunk + (zlib.crc32(chunk) & 0xFFFFFFFF).to_bytes(4, "big")
    after_ihdr = 8 + 4 + 4 + int.from_bytes(data[8:12], "big") + 4
    return data[:after_ihdr] + packed + data[after_ihdr:]


def old_saved_stem(self: images_module.ImageStore, tail: str, extension: str) -> str:
    """ImageStore._saved_stem before it matched names as strings: a pathlib glob."""
    earlier = sorted(
        path.name.removesuffix(f".{extension}")
        for path in self.directory.glob(f"*{glob.escape(tail)}.{extension}")
        if not path.name.startswith(".") and not path.name.endswith(".tmp")
    )
    return earlier[0] if earlier else datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + tail


@contextlib.contextmanager
def old_decode() -> Iterator[None]:
    """While the block runs, results are checked with `old_decode_image` and saved with `old_png_with_text` and
    `old_saved_stem`: the code before results were checked structurally."""
    patches = [
        (downloads, "decode_image", old_decode_image),
        (images_module, "_png_with_text", old_png_with_text),
        (images_module.ImageStore, "_saved_stem", old_saved_stem),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


@contextlib.contextmanager
def catalog_polling() -> Iterator[None]:
    """Router calls poll on the catalog's PollSchedule, as the direct clients do: the learned schedule (which
    fluxroute switches to once an offer has LEARN_AFTER completed jobs) is kept off."""
    if not hasattr(execute_module, "LEARN_AFTER"):
        raise RuntimeError("router.execute.LEARN_AFTER is gone: update catalog_polling() to keep learning off")
    current = execute_module.LEARN_AFTER
    execute_module.LEARN_AFTER = 10**9
    try:
        yield
    finally:
        execute_module.LEARN_AFTER = current


def old_preview(data: bytes) -> bytes:
    """The JPEG preview ImageStore.save made for every result before previews were made for MCP results only."""
    with Image.open(io.BytesIO(data)) as source:
        preview = source.convert("RGB")
        preview.thumbnail((512, 512))
        buffer = io.BytesIO()
        preview.save(buffer, format="JPEG", quality=80, optimize=True)
        return buffer.getvalue()


class FakeHandle:
    """The Krea fake in this process (`--fake-in-process`) or, by default, in a child process.

    In-process, the fake's uvicorn thread shares the GIL with the client under test, so on a small machine its CPU
    work (and its webhook sender building an httpx client per delivery) lands inside the measured latencies; a
    child process gives it a core of its own. time.monotonic() is CLOCK_MONOTONIC, one clock for both processes.
    """

    def __init__(self, in_process: bool, kind: str = "krea") -> None:
        self.kind = kind
        self._fake: KreaFake | FalFake | None = None
        self._conn: Connection | None = None
        if in_process:
            self._fake = start_fake(kind)
            self.base_url = self._fake.base_url
        else:
            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._process = ctx.Process(target=serve_fake, args=(child, kind), daemon=True)
            self._process.start()
            self.base_url = self._conn.recv()

    def _call(self, command: str, *args: Any) -> Any:
        if self._fake is not None:
            return fake_command(self._fake, command, *args)
        assert self._conn is not None
        self._conn.send((command, *args))
        return self._conn.recv()

    def fresh(self) -> None:
        """Forget old jobs between blocks: the fake scans every job it knows on each request."""
        self._call("fresh")

    def set_job_length(self, seconds: float) -> None:
        self._call("length", seconds)

    def set_scale(self, scale: float) -> None:
        self._call("scale", scale)

    def status_polls(self) -> int:
        return int(self._call("get_job_count"))

    def request_counts(self) -> dict[str, int]:
        """Requests the fake answered since the last `fresh()`, by route."""
        return dict(self._call("counts"))

    def poll_times(self) -> dict[str, list[float]]:
        """Job id -> arrival times (monotonic) of every GET /jobs/{id} the fake answered."""
        return dict(self._call("poll_times"))

    def finished_at(self, job_ids: list[str]) -> dict[str, float]:
        return dict(self._call("finished_at", job_ids))

    def stop(self) -> None:
        if self._fake is not None:
            self._fake.stop()
        else:
            self._call("stop")
            self._process.join(5)


def fake_command(fake: KreaFake | FalFake, command: str, *args: Any) -> Any:
    if command == "fresh":
        fake.reset()
        set_job_length(fake, JOB_S)
        return None
    if command == "length":
        set_job_length(fake, args[0])
        return None
    if command == "scale":
        global _scale
        _scale = args[0]
        set_job_length(fake, JOB_S)
        return None
    if command == "get_job_count":
        return fake.request_counts["status" if isinstance(fake, FalFake) else "get_job"]
    if command == "counts":
        return dict(fake.request_counts)
    if command == "poll_times":
        polls: dict[str, list[float]] = defaultdict(list)
        for record in fake.request_log:
            if record.route == "get_job":
                polls[record.path.rsplit("/", 1)[-1]].append(record.at)
        return polls
    if command == "finished_at":
        return {job_id: fake.job(job_id).finished_at for job_id in args[0]}
    raise ValueError(command)


def start_fake(kind: str = "krea") -> KreaFake | FalFake:
    """The fake, with one benchmark-only change: its webhook sender builds an httpx client per delivery, and the
    default client loads the CA bundle into a new SSL context (~20 ms of CPU) on the fake's event loop, stalling
    every API request in flight at that moment. Loopback needs no TLS; one shared context keeps deliveries cheap."""
    context = ssl.create_default_context()
    fake_images.render = photo_render  # type: ignore[assignment]
    webhooks.httpx = types.SimpleNamespace(  # type: ignore[attr-defined, assignment]
        AsyncClient=functools.partial(httpx.AsyncClient, verify=context), HTTPError=httpx.HTTPError
    )
    return FalFake(key=FAL_KEY).start() if kind == "fal" else KreaFake(token=TOKEN).start()


def serve_fake(conn: Connection, kind: str = "krea") -> None:
    """Child process: run the fake, answer commands until "stop"."""
    fake = start_fake(kind)
    try:
        conn.send(fake.base_url)
        while True:
            command, *args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            conn.send(fake_command(fake, command, *args))
    finally:
        fake.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class DirectClient:
    """What a careful caller writes against Krea's API without fluxroute: two httpx clients (API with the token,
    CDN without, as KreaProvider has), POST the job, poll on the same schedule, GET the image bytes."""

    def __init__(self, base_url: str, expected_s: float) -> None:
        self.api = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        self.cdn = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        self.expected_s = expected_s

    async def generate(self, body: dict[str, object]) -> bytes:
        response = await self.api.post("/generate/image/bfl/flux-1-dev", json=body)  # never repeated: it may bill
        response.raise_for_status()
        job_id = response.json()["job_id"]
        schedule, started = PollSchedule(expected_s=self.expected_s), time.monotonic()
        while True:
            job = (await self._get(self.api, f"/jobs/{job_id}")).json()
            if job["status"] in TERMINAL:
                break
            await asyncio.sleep(schedule.next_delay(time.monotonic() - started))
        if job["status"] != "completed":
            raise RuntimeError(f"job {job_id} ended {job['status']}")
        return (await self._get(self.cdn, job["result"]["urls"][0])).content

    @staticmethod
    async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
        """GETs are retried once on a transport error (a keep-alive connection the server just closed), as
        fluxroute retries them; otherwise such a race would count against the baseline alone."""
        for attempt in (1, 2):
            try:
                response = await client.get(url)
                return response.raise_for_status()
            except httpx.TransportError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.cdn.aclose()


@dataclass
class Block:
    latencies_ms: list[float] = field(default_factory=list)
    status_polls: int = 0
    calls: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time: the client's own cost, whatever the fake spends
    block_p50s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)  # the fake's count, by route


async def run_block(call: Callable[[], Awaitable[object]], calls: int, concurrency: int, out: Block) -> None:
    gate = asyncio.Semaphore(concurrency)
    wall, cpu = time.perf_counter(), time.process_time()

    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # counted and shown, not fatal: one lost race must not end a long run
                out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one() for _ in range(calls)))
    out.latencies_ms += latencies
    if latencies:
        out.block_p50s.append(percentile(latencies, 0.5))
    out.calls += calls
    out.wall_s += time.perf_counter() - wall
    out.cpu_s += time.process_time() - cpu


def bench_settings(fake: FakeHandle, home: Path) -> Settings:
    """Krea's base URL on the fake; home (SQLite store, images) in the run's temporary directory."""
    return Settings(home=home, krea_api_token=SecretStr(TOKEN), krea_base_url=fake.base_url, provider_timeout_s=60)


def only(provider: str) -> dict[str, Availability]:
    names = ("krea", "fal", "local")
    return {name: Availability(True) if name == provider else Availability(False, "off") for name in names}


def krea_only() -> dict[str, Availability]:
    return only("krea")


async def overhead(
    fake: FakeHandle, home: Path, levels: list[tuple[int, int]], rounds: int, profile: str | None
) -> tuple[dict[tuple[int, str], Block], float]:
    settings = bench_settings(fake, home)
    router = Router(settings, availability=krea_only())
    request = ImageRequest.parse(REQUEST)
    candidate = router.plan(request).chosen
    assert candidate is not None and candidate.offer_id == "krea-flux-1-dev"
    direct = DirectClient(fake.base_url, candidate.latency_s)
    provider = KreaProvider(settings)
    body = dict(candidate.params)

    async def via_provider() -> None:
        job_id = await provider.submit(candidate)
        await provider.wait(job_id, candidate, None, settings.provider_timeout_s)

    paths: dict[str, Callable[[], Awaitable[object]]] = {
        "direct": functools.partial(direct.generate, body),
        "provider": via_provider,
        "fluxroute": functools.partial(router.generate, request),
    }
    fake.fresh()
    for call in paths.values():  # warm-up: connections, SQLite file and WAL, image directory, imports
        await run_block(call, 8, 4, Block())
    results: dict[tuple[int, str], Block] = defaultdict(Block)
    order = list(paths)
    for concurrency, calls in levels:
        for r in range(rounds):
            for name in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
                fake.fresh()
                block = results[(concurrency, name)]
                await run_block(paths[name], calls // rounds, concurrency, block)
                block.status_polls += fake.status_polls()
    if profile:
        fake.fresh()
        profiler = cProfile.Profile()
        profiler.enable()
        await run_block(paths["fluxroute"], 100, 1, Block())
        profiler.disable()
        profiler.dump_stats(profile)
    await direct.aclose()
    await provider.aclose()
    await router.aclose()
    return results, candidate.latency_s


class DirectFal:
    """What a plain fal_client user does: fal_client.AsyncClient submits, the request handle's status() is polled
    (on the same schedule as DirectClient), the response URL is fetched as handle.get() fetches it, and the image
    is downloaded with a plain httpx client (the CDN needs no key)."""

    def __init__(self, expected_s: float) -> None:
        self.fal = fal_client.AsyncClient(key=FAL_KEY)
        self.cdn = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        self.expected_s = expected_s

    async def generate(self, endpoint: str, arguments: dict[str, object]) -> bytes:
        handle = await self.fal.submit(endpoint, arguments)
        schedule, started = PollSchedule(expected_s=self.expected_s), time.monotonic()
        while not isinstance(await handle.status(), fal_client.Completed):
            await asyncio.sleep(schedule.next_delay(time.monotonic() - started))
        response = await handle.client.get(handle.response_url)
        response.raise_for_status()
        output = response.json()
        return (await DirectClient._get(self.cdn, output["images"][0]["url"])).content

    async def aclose(self) -> None:
        await (await self.fal._client).aclose()
        await self.cdn.aclose()


def point_fal_client_at(base_url: str) -> None:
    """fal-client's queue host, as the test fixtures point it at the fake (module globals read at call time)."""
    fal_client.client.QUEUE_URL_FORMAT = base_url + "/"


async def use_overhead(
    fake: FakeHandle, home: Path, levels: list[tuple[int, int]], rounds: int, names: list[str]
) -> dict[str, dict[tuple[int, str], Block]]:
    """Overhead as used, on `fake`'s provider: fresh prompts, images written by every path, both image sizes,
    interleaved rounds."""
    provider = fake.kind
    if provider == "fal":
        settings = Settings(home=home, fal_key=SecretStr(FAL_KEY), fal_base_url=fake.base_url, provider_timeout_s=60)
        point_fal_client_at(fake.base_url)
    else:
        settings = bench_settings(fake, home)
    router = Router(settings, availability=only(provider))
    request = REQUEST | {"provider": provider}
    candidate = router.plan(ImageRequest.parse(request)).chosen
    assert candidate is not None and candidate.offer_id == OFFERS[provider], candidate
    direct: DirectClient | DirectFal
    direct = DirectFal(candidate.latency_s) if provider == "fal" else DirectClient(fake.base_url, candidate.latency_s)
    counter = itertools.count()
    written = home / "direct"
    written.mkdir(parents=True)

    def fresh() -> str:
        return f"{REQUEST['prompt']}, take {next(counter)}"

    async def direct_call() -> None:
        n = next(counter)
        params = candidate.params | {"prompt": f"{REQUEST['prompt']}, take {n}"}
        if isinstance(direct, DirectFal):
            data = await direct.generate(candidate.endpoint, params)
        else:
            data = await direct.generate(params)
        (written / f"{n}.png").write_bytes(data)
        SERVED_BYTES[(provider, size_label)] = len(data)

    async def fluxroute_call() -> None:
        await router.generate(ImageRequest.parse(request | {"prompt": fresh()}))

    async def with_preview_call() -> None:
        result = await router.generate(ImageRequest.parse(request | {"prompt": fresh()}))
        for image in result.images:
            path = Path(str(image.path))
            path.with_suffix(".preview.jpg").write_bytes(old_preview(path.read_bytes()))

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "direct": direct_call,
        "fluxroute": fluxroute_call,
        "old-decode": fluxroute_call,
        "+preview": with_preview_call,
    }
    settings_for: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {"old-decode": old_decode}
    paths = {name: calls[name] for name in names}
    out: dict[str, dict[tuple[int, str], Block]] = {}
    size_label = ""
    for label, scale in IMAGE_SCALES.items():
        size_label = label
        fake.set_scale(scale)
        fake.fresh()
        for name, call in paths.items():  # warm-up: connections, SQLite, image directory, the fake's image cache
            with settings_for.get(name, contextlib.nullcontext)():
                await run_block(call, 8, 4, Block())
        results: dict[tuple[int, str], Block] = defaultdict(Block)
        order = list(paths)
        for concurrency, count in levels:
            for r in range(rounds):
                for name in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
                    fake.fresh()
                    block = results[(concurrency, name)]
                    with settings_for.get(name, contextlib.nullcontext)():
                        await run_block(paths[name], count // rounds, concurrency, block)
                    block.requests.update(fake.request_counts())
                    block.status_polls = block.requests["status" if provider == "fal" else "get_job"]
        out[label] = results
    await direct.aclose()
    await router.aclose()
    return out


# --- part 2: where fluxroute's time goes ----------------------------------------------------------------------------


class StageTimers:
    """Wraps named functions in wall-clock timers for the length of a `with` block; fluxroute's code is untouched."""

    def __init__(self) -> None:
        self.totals_ms: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def wrapped(self, targets: list[tuple[object, str, str]]) -> Iterator[None]:
        present = [target for target in targets if hasattr(target[0], target[1])]  # stages renamed since are skipped
        originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in present]
        for (owner, attr, original), (_, _, label) in zip(originals, present, strict=True):
            setattr(owner, attr, self._timed(original, label))
        try:
            yield
        finally:
            for owner, attr, original in originals:
                setattr(owner, attr, original)

    def _timed(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        totals = self.totals_ms
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    totals[label] += (time.perf_counter() - t0) * 1000

            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += (time.perf_counter() - t0) * 1000

        return timed


STORE_WRITES = (
    "create_job",
    "update_job",
    "reserve",
    "start_attempt",
    "mark_submitted",
    "settle",
    "finish_attempt",
    "release",
)


async def attribution(fake: FakeHandle, home: Path, calls: int) -> tuple[dict[str, float], float]:
    settings = bench_settings(fake, home)
    router = Router(settings, availability=krea_only())
    request = ImageRequest.parse(REQUEST)
    timers = StageTimers()
    targets: list[tuple[object, str, str]] = [
        (Router, "plan", "plan (planner, pydantic)"),
        (KreaProvider, "submit", "provider submit (POST)"),
        (KreaProvider, "_get_job", "provider status polls (GET)"),
        (KreaProvider, "_finish", "provider download + decode"),
        (downloads, "decode_image", "  of which image check"),
        (execute_module.Executor, "_complete", "complete: bill, save, result"),
        (images_module.ImageStore, "save", "  of which image save"),
        (images_module, "embed_parameters", "    of which embed parameters"),
    ]
    targets += [(JobStore, name, f"sqlite {name}") for name in STORE_WRITES]
    fake.fresh()
    await run_block(functools.partial(router.generate, request), 5, 1, Block())
    wall = Block()
    with timers.wrapped(targets):
        await run_block(functools.partial(router.generate, request), calls, 1, wall)
    await router.aclose()
    per_call = {label: total / calls for label, total in timers.totals_ms.items()}
    return per_call, statistics.fmean(wall.latencies_ms)


# --- part 3: completion detection -----------------------------------------------------------------------------------


@dataclass
class Detection:
    mode: str
    length_s: float
    job_id: str
    returned_at: float  # monotonic, when wait() (or the naive loop, download included) returned


class WebhookReceiver:
    """A minimal HTTP endpoint on the benchmark's own loop: Krea's webhook body -> krea_webhook_job_id -> notify."""

    def __init__(self, provider: KreaProvider) -> None:
        self.provider = provider
        self.known: set[str] = set()
        self.notified = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/krea"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
        body = await reader.readexactly(int(match.group(1)) if match else 0)
        try:
            job_id = krea_webhook_job_id(body)
            if job_id not in self.known:
                raise WebhookRejected(f"krea webhook: job {job_id} was not created here")
            self.notified += self.provider.notify(job_id)
            status = b"200 OK"
        except WebhookRejected:
            status = b"400 Bad Request"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def completion(
    fake: FakeHandle, home: Path, lengths: list[float], repeats: int
) -> tuple[list[Detection], dict[str, list[float]], int]:
    settings = bench_settings(fake, home)
    router = Router(settings, availability=krea_only())
    catalog_candidate = router.plan(ImageRequest.parse(REQUEST)).chosen
    assert catalog_candidate is not None
    provider = KreaProvider(settings)
    receiver = WebhookReceiver(provider)
    hook_url = await receiver.start()
    naive = DirectClient(fake.base_url, catalog_candidate.latency_s)
    fake.fresh()
    creating = asyncio.Lock()  # the fake reads its timings when a job is created: one creation at a time
    detections: list[Detection] = []

    async def submit(length: float, candidate: Candidate, webhook: bool = False) -> str:
        async with creating:
            fake.set_job_length(length)
            job_id = await provider.submit(candidate, webhook_url=hook_url if webhook else None)
            receiver.known.add(job_id)
            return job_id

    async def adaptive(mode: str, length: float, candidate: Candidate, webhook: bool = False) -> None:
        job_id = await submit(length, candidate, webhook)
        await provider.wait(job_id, candidate, None, 60)
        detections.append(Detection(mode, length, job_id, time.monotonic()))

    async def naive_poll(length: float) -> None:
        async with creating:
            fake.set_job_length(length)
            response = await naive.api.post("/generate/image/bfl/flux-1-dev", json=dict(catalog_candidate.params))
        job_id = response.json()["job_id"]
        while True:
            job = (await naive.api.get(f"/jobs/{job_id}")).json()
            if job["status"] in TERMINAL:
                break
            await asyncio.sleep(NAIVE_INTERVAL_S)
        (await naive.cdn.get(job["result"]["urls"][0])).raise_for_status()
        detections.append(Detection("naive 2 s poll", length, job_id, time.monotonic()))

    rng = random.Random(11)
    tasks: list[Awaitable[None]] = []
    for length in lengths:
        exact = catalog_candidate.model_copy(update={"latency_s": length})
        for _ in range(repeats):
            tasks += [
                adaptive(f"adaptive, estimate {catalog_candidate.latency_s:g} s (catalog)", length, catalog_candidate),
                adaptive("adaptive, estimate = true length", length, exact),
                adaptive("webhook + adaptive", length, catalog_candidate, webhook=True),
                naive_poll(length),
            ]
    rng.shuffle(tasks)

    async def staggered(task: Awaitable[None], delay: float) -> None:
        await asyncio.sleep(delay)
        await task

    # spread over 3 s: a burst of submissions would keep the loop busy just when the 50 ms jobs end
    await asyncio.gather(*(staggered(t, rng.uniform(0, STAGGER_S)) for t in tasks))
    polls = fake.poll_times()
    await receiver.aclose()
    await naive.aclose()
    await provider.aclose()
    await router.aclose()
    return detections, polls, receiver.notified


# --- report -----------------------------------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def print_overhead(results: dict[tuple[int, str], Block], targets: tuple[float, float]) -> list[str]:
    lines = [
        f"{'conc':>4} {'path':<10}{'calls':>6}{'err':>4}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'block p50s':>13}"
        f"{'GET/call':>9}{'calls/s':>8}{'cpu ms':>7}{'+p50 ms':>9}{'+p99 ms':>9}{'x p50':>7}{'x p99':>7}{'x thru':>8}"
    ]
    verdicts = []
    for concurrency in sorted({c for c, _ in results}):
        base_block = results[(concurrency, "direct")]
        base = base_block.latencies_ms
        b50, b99 = percentile(base, 0.5), percentile(base, 0.99)
        for name in ("direct", "provider", "fluxroute", "old-decode", "+preview"):
            if (concurrency, name) not in results:
                continue
            block = results[(concurrency, name)]
            values = block.latencies_ms
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            extra = "" if name == "direct" else f"{p50 - b50:>9.2f}{p99 - b99:>9.2f}{p50 / b50:>7.3f}{p99 / b99:>7.3f}"
            if name != "direct":
                extra += f"{(block.calls / block.wall_s) / (base_block.calls / base_block.wall_s):>8.3f}"
            lines.append(
                f"{concurrency:>4} {name:<10}{len(values):>6}{len(block.errors):>4}{p50:>9.2f}{p99:>9.2f}"
                f"{statistics.fmean(values):>9.2f}{min(block.block_p50s):>7.1f}-{max(block.block_p50s):<5.1f}"
                f"{block.status_polls / block.calls:>9.2f}{block.calls / block.wall_s:>8.1f}"
                f"{block.cpu_s / block.calls * 1000:>7.2f}{extra}"
            )
            if name == "fluxroute" or (name == "+preview" and "fluxroute" not in [n for _, n in results]):
                met50 = "met" if p50 - b50 <= targets[0] else "NOT met"
                met99 = "met" if p99 - b99 <= targets[1] else "NOT met"
                verdicts.append(
                    f"c={concurrency}: overhead p50 {p50 - b50:.2f} ms ({met50}, target <= {targets[0]:g}), "
                    f"p99 {p99 - b99:.2f} ms ({met99}, target <= {targets[1]:g})"
                )
    errors = [f"c={c} {name}: {error}" for (c, name), block in sorted(results.items()) for error in block.errors]
    return lines + verdicts + errors[:10]


def print_attribution(per_call: dict[str, float], mean_ms: float) -> list[str]:
    lines = [f"fluxroute at c=1, mean {mean_ms:.2f} ms per call; time inside each stage, ms per call:"]
    sqlite_total = sum(v for k, v in per_call.items() if k.startswith("sqlite "))
    for label, value in per_call.items():
        if value >= 0.005:
            lines.append(f"  {label:<36}{value:>8.3f}")
    lines.append(f"  {'sqlite writes, all':<36}{sqlite_total:>8.3f}")
    return lines


def print_completion(
    detections: list[Detection], polls: dict[str, list[float]], finished_at: dict[str, float]
) -> list[str]:
    lines = [
        f"{'mode':<40}{'job s':>6}{'n':>3}{'seen ms':>9}{'return ms':>10}{'GET/job':>8}",
    ]
    grouped: dict[tuple[str, float], list[Detection]] = defaultdict(list)
    for d in detections:
        grouped[(d.mode, d.length_s)].append(d)
    modes = sorted({m for m, _ in grouped}, key=lambda m: ("naive" in m, "webhook" in m, "true" in m))
    overall: dict[str, list[float]] = defaultdict(list)
    for mode in modes:
        for length in sorted({length for m, length in grouped if m == mode}):
            seen, returned, counts = [], [], []
            for d in grouped[(mode, length)]:
                finished = finished_at[d.job_id]
                times = polls[d.job_id]
                seen.append((min(t for t in times if t >= finished) - finished) * 1000)
                returned.append((d.returned_at - finished) * 1000)
                counts.append(len(times))
            overall[mode] += returned
            lines.append(
                f"{mode:<40}{length:>6g}{len(seen):>3}{statistics.fmean(seen):>9.1f}"
                f"{statistics.fmean(returned):>10.1f}{statistics.fmean(counts):>8.1f}"
            )
    lines.append("mean delay to wait() returning, over all lengths (target <= 100 ms):")
    for mode in modes:
        mean = statistics.fmean(overall[mode])
        lines.append(f"  {mode:<40}{mean:>8.1f} ms  {'met' if mean <= 100 else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and shorter jobs (about 40 s)")
    parser.add_argument("--calls", type=int, default=None, help="calls per path at concurrency 1 (default 320)")
    parser.add_argument("--calls-64", type=int, default=None, help="calls per path at concurrency 64 (default 1280)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per concurrency level (default 8, quick 4)")
    parser.add_argument("--fake-in-process", action="store_true", help="run the fake on a thread of this process")
    parser.add_argument("--tmp", help="where the temporary fluxroute home goes (default: the system temp dir)")
    parser.add_argument("--profile", help="cProfile 100 fluxroute calls at c=1 into this .pstats file, print the top")
    parser.add_argument("--use", action="store_true", help="only the overhead as used (fresh prompts, 64x64 and 1 MP)")
    parser.add_argument("--calls-16", type=int, default=160, help="--use: calls per path at concurrency 16")
    parser.add_argument("--providers", default="krea,fal", help="--use: the provider paths measured, in order")
    parser.add_argument(
        "--paths", default="direct,fluxroute,old-decode", help=f"--use: direct, then any of {', '.join(USE_PATHS[1:])}"
    )
    args = parser.parse_args()
    if args.use:
        use_main(args)
        return
    calls_1 = args.calls or (80 if args.quick else 320)
    calls_64 = args.calls_64 or (256 if args.quick else 1280)
    lengths = [0.05, 0.5, 2.5] if args.quick else [0.05, 0.5, 2.5, 5.0]
    repeats = 2 if args.quick else 5
    rounds = args.rounds or (4 if args.quick else 8)

    started = time.monotonic()
    fake = FakeHandle(in_process=args.fake_in_process)
    try:
        with tempfile.TemporaryDirectory(prefix="fluxroute-bench-", dir=args.tmp) as tmp:
            levels = [(1, calls_1), (64, calls_64)]
            with catalog_polling():
                results, estimate = asyncio.run(overhead(fake, Path(tmp) / "overhead", levels, rounds, args.profile))
                per_call, mean_ms = asyncio.run(attribution(fake, Path(tmp) / "attribution", 40 if args.quick else 100))
            detections, polls, notified = asyncio.run(completion(fake, Path(tmp) / "completion", lengths, repeats))
            finished_at = fake.finished_at([d.job_id for d in detections])
    finally:
        fake.stop()
    where = "in-process" if args.fake_in_process else "in a child process"
    out = [
        f"gateway overhead: {machine()}; Krea fake {where}, {JOB_S * 1000:g} ms jobs, image_scale {IMAGE_SCALE:g} "
        f"(64x64 PNG); poll estimate {estimate:g} s; home on {args.tmp or tempfile.gettempdir()} "
        f"({'quick' if args.quick else 'full'} run)",
        "",
        *print_overhead(results, (2.0, 5.0)),
        "",
        *print_attribution(per_call, mean_ms),
        "",
        *print_completion(detections, polls, finished_at),
        f"webhooks that woke a waiting wait(): {notified} of {repeats * len(lengths)}",
        f"naive 2 s poll, job length unknown to the poller (uniform phase): mean delay {NAIVE_INTERVAL_S / 2:g} s",
        f"total run time {time.monotonic() - started:.0f} s",
    ]
    print("\n".join(out))
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


def use_main(args: argparse.Namespace) -> None:
    calls_1, rounds = args.calls or 60, args.rounds or 3
    providers = args.providers.split(",")
    names = args.paths.split(",")
    unknown = [name for name in names if name not in USE_PATHS] + [p for p in providers if p not in OFFERS]
    if unknown or names[0] != "direct":
        raise SystemExit(f"--paths: direct first, then any of {', '.join(USE_PATHS[1:])}; --providers: krea, fal")
    levels = [(1, calls_1), (16, args.calls_16)] + ([(64, args.calls_64)] if args.calls_64 else [])
    started = time.monotonic()
    by_provider: dict[str, dict[str, dict[tuple[int, str], Block]]] = {}
    with tempfile.TemporaryDirectory(prefix="fluxroute-bench-", dir=args.tmp) as tmp, catalog_polling():
        for provider in providers:
            fake = FakeHandle(in_process=args.fake_in_process, kind=provider)
            try:
                by_provider[provider] = asyncio.run(use_overhead(fake, Path(tmp) / provider, levels, rounds, names))
            finally:
                fake.stop()
    out = [
        f"gateway overhead as used: {machine()}; each fake in its own process, {JOB_S * 1000:g} ms jobs, fresh "
        f"prompt per call, {rounds} interleaved rounds, catalog poll schedule on both sides; paths: {', '.join(names)}",
    ]
    for provider, by_size in by_provider.items():
        for label, results in by_size.items():
            size = SERVED_BYTES.get((provider, label), 0)
            out += ["", f"{provider}, images {label} ({size} bytes served)"]
            out += print_overhead(results, (2.0, 5.0))
            out += print_requests(results)
    out.append(f"total run time {time.monotonic() - started:.0f} s")
    print("\n".join(out))


def print_requests(results: dict[tuple[int, str], Block]) -> list[str]:
    """Requests per call the fake answered, by route, for each path (at every concurrency together)."""
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    calls: Counter[str] = Counter()
    for (_, name), block in results.items():
        totals[name].update(block.requests)
        calls[name] += block.calls
    lines = ["requests per call, by route (the fake's count):"]
    for name, counts in totals.items():
        shown = ", ".join(f"{route} {count / calls[name]:.2f}" for route, count in sorted(counts.items()))
        lines.append(f"  {name:<11}{shown}")
    return lines


if __name__ == "__main__":
    main()
