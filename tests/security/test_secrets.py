"""Provider answers that echo our credentials never reach an error, a record, a result, a log or a file.

Each case arms a fake to echo the Krea token, the fal key or one of its halves (at submit, status, result,
download, in a failed job's reason or a runner log line); the call then runs through the library, the CLI
and the MCP server, and everything a user or a later reader could see is searched for every secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mcp import Client, types

from fluxroute.cli import main
from fluxroute.errors import FluxrouteError
from fluxroute.providers.base import Progress
from fluxroute.providers.fal import FalProvider
from fluxroute.redact import REDACTED, header_secrets, redact, secret_values, settings_secrets
from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.faults import Fault
from tests.fakes.krea import KreaFake

# shaped like the real ones: a Krea API token; a fal key `<key id (uuid)>:<key secret (hex)>`
KREA_TOKEN = "krea_sk_7Hq2Wm9Zx4Lp8Rt3Vb6N"
FAL_KEY_ID = "5b1f0c2e-7d4a-4e8b-9c3f-1a2b3c4d5e6f"
FAL_KEY_SECRET = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"
FAL_KEY = f"{FAL_KEY_ID}:{FAL_KEY_SECRET}"
SERVER_TOKEN = "srv_tok_4Kp9Qw2Er7Ty1Ui3"
SECRETS = (KREA_TOKEN, FAL_KEY, FAL_KEY_ID, FAL_KEY_SECRET, SERVER_TOKEN)

MODEL = {"krea": "flux-dev", "fal": "flux-krea-dev"}


def leaks(text: str | bytes) -> list[str]:
    """The secrets found in `text`."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [secret for secret in SECRETS if secret.encode() in data]


def files_leaks(home: Path) -> dict[str, list[str]]:
    """Every file under `home` (the SQLite database with its -wal and -shm, images, previews) that holds a secret."""
    found = {str(path): leaks(path.read_bytes()) for path in home.rglob("*") if path.is_file()}
    return {path: secrets for path, secrets in found.items() if secrets}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record fluxroute and its libraries logged, formatted with its traceback (the fakes' own logs,
    which see the credentials they are sent, are not ours)."""
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(
        formatter.format(record) for record in caplog.records if not record.name.startswith(("tests.", "uvicorn"))
    )


# --- the fakes, holding our distinctive secrets ------------------------------------------------------


@pytest.fixture(scope="module")
def krea_server() -> Iterator[KreaFake]:
    with KreaFake(token=KREA_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def fal_server() -> Iterator[FalFake]:
    with FalFake(key=FAL_KEY) as fake:
        yield fake


@pytest.fixture
def krea(krea_server: KreaFake) -> Iterator[KreaFake]:
    krea_server.reset()
    krea_server.image_scale = 1 / 8
    yield krea_server
    krea_server.reset()


@pytest.fixture
def fal(fal_server: FalFake) -> Iterator[FalFake]:
    fal_server.reset()
    fal_server.image_scale = 1 / 8
    yield fal_server
    fal_server.reset()


@pytest.fixture
def settings(tmp_path: Path, krea: KreaFake, fal: FalFake) -> Settings:
    return Settings(
        home=tmp_path / "home",
        krea_api_token=KREA_TOKEN,
        fal_key=FAL_KEY,
        server_token=SERVER_TOKEN,
        krea_base_url=krea.base_url,
        fal_base_url=fal.base_url,
        provider_timeout_s=20,
        retry_backoff_s=0.02,
        reconcile_delay_s=0.05,
        cancel_settle_s=2.0,
    )


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# --- where the providers echo a secret ---------------------------------------------------------------


@dataclass(frozen=True)
class Echo:
    """A provider answer carrying a secret: `arm` sets it up on the fakes and returns the armed fault."""

    provider: str
    arm: Callable[[KreaFake, FalFake], Fault]


KREA_ERROR = {"error": f"invalid token {KREA_TOKEN}"}
FAL_ERROR = {"detail": f"bad key {FAL_KEY}"}
FAL_HALVES = {"detail": f"unknown key id {FAL_KEY_ID}; secret {FAL_KEY_SECRET} does not match"}
FAL_LOG = {
    "status": "IN_PROGRESS",
    "logs": [{"message": f"runner got Authorization: Key {FAL_KEY}", "level": "INFO", "source": "USER"}],
}

ECHOES = {
    "krea-submit-400": Echo("krea", lambda k, f: k.faults.http_error(400, KREA_ERROR, route="create")),
    "krea-submit-401": Echo("krea", lambda k, f: k.faults.http_error(401, KREA_ERROR, route="create")),
    "krea-submit-500": Echo("krea", lambda k, f: k.faults.http_error(500, KREA_ERROR, route="create")),
    "krea-submit-garbled": Echo(
        "krea", lambda k, f: k.faults.garble(route="create", body=f"token {KREA_TOKEN} rejected".encode())
    ),
    "krea-status-400": Echo("krea", lambda k, f: k.faults.http_error(400, KREA_ERROR, route="get_job")),
    "krea-status-500": Echo("krea", lambda k, f: k.faults.http_error(500, KREA_ERROR, route="get_job")),
    "krea-job-failed": Echo("krea", lambda k, f: k.faults.fail_job(f"invalid token {KREA_TOKEN}")),
    "krea-download-500": Echo("krea", lambda k, f: k.faults.http_error(500, KREA_ERROR, route="download")),
    "krea-download-404": Echo("krea", lambda k, f: k.faults.http_error(404, KREA_ERROR, route="download")),
    "fal-submit-422": Echo("fal", lambda k, f: f.faults.http_error(422, FAL_ERROR, route="submit")),
    "fal-submit-401-halves": Echo("fal", lambda k, f: f.faults.http_error(401, FAL_HALVES, route="submit")),
    "fal-submit-500": Echo("fal", lambda k, f: f.faults.http_error(500, FAL_ERROR, route="submit")),
    "fal-status-422": Echo("fal", lambda k, f: f.faults.http_error(422, FAL_ERROR, route="status")),
    "fal-status-500-halves": Echo("fal", lambda k, f: f.faults.http_error(500, FAL_HALVES, route="status")),
    "fal-result-422": Echo("fal", lambda k, f: f.faults.http_error(422, FAL_ERROR, route="result")),
    "fal-job-failed": Echo("fal", lambda k, f: f.faults.fail_job(f"bad key {FAL_KEY}", status_code=422)),
    "fal-runner-log": Echo("fal", lambda k, f: f.faults.http_error(202, FAL_LOG, route="status")),
    "fal-download-500": Echo("fal", lambda k, f: f.faults.http_error(500, FAL_ERROR, route="download")),
}


def arm(case: str, krea: KreaFake, fal: FalFake) -> tuple[Echo, Fault]:
    echo = ECHOES[case]
    return echo, echo.arm(krea, fal)


@pytest.mark.parametrize("case", ECHOES)
async def test_an_echoed_secret_reaches_no_error_record_progress_or_file_through_the_library(
    case: str, settings: Settings, krea: KreaFake, fal: FalFake, caplog_all: pytest.LogCaptureFixture
) -> None:
    echo, fault = arm(case, krea, fal)
    router = Router(settings)
    seen: list[str] = []

    async def progress(event: Progress) -> None:
        seen.append(repr(event))

    try:
        result = await router.generate(
            ImageRequest(prompt="a lighthouse", provider=echo.provider, model=MODEL[echo.provider]), progress
        )
        seen.append(result.model_dump_json())
    except FluxrouteError as exc:
        seen.append(f"{exc!r} {exc}")
    records = [
        *router.store.list_jobs(),
        *(a for j in router.store.list_jobs() for a in router.store.attempts_for(j.id)),
    ]
    seen.extend(repr(record) for record in records)
    await router.aclose()

    assert fault.hits >= 1, "the fake never echoed the secret"
    assert leaks("\n".join(seen)) == []
    assert leaks(logged(caplog_all)) == []
    assert files_leaks(settings.home) == {}


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "fluxroute.toml"  # no secrets in it: those come from the environment
    config.write_text("provider_timeout_s = 20\nretry_backoff_s = 0.02\nreconcile_delay_s = 0.05\n")
    monkeypatch.setenv("FLUXROUTE_CONFIG", str(config))
    monkeypatch.setenv("FLUXROUTE_HOME", str(settings.home))
    monkeypatch.setenv("KREA_API_TOKEN", KREA_TOKEN)
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    monkeypatch.setenv("FLUXROUTE_SERVER_TOKEN", SERVER_TOKEN)
    monkeypatch.setenv("FLUXROUTE_KREA_BASE_URL", settings.krea_base_url)
    monkeypatch.setenv("FLUXROUTE_FAL_BASE_URL", settings.fal_base_url)
    return settings.home


@pytest.mark.parametrize("case", ECHOES)
def test_an_echoed_secret_reaches_no_output_listing_or_file_through_the_cli(
    case: str,
    cli_env: Path,
    krea: KreaFake,
    fal: FalFake,
    capsys: pytest.CaptureFixture[str],
    caplog_all: pytest.LogCaptureFixture,
) -> None:
    echo, fault = arm(case, krea, fal)

    main(["generate", "a lighthouse", "--provider", echo.provider, "--model", MODEL[echo.provider], "--json"])
    generated = capsys.readouterr()
    assert main(["jobs", "--json"]) == 0
    listed = capsys.readouterr()
    assert main(["jobs"]) == 0
    table = capsys.readouterr()

    assert fault.hits >= 1, "the fake never echoed the secret"
    assert json.loads(listed.out), "the job is listed"
    for output in (generated, listed, table):
        assert leaks(output.out) == [] and leaks(output.err) == []
    assert leaks(logged(caplog_all)) == []
    assert files_leaks(cli_env) == {}


def text_of(result: types.CallToolResult) -> str:
    blocks = [block.text for block in result.content if isinstance(block, types.TextContent)]
    return "\n".join([*blocks, json.dumps(result.structured_content)])


@pytest.mark.parametrize("case", ECHOES)
async def test_an_echoed_secret_reaches_no_tool_result_resource_or_file_through_the_mcp_server(
    case: str, settings: Settings, krea: KreaFake, fal: FalFake, caplog_all: pytest.LogCaptureFixture
) -> None:
    echo, fault = arm(case, krea, fal)
    router = Router(settings)
    notes: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(str(message))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        notes.append(json.dumps(params.data, default=str))

    async with Client(build_server(settings, router), mode="legacy", logging_callback=on_log) as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a lighthouse", "provider": echo.provider, "model": MODEL[echo.provider]},
            progress_callback=on_progress,
        )
        recent = (await client.read_resource("fluxroute://jobs")).contents[0]
        assert isinstance(recent, types.TextResourceContents)
        [job] = json.loads(recent.text)["jobs"]
        detail = (await client.read_resource(f"fluxroute://jobs/{job['job_id']}")).contents[0]
        assert isinstance(detail, types.TextResourceContents)
    await router.aclose()

    assert fault.hits >= 1, "the fake never echoed the secret"
    assert leaks(text_of(result)) == []
    assert leaks(recent.text) == [] and leaks(detail.text) == []
    assert leaks("\n".join(notes)) == []
    assert leaks(logged(caplog_all)) == []
    assert files_leaks(settings.home) == {}


# --- a transport error that quotes the request's Authorization header ---------------------------------


class QuotingTransport(httpx.AsyncBaseTransport):
    """A real transport to the fake, except that `method` requests to paths ending in `suffix` fail with an
    error quoting the request's Authorization header (as a proxy or a debugging layer might)."""

    def __init__(self, method: str, suffix: str, error: type[httpx.HTTPError]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.method = method
        self.suffix = suffix
        self.error = error
        self.raised = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == self.method and request.url.path.endswith(self.suffix):
            self.raised += 1
            header = request.headers["authorization"]
            raise self.error(f"refused {request.url.path} (Authorization: {header})", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(
    ("method", "suffix", "error"),
    [
        ("POST", "", httpx.ConnectError),  # the submission cannot connect
        ("POST", "", httpx.DecodingError),  # the submission's answer cannot be decoded
        ("GET", "/status", httpx.DecodingError),  # not a transport error: nothing in fluxroute expects it
    ],
)
async def test_a_transport_error_quoting_the_authorization_header_leaks_nothing(
    settings: Settings,
    fal: FalFake,
    method: str,
    suffix: str,
    error: type[httpx.HTTPError],
    caplog_all: pytest.LogCaptureFixture,
) -> None:
    transport = QuotingTransport(method, suffix, error)
    client = httpx.AsyncClient(headers={"Authorization": f"Key {FAL_KEY}"}, transport=transport)
    router = Router(settings, providers={"fal": FalProvider(settings, client=client)})

    with pytest.raises(FluxrouteError) as caught:
        await router.generate(ImageRequest(prompt="a lighthouse", provider="fal", model="flux-krea-dev"))
    records = [*router.store.list_jobs(), *router.store.attempts_for(router.store.list_jobs()[0].id)]
    await router.aclose()

    assert transport.raised >= 1
    assert leaks(str(caught.value)) == []
    assert leaks("\n".join(repr(record) for record in records)) == []
    assert leaks(logged(caplog_all)) == []
    assert files_leaks(settings.home) == {}


# --- the redaction itself ------------------------------------------------------------------------------


def test_every_secret_setting_is_redacted_with_its_halves_and_encodings(settings: Settings) -> None:
    secrets = settings_secrets(settings)
    text = f"{KREA_TOKEN} / {FAL_KEY} / id {FAL_KEY_ID} / {FAL_KEY_SECRET} / {SERVER_TOKEN} / {FAL_KEY_ID}%3A"

    assert leaks(redact(text, secrets)) == []
    assert leaks(redact(f"?key={FAL_KEY.replace(':', '%3A')}", secrets)) == []


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Key 1b2c3d4e-aaaa:ffff0000",
        '{"authorization": "Bearer abcdefgh"}',
        "{'Proxy-Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}",
        "sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "token=abc123def456&x=1",
        "api_key: 0a1b2c3d4e5f6a7b",
    ],
)
def test_anything_shaped_like_a_credential_is_redacted_without_knowing_it(text: str) -> None:
    redacted = redact(text)

    assert REDACTED in redacted
    assert not any(part in redacted for part in ("1b2c3d4e", "abcdefgh", "dXNlcjpw", "eyJhbGciOi", "abc123", "0a1b2c"))


@pytest.mark.parametrize(
    "text",
    [
        "no key configured for fal",
        "basic usage: prompt first",
        "token limit 77 exceeded",
        "Key 'prompt' is required",
        "Bearer token missing",
    ],
)
def test_prose_that_merely_names_keys_and_tokens_is_left_as_it_is(text: str) -> None:
    assert redact(text) == text


def test_halves_of_a_key_are_redacted_on_their_own_unless_too_short_to_be_secret() -> None:
    assert set(secret_values("abc:0f9e8d7c6b5a4938")) == {
        "abc:0f9e8d7c6b5a4938",
        "abc%3A0f9e8d7c6b5a4938",
        "0f9e8d7c6b5a4938",
    }


def test_a_provider_without_a_key_redacts_no_scheme_word() -> None:
    assert header_secrets({"Authorization": "Bearer "}) == ()
    assert redact("Bearer token missing", header_secrets({"Authorization": "Key "})) == "Bearer token missing"
