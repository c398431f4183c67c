"""Offers whose output follows the input image (fal image-to-image) are planned, priced and billed by its size."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from fluxroute.catalog import load_catalog
from fluxroute.errors import ConfigError, InvalidRequest
from fluxroute.router import Router
from fluxroute.router.input_size import HEADER_BUDGET, probe_input_size
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.images import bomb_png

I2I = "fal-flux-krea-i2i"
PROMPT = "the same lighthouse at dawn"
# fal bills ceil(2048*1024 / 1e6) = ceil(2.097152) = 3 MP at $0.025 per image
THREE_MP = Decimal("0.075")


def tiny_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG: a few hundred bytes whatever its pixel size (fits a data: URI in init_image)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG", optimize=True)
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def settings(hosted_settings: Settings) -> Settings:
    # the fal fake serves the input image from 127.0.0.1
    return hosted_settings.model_copy(update={"allow_private_urls": True})


@pytest.fixture
def input_url(fal_fake: FalFake) -> str:
    """A 2048x1024 PNG on the fal fake, noisy enough to be megabytes: more than the header budget."""
    out = io.BytesIO()
    Image.effect_noise((2048, 1024), 64).save(out, "PNG", compress_level=1)
    data = out.getvalue()
    assert len(data) > HEADER_BUDGET
    fal_fake.files.add_blob("input-2048x1024.png", data, "image/png")
    return f"{fal_fake.base_url}/files/input-2048x1024.png"


def i2i_request(init_image: str, **fields: object) -> ImageRequest:
    return ImageRequest.parse({"prompt": PROMPT, "init_image": init_image, "provider": "fal", **fields})


def provider_calls(fake: FalFake) -> int:
    return fake.request_counts["submit"] + fake.request_counts["run"]


def test_the_catalog_marks_fal_image_to_image_as_following_the_input() -> None:
    catalog = load_catalog()
    assert catalog.offer(I2I).size.output == "input"
    # fal's endpoints that edit an image come out at its size: image-to-image, Kontext, inpainting; so do local edits
    follows = {o.id for o in catalog.offers if o.size.output == "input"}
    assert {I2I, "fal-flux-kontext-dev", "fal-flux-krea-inpaint"} <= follows
    assert {"local-flux-krea-dev", "local-flux-dev", "local-flux-kontext-dev"} <= follows
    assert all(o.provider in ("fal", "local") for o in catalog.offers if o.id in follows)


def test_output_following_the_input_needs_a_mode_with_an_input_image() -> None:
    offer = load_catalog().offer("fal-flux-krea").model_dump(mode="json")
    offer.update(id="fal-t2i-following-input", size={**offer["size"], "output": "input"})
    with pytest.raises(ConfigError, match="needs a mode with an input image"):
        load_catalog(Settings(offers=[offer]))


@pytest.mark.parametrize(
    "size", [{}, {"width": 512, "height": 512}, {"aspect_ratio": "9:16", "megapixels": 4}, {"image_size": "square"}]
)
async def test_plan_prices_by_the_input_size_whatever_size_was_requested(
    settings: Settings, input_url: str, size: dict[str, object]
) -> None:
    router = Router(settings)
    request = i2i_request(input_url, **size)

    plan = router.plan(request, await router.input_size(request))

    chosen = plan.chosen
    assert chosen is not None and chosen.offer_id == I2I
    assert (chosen.width, chosen.height) == (2048, 1024)
    assert Decimal(str(chosen.cost_usd)) == THREE_MP
    notes = [a for a in chosen.adjustments if a.field == "size"]
    assert notes and notes[0].sent == "2048x1024"
    assert "output follows the input image: 2048x1024, billed 3 MP per image" in notes[0].reason
    assert "output follows the input image: 2048x1024, billed 3 MP" in plan.explanation


async def test_plan_cache_keeps_probed_and_unprobed_plans_apart(settings: Settings, input_url: str) -> None:
    router = Router(settings)
    request = i2i_request(input_url, width=512, height=512)

    unprobed = router.plan(request)
    probed = router.plan(request, await router.input_size(request))

    assert unprobed.chosen is not None and probed.chosen is not None
    assert (unprobed.chosen.width, unprobed.chosen.cost_usd) == (512, 0.025)
    assert "whose size was not read" in unprobed.chosen.adjustments[0].reason
    assert (probed.chosen.width, Decimal(str(probed.chosen.cost_usd))) == (2048, THREE_MP)
    assert router.plan(request, (2048, 1024)) is probed


async def test_num_images_multiplies_the_per_image_megapixels(settings: Settings, input_url: str) -> None:
    router = Router(settings)
    request = i2i_request(input_url, num_images=2)
    chosen = router.plan(request, await router.input_size(request)).chosen
    assert chosen is not None and Decimal(str(chosen.cost_usd)) == 2 * THREE_MP


async def test_an_input_too_large_for_the_offer_rejects_it_with_the_reason(settings: Settings) -> None:
    router = Router(settings)
    request = i2i_request(data_uri(tiny_png(4096, 2048)))

    plan = router.plan(request, await router.input_size(request))

    assert plan.chosen is None
    [rejection] = [r for r in plan.rejections if r.offer_id == I2I]
    assert rejection.reasons == ["output follows the input image (4096x2048): 8.4 MP exceeds 4 MP"]


async def test_generate_bills_what_fal_bills_for_the_input_size(
    settings: Settings, fal_fake: FalFake, input_url: str
) -> None:
    router = Router(settings)
    try:
        result = await router.generate(i2i_request(input_url, width=512, height=512))
    finally:
        await router.aclose()

    assert result.offer_id == I2I and Decimal(str(result.cost_usd)) == THREE_MP
    assert fal_fake.billed == THREE_MP
    assert router.store.total_charged() == fal_fake.billed


async def test_a_data_uri_input_is_read_locally(settings: Settings, fal_fake: FalFake) -> None:
    uri = data_uri(tiny_png(2048, 1024))
    assert await probe_input_size(uri, settings) == (2048, 1024)

    router = Router(settings)
    try:
        result = await router.generate(i2i_request(uri))
    finally:
        await router.aclose()

    assert Decimal(str(result.cost_usd)) == THREE_MP
    assert router.store.total_charged() == fal_fake.billed == THREE_MP
    assert fal_fake.request_counts["download"] == 1  # the result image only: the input was never fetched


async def test_a_small_input_is_read_in_one_request(settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.files.add_blob("small.png", tiny_png(1600, 900), "image/png")
    assert await probe_input_size(f"{fal_fake.base_url}/files/small.png", settings) == (1600, 900)
    assert fal_fake.request_counts["download"] == 1


async def test_a_large_input_without_range_support_is_read_whole_once(
    settings: Settings, fal_fake: FalFake, input_url: str
) -> None:
    assert await probe_input_size(input_url, settings) == (2048, 1024)
    # the fake ignores Range: the header request is cut off at the budget, then the image is read whole
    assert fal_fake.request_counts["download"] == 2


class RangeServer(ThreadingHTTPServer):
    """Serves one file and honours `Range: bytes=a-b` (206), as CDNs do; records what each GET asked for."""

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.body = body
        self.ranges: list[str | None] = []
        self.sent: list[int] = []


class _RangeHandler(BaseHTTPRequestHandler):
    server: RangeServer

    def do_GET(self) -> None:
        body, wanted = self.server.body, self.headers.get("Range")
        self.server.ranges.append(wanted)
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            end = min(int(last), len(body) - 1) if last else len(body) - 1
            chunk = body[int(first) : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{end}/{len(body)}")
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)
        self.server.sent.append(len(chunk))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def jpeg_server() -> Iterator[RangeServer]:
    out = io.BytesIO()
    Image.effect_noise((3000, 2000), 64).convert("RGB").save(out, "JPEG", quality=95)
    server = RangeServer(out.getvalue())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_server_honouring_range_sends_only_the_header(settings: Settings, jpeg_server: RangeServer) -> None:
    url = f"http://127.0.0.1:{jpeg_server.server_address[1]}/photo.jpg"
    assert len(jpeg_server.body) > 10 * HEADER_BUDGET

    assert await probe_input_size(url, settings) == (3000, 2000)

    assert jpeg_server.ranges == [f"bytes=0-{HEADER_BUDGET - 1}"]
    for _ in range(100):  # the server thread records what it sent once its write returns: look again, bounded
        if jpeg_server.sent:
            break
        await asyncio.sleep(0.01)
    assert jpeg_server.sent == [HEADER_BUDGET]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("where", ["closed port", "missing file", "not an image"])
async def test_an_unreadable_input_is_refused_before_any_provider_call_or_spend(
    settings: Settings, fal_fake: FalFake, where: str
) -> None:
    fal_fake.files.add_blob("notes.txt", b"not an image" * 10, "text/plain")
    url = {
        "closed port": f"http://127.0.0.1:{closed_port()}/input.png",
        "missing file": f"{fal_fake.base_url}/files/missing.png",
        "not an image": f"{fal_fake.base_url}/files/notes.txt",
    }[where]
    router = Router(settings)
    try:
        with pytest.raises(InvalidRequest) as info:
            await router.generate(i2i_request(url))
    finally:
        await router.aclose()

    [error] = info.value.errors
    assert error.field == "init_image" and error.value == url
    assert "http(s) URL or data:image/" in error.allowed
    assert "init_image" in str(info.value)
    assert provider_calls(fal_fake) == 0 and len(fal_fake.jobs) == 0
    assert router.store.list_jobs() == [] and router.store.total_charged() == 0


async def test_an_undecodable_data_uri_is_refused(settings: Settings, fal_fake: FalFake) -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    with pytest.raises(InvalidRequest, match="init_image"):
        await Router(settings).generate(i2i_request(uri))
    assert provider_calls(fal_fake) == 0


async def test_private_addresses_stay_refused_unless_allowed(hosted_settings: Settings, input_url: str) -> None:
    router = Router(hosted_settings)  # allow_private_urls is off
    with pytest.raises(InvalidRequest, match=r"init_image: .*non-public address"):
        await router.input_size(i2i_request(input_url))


async def test_an_input_over_the_byte_limit_is_refused(settings: Settings, input_url: str) -> None:
    small_limit = settings.model_copy(update={"max_input_image_bytes": HEADER_BUDGET})
    with pytest.raises(InvalidRequest, match=r"init_image: .*larger than the 65536 byte limit"):
        await probe_input_size(input_url, small_limit)


async def test_an_input_declaring_more_pixels_than_the_cap_is_refused(settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.files.add_blob("huge.png", bomb_png(6000, 5000), "image/png")
    url = f"{fal_fake.base_url}/files/huge.png"
    with pytest.raises(InvalidRequest, match=r"init_image: .*declares 6000x5000 pixels, more than max_image_pixels"):
        await probe_input_size(url, settings)
    assert await probe_input_size(url, settings.model_copy(update={"max_image_pixels": 30_000_000})) == (6000, 5000)


async def test_no_probe_when_no_offer_in_play_follows_the_input(settings: Settings, fal_fake: FalFake) -> None:
    router = Router(settings)
    unreachable = f"http://127.0.0.1:{closed_port()}/input.png"
    # an edit that names its size, on Krea (whose output takes the size it is sent): nothing to read
    assert await router.input_size(i2i_request(unreachable, provider="krea", aspect_ratio="16:9")) is None
    assert await router.input_size(ImageRequest(prompt=PROMPT, provider="fal")) is None
    assert fal_fake.request_counts["download"] == 0


async def test_the_spend_question_uses_the_input_size(settings: Settings, input_url: str) -> None:
    library = ToolLibrary(Router(settings.model_copy(update={"confirm_above_usd": Decimal("0.05")})))
    args = {"prompt": PROMPT, "init_image": input_url, "provider": "fal", "width": 512, "height": 512}

    question = await library.spend_question(args)

    assert question is not None and question.estimate_usd == THREE_MP  # at 512x512 it would be $0.025: no question
