"""Hostile image URLs: every address form that reaches this machine or its network, credentials, other schemes
and other data: types, refused with the field named before any provider hears of the call or money is held —
through Router.generate, the plan_image_route tool (what the MCP server runs) and `fluxroute route`. And provider
result downloads: a trusted provider host that redirects elsewhere private is refused too."""

from __future__ import annotations

import base64
import io
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.cli import main
from fluxroute.errors import FluxrouteError, InvalidRequest, JobFailed
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary
from fluxroute.types import ImageRequest, StyleReference
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

PROMPT = "the same lighthouse at dawn"
BYTE_LIMIT = 2000


def png_data_uri(size: int) -> str:
    """A real PNG of about `size` bytes (noise does not compress) as a data: URI."""
    side = max(8, int((size / 3) ** 0.5))
    out = io.BytesIO()
    Image.effect_noise((side, side), 64).convert("RGB").save(out, "PNG", compress_level=0)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
# (URL, a phrase the refusal must give); "|" separates phrases of which one must appear
HOSTILE: list[tuple[str, str]] = [
    ("http://127.0.0.1/a.png", "127.0.0.1 a non-public address"),
    ("http://127.1.2.3/a.png", "127.1.2.3 a non-public address"),
    ("http://[::1]/a.png", "::1 a non-public address"),
    ("http://[::ffff:127.0.0.1]/a.png", "::ffff:127.0.0.1 resolves to ::ffff:7f00:1, a non-public address"),
    ("http://0x7f000001/a.png", "0x7f000001 resolves to 127.0.0.1"),
    ("http://2130706433/a.png", "2130706433 resolves to 127.0.0.1"),
    ("http://017700000001/a.png", "017700000001 resolves to 127.0.0.1"),
    ("http://10.0.0.1/a.png", "10.0.0.1 a non-public address"),
    ("http://172.16.0.1/a.png", "172.16.0.1 a non-public address"),
    ("http://192.168.1.1/a.png", "192.168.1.1 a non-public address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 a non-public address"),
    ("http://localhost/a.png", "localhost resolves to"),
    ("http://localhost./a.png", "localhost. resolves to|localhost. does not resolve"),
    ("http://metadata.google.internal/computeMetadata/v1/", "non-public address|does not resolve"),
    ("http://user:pass@example.com/a.png", "credentials"),
    ("http://", "has no host|http(s) URL"),
    ("ftp://example.com/a.png", "http(s)"),
    ("file:///etc/passwd", "http(s)"),
    ("javascript:alert(1)", "http(s)"),
    ("data:image/svg+xml;base64," + base64.b64encode(SVG).decode(), "image/png, image/jpeg, image/webp"),
    ("data:text/html;base64," + base64.b64encode(b"<script>alert(1)</script>").decode(), "data:image"),
    ("data:image/png," + "%89PNG", "base64"),
    ("data:image/png;base64," + base64.b64encode(b"GIF89a" + bytes(40)).decode(), "not a PNG, JPEG or WebP"),
    (png_data_uri(BYTE_LIMIT * 13 // 10), f"larger than the {BYTE_LIMIT} byte limit"),  # and under 4096 characters
]
IDS = [url[:40] for url, _ in HOSTILE]


@pytest.fixture
def settings(hosted_settings: Settings) -> Settings:
    return hosted_settings.model_copy(update={"max_input_image_bytes": BYTE_LIMIT})


@pytest.fixture
def router(settings: Settings) -> Router:
    return Router(settings)


def assert_refused(error: InvalidRequest, field: str, says: str) -> None:
    assert [e.field for e in error.errors] == [field]
    text = str(error)
    assert any(phrase in text for phrase in says.split("|")), text
    assert f"{field}: got " in text
    assert "pass@" not in text  # credentials are masked where the URL is shown


def assert_nothing_happened(router: Router, krea_fake: KreaFake, fal_fake: FalFake) -> None:
    assert sum(krea_fake.request_counts.values()) == 0 and sum(fal_fake.request_counts.values()) == 0
    summary = router.store.spend_summary()
    assert summary.reserved_today == Decimal(0) and summary.spent_total == Decimal(0)
    assert router.store.list_jobs() == []


def request_with(field: str, url: str) -> ImageRequest:
    """A request carrying `url` in `field`, built without the request model's own checks: a library caller can
    do that, and the router must refuse it all the same."""
    base = ImageRequest(prompt=PROMPT, provider="fal")
    if field == "init_image":
        return base.model_copy(update={"init_image": url})
    return base.model_copy(update={"style_references": (StyleReference.model_construct(url=url, strength=0.5),)})


@pytest.mark.parametrize(("url", "says"), HOSTILE, ids=IDS)
@pytest.mark.parametrize("field", ["init_image", "style_references.0.url"])
async def test_router_generate_refuses_hostile_urls_before_anything_is_sent_or_held(
    router: Router, krea_fake: KreaFake, fal_fake: FalFake, field: str, url: str, says: str
) -> None:
    try:
        with pytest.raises(InvalidRequest) as info:
            await router.generate(request_with(field, url))
    finally:
        await router.aclose()
    assert_refused(info.value, field, says)
    assert_nothing_happened(router, krea_fake, fal_fake)


@pytest.mark.parametrize(("url", "says"), HOSTILE, ids=IDS)
async def test_plan_image_route_refuses_hostile_urls(
    router: Router, krea_fake: KreaFake, fal_fake: FalFake, url: str, says: str
) -> None:
    library = ToolLibrary(router)
    for arguments, field in (
        ({"prompt": PROMPT, "init_image": url}, "init_image"),
        ({"prompt": PROMPT, "model": "krea-2", "style_references": [{"url": url}]}, "style_references.0.url"),
    ):
        with pytest.raises(InvalidRequest) as info:
            await library.dispatch("plan_image_route", arguments)
        assert info.value.errors[0].field == field, info.value
        if url.startswith(("http://", "https://", "data:image/")):  # the others the schema already refuses
            assert_refused(info.value, field, says)
        with pytest.raises(InvalidRequest):
            await library.dispatch("generate_image", {**arguments, "confirm_spend": True})
    assert_nothing_happened(router, krea_fake, fal_fake)


async def test_every_refused_url_of_a_request_is_named_at_once(
    router: Router, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    request = ImageRequest(
        prompt=PROMPT,
        init_image="http://10.1.2.3/a.png",
        style_references=(StyleReference(url="http://192.168.0.9/s.png"), StyleReference(url=png_data_uri(100))),
    )
    with pytest.raises(InvalidRequest) as info:
        await router.input_size(request)
    assert [e.field for e in info.value.errors] == ["init_image", "style_references.0.url"]
    assert_nothing_happened(router, krea_fake, fal_fake)


async def test_private_addresses_pass_when_allowed(settings: Settings) -> None:
    router = Router(settings.model_copy(update={"allow_private_urls": True}))
    request = ImageRequest(
        prompt=PROMPT, provider="krea", init_image="http://10.0.0.1/a.png", strength=0.5, aspect_ratio="1:1"
    )
    # checked and allowed; an edit with a size of its own, on Krea (which does not price by input size): not read
    assert await router.input_size(request) is None


def test_cli_route_refuses_hostile_urls_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    for url, _ in HOSTILE[:14]:  # the address forms; the CLI takes the same request model as the tools
        for option, field in (("--init-image", "init_image"), ("--style-ref", "style_references.0.url")):
            code = main(["route", PROMPT, option, url])
            err = capsys.readouterr().err
            assert code == 2 and f"{field}: got" in err and "Traceback" not in err, (url, err)


def listening_socket(host: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    sock.setblocking(False)
    return sock


def accepted_any(sock: socket.socket) -> bool:
    try:
        connection, _ = sock.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


@pytest.mark.parametrize("provider", ["krea", "fal"])
@pytest.mark.parametrize("target", ["other loopback address", "metadata address"])
async def test_a_result_redirected_to_a_private_address_is_refused_and_charged(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, provider: str, target: str
) -> None:
    trap = listening_socket("127.0.0.2")  # a private service a redirect might aim at
    location = {
        "other loopback address": f"http://127.0.0.2:{trap.getsockname()[1]}/admin",
        "metadata address": "http://169.254.169.254/latest/meta-data/iam/",
    }[target]
    fake = krea_fake if provider == "krea" else fal_fake
    fake.faults.redirect(location, route="download", times=10)
    router = Router(hosted_settings)  # the fakes' own hosts are trusted (they are krea_base_url/fal_base_url)
    try:
        with pytest.raises(FluxrouteError) as info:
            await router.generate(ImageRequest(prompt=PROMPT, model="flux-dev", provider=provider))  # type: ignore[arg-type]
    finally:
        await router.aclose()
        refused_before_connecting = not accepted_any(trap)
        trap.close()

    assert refused_before_connecting
    error = info.value
    assert isinstance(error, JobFailed) and error.billing == "charged", repr(error)
    assert "redirected to" in str(error) and "a non-public address" in str(error)
    assert fake.request_counts["download"] == 1  # refused at once: retrying cannot make it safe
    [job] = router.store.list_jobs()
    assert job.status == "failed"
    assert router.store.total_charged() == fake.billed > 0  # billed by the provider, and booked as such
