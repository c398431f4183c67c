"""Image fetches through the address guard: URL forms, public addresses (or trusted hosts), byte and pixel caps;
results checked whole (truncated, corrupted or malformed bytes fail typed) without decoding their pixels."""

from __future__ import annotations

import io
import warnings
import zlib

import httpx
import pytest
from PIL import Image

from fluxroute.errors import JobFailed, UnsafeURL
from fluxroute.providers.downloads import DECODE_ATTEMPTS, decode_image, read_bounded
from fluxroute.providers.image_header import MAX_PARTS
from fluxroute.providers.krea import KreaProvider
from fluxroute.providers.url_guard import AddressPolicy, check_url, guarded_client, url_problem
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.images import bomb_png
from tests.fakes.krea import KreaFake

TIMEOUT = httpx.Timeout(10.0)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http(s)"),
        ("ftp://example.com/a.png", "only http(s)"),
        ("javascript:alert(1)", "only http(s)"),
        ("http://", "has no host"),
        ("https://user:pass@example.com/a.png", "credentials"),
        ("https://token@example.com/a.png", "credentials"),
        ("http://example.com\\@127.0.0.1/a.png", "backslash"),
        ("http://example.com/a b.png", "whitespace"),
        ("http://example.com:99999/a.png", "not a well-formed URL"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused_by_their_form(url: str, why: str) -> None:
    problem = url_problem(url)
    assert problem is not None and why in problem


def test_a_plain_https_url_has_no_problem() -> None:
    assert url_problem("https://v3.fal.media/files/a.png?x=1") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://localhost:8080/a.png",
        "http://10.0.0.5/a.png",
        "http://192.168.1.1/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://0x7f000001/a.png",
    ],
)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        await check_url(url, AddressPolicy())
    await check_url(url, AddressPolicy(allow_private=True))  # what allow_private_urls = true lets through


async def image_url_on(krea_fake: KreaFake, settings: Settings) -> str:
    """A real image served by the fake on 127.0.0.1 (the result of one generation)."""
    candidate = Router(settings).plan(ImageRequest(prompt="a cat", model="flux-dev", provider="krea")).chosen
    assert candidate is not None
    provider = KreaProvider(settings)
    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert result.images[0].url is not None and result.images[0].url.startswith(krea_fake.base_url)
    return result.images[0].url


async def test_loopback_fetch_is_refused_by_default_and_allowed_by_config(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    downloads_before = krea_fake.request_counts["download"]
    async with guarded_client(AddressPolicy(), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeURL, match="non-public address"):
            await read_bounded(client, url, 10_000_000)
    assert krea_fake.request_counts["download"] == downloads_before  # refused before connecting
    async with guarded_client(AddressPolicy(allow_private=True), timeout=TIMEOUT) as client:
        data = await read_bounded(client, url, 10_000_000)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(UnsafeURL, match="byte limit"):
            await read_bounded(client, url, 100)


async def test_a_trusted_host_is_that_host_and_port_only(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    port = httpx.URL(url).port
    assert port is not None
    policy = AddressPolicy.for_results(hosted_settings)  # krea_base_url's host:port is trusted
    assert ("127.0.0.1", port) in policy.trusted
    async with guarded_client(policy, timeout=TIMEOUT) as client:
        assert (await read_bounded(client, url, 10_000_000))[:4] == b"\x89PNG"
        for other in (url.replace("127.0.0.1", "localhost"), url.replace(f":{port}", f":{port + 1}")):
            with pytest.raises(UnsafeURL, match="non-public address"):
                await read_bounded(client, other, 10_000_000)


async def test_redirects_from_a_trusted_host_are_checked_again(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    krea_fake.faults.redirect("http://169.254.169.254/latest/meta-data", route="download")
    async with guarded_client(AddressPolicy.for_results(hosted_settings), timeout=TIMEOUT) as client:
        with pytest.raises(
            UnsafeURL,
            match=r"redirected to http://169\.254\.169\.254/latest/meta-data: 169\.254\.169\.254 a non-public",
        ):
            await read_bounded(client, url, 10_000_000)


async def test_too_many_redirects_are_refused(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    krea_fake.faults.redirect(url, route="download", times=10)  # to itself, again and again
    async with guarded_client(AddressPolicy.for_results(hosted_settings), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeURL, match="more than 5 redirects"):
            await read_bounded(client, url, 10_000_000)


def test_an_image_declaring_more_pixels_than_the_cap_is_not_decoded() -> None:
    data = bomb_png(6000, 5000)  # 30 MP in a few KB
    with pytest.raises(JobFailed, match=r"declares 6000x5000 pixels, more than max_image_pixels") as info:
        decode_image(data, "https://cdn.example/r.png", provider="fal", max_pixels=25_000_000)
    assert info.value.billing == "charged"
    image = decode_image(data, "https://cdn.example/r.png", provider="fal", max_pixels=30_000_000)
    assert (image.width, image.height) == (6000, 5000)


def test_pillows_own_bomb_check_ends_in_the_typed_error() -> None:
    over_pillows_limit = bomb_png(10000, 9000)  # 90 MP: Pillow warns; where warnings are errors, it raises
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(JobFailed, match="DecompressionBombWarning"):
            decode_image(over_pillows_limit, None, provider="fal", max_pixels=10**9)
    with pytest.raises(JobFailed, match="DecompressionBombError"):  # over twice the limit it always raises
        decode_image(bomb_png(20000, 20000), None, provider="fal", max_pixels=10**9)


def test_an_image_within_the_cap_decodes() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 32), "red").save(out, "PNG")
    image = decode_image(out.getvalue(), None, provider="krea", max_pixels=64 * 32)
    assert (image.width, image.height, image.content_type) == (64, 32, "image/png")


def encoded(fmt: str, size: tuple[int, int] = (48, 32), mode: str = "RGB", **options: object) -> bytes:
    """A noisy image (so the compressed data is not trivial) in `fmt`, as Pillow writes it."""
    image = Image.effect_noise(size, 64).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (24, 16), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    return out.getvalue()


WHOLE = {
    "png": (lambda: encoded("PNG"), "image/png"),
    "png palette": (lambda: encoded("PNG", mode="P"), "image/png"),
    "png 16-bit grey": (lambda: encoded("PNG", mode="I;16"), "image/png"),
    "jpeg": (lambda: encoded("JPEG", quality=90), "image/jpeg"),
    "jpeg progressive": (lambda: encoded("JPEG", progressive=True), "image/jpeg"),
    "jpeg restart markers": (lambda: encoded("JPEG", restart_marker_blocks=1), "image/jpeg"),
    "jpeg grey": (lambda: encoded("JPEG", mode="L"), "image/jpeg"),
    "webp lossy": (lambda: encoded("WEBP"), "image/webp"),
    "webp lossless": (lambda: encoded("WEBP", lossless=True), "image/webp"),
    "webp with alpha (VP8X)": (lambda: encoded("WEBP", mode="RGBA"), "image/webp"),
    "webp animated": (lambda: animated_webp(), "image/webp"),
    "gif (decoded by Pillow)": (lambda: encoded("GIF"), "image/gif"),
}


@pytest.mark.parametrize("kind", WHOLE)
def test_whole_images_are_accepted_with_their_size_and_type(kind: str) -> None:
    make, content_type = WHOLE[kind]
    data = make()
    image = decode_image(data, None, provider="fal", max_pixels=10**6)
    with Image.open(io.BytesIO(data)) as reference:
        assert (image.width, image.height) == reference.size
    assert image.content_type == content_type and image.data is data


def unreadable(data: bytes, match: str) -> JobFailed:
    with pytest.raises(JobFailed, match=match) as info:
        decode_image(data, "https://cdn.example/r.png", provider="krea", max_pixels=10**6)
    assert info.value.billing == "charged"  # the provider finished and billed the job
    assert info.value.retryable  # a damaged body may be the CDN's fault this once: read it again
    return info.value


def png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, total length) of each chunk."""
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((pos, data[pos + 4 : pos + 8], 12 + length))
        pos += 12 + length
    return chunks


def test_a_png_with_a_flipped_byte_in_its_image_data_fails_its_crc() -> None:
    data = bytearray(encoded("PNG"))
    offset, _, length = next(chunk for chunk in png_chunks(bytes(data)) if chunk[1] == b"IDAT")
    data[offset + 8 + (length - 12) // 2] ^= 0x01  # one bit, in the middle of the compressed pixels
    unreadable(bytes(data), r"cannot be read \(DamagedImage: the PNG's IDAT chunk at byte \d+ fails its CRC\)")


def test_a_png_without_iend_is_refused() -> None:
    data = encoded("PNG")
    offset, kind, _ = png_chunks(data)[-1]
    assert kind == b"IEND"
    unreadable(data[:offset], f"the PNG ends at byte {offset} without IEND")


def test_bytes_after_a_pngs_iend_are_refused() -> None:
    unreadable(encoded("PNG") + b"\x00", "1 bytes follow the PNG's IEND")


def test_a_jpeg_cut_before_its_eoi_is_refused() -> None:
    data = encoded("JPEG")
    assert data.endswith(b"\xff\xd9")
    unreadable(data[:-2], "the JPEG ends before its EOI marker")
    unreadable(data[: len(data) * 2 // 3], "the JPEG ends before its EOI marker")


def test_bytes_after_a_jpegs_eoi_are_refused_even_zero_padding() -> None:
    unreadable(encoded("JPEG") + b"\x00\x00", "2 bytes follow the JPEG's EOI marker")


def test_a_webp_whose_riff_length_is_not_its_bodys_is_refused() -> None:
    data = bytearray(encoded("WEBP"))
    declared = int.from_bytes(data[4:8], "little")
    data[4:8] = (declared + 2).to_bytes(4, "little")
    unreadable(bytes(data), f"the WebP's RIFF header declares {declared + 10} bytes, the body has {len(data)}")


def test_a_webp_whose_frame_chunk_runs_past_the_end_is_refused() -> None:
    data = bytearray(encoded("WEBP"))
    assert data[12:16] == b"VP8 "
    data[16:20] = (int.from_bytes(data[16:20], "little") + 2).to_bytes(4, "little")  # RIFF length left right
    unreadable(bytes(data), "chunk at byte 12 runs past the end")


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp lossy", "webp lossless", "webp animated"])
def test_no_cut_of_a_whole_image_passes(kind: str) -> None:
    data = WHOLE[kind][0]()
    for end in range(len(data) - 1, 0, -1):
        with pytest.raises(JobFailed, match="cannot be read"):
            decode_image(data[:end], None, provider="fal", max_pixels=10**6)


def test_no_flipped_byte_anywhere_in_a_png_passes() -> None:
    data = encoded("PNG", size=(12, 8))
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        with pytest.raises(JobFailed, match="cannot be read"):
            decode_image(bytes(damaged), None, provider="fal", max_pixels=10**6)


def test_a_png_of_endless_empty_chunks_is_refused_at_the_bound() -> None:
    data = encoded("PNG")
    empty = b"\x00\x00\x00\x00teXt" + zlib.crc32(b"teXt").to_bytes(4, "big")
    padded = data[:33] + empty * (MAX_PARTS + 1) + data[33:]  # after IHDR: ancillary chunks, each one whole
    unreadable(padded, f"the PNG holds more than {MAX_PARTS} chunks")
    decode_image(data[:33] + empty * 1000 + data[33:], None, provider="fal", max_pixels=10**6)  # a few are fine


def test_the_declared_size_is_held_against_the_cap_before_the_body_is_checked() -> None:
    data = bytearray(encoded("JPEG", size=(64, 48)))
    with pytest.raises(JobFailed, match=r"declares 64x48 pixels, more than max_image_pixels \(3000\)") as info:
        decode_image(bytes(data[:-2]), None, provider="fal", max_pixels=3000)  # truncated too: the size decides
    assert not info.value.retryable  # what an image declares, it declares every time


async def test_a_damaged_download_is_read_again_and_then_saved(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    damaged = bytearray(encoded("PNG"))
    damaged[-20] ^= 0x01
    krea_fake.faults.garble(route="download", body=bytes(damaged), times=1)
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a cat", model="flux-dev", provider="krea"))
    finally:
        await router.aclose()
    assert krea_fake.request_counts["download"] == 2
    with Image.open(str(result.images[0].path)) as saved:
        assert saved.size == (result.images[0].width, result.images[0].height)


async def test_a_download_damaged_every_time_fails_charged(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.faults.garble(route="download", body=encoded("JPEG")[:-2], times=DECODE_ATTEMPTS)
    router = Router(hosted_settings)
    try:
        with pytest.raises(JobFailed, match="the JPEG ends before its EOI marker") as info:
            await router.generate(ImageRequest(prompt="a cat", model="flux-dev", provider="krea"))
    finally:
        await router.aclose()
    assert info.value.billing == "charged" and not info.value.retryable
    assert krea_fake.request_counts["download"] == DECODE_ATTEMPTS
    [job] = router.store.list_jobs()
    assert job.status == "failed"
    assert router.store.total_charged() == krea_fake.billed > 0
