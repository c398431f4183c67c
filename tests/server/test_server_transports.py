"""`fluxroute serve` as users start it: over stdio (a subprocess the client launches) and over Streamable
HTTP on 127.0.0.1, each generating through the Krea fake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.client.streamable_http import streamable_http_client

from tests.fakes.krea import KreaFake
from tests.server.test_server_tools import text_of

TOKEN = "test-server-token"


def server_env(krea_fake: KreaFake, home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("FAL_KEY", "KREA_API_TOKEN") and not k.startswith("FLUXROUTE_")
    }
    return env | {
        "KREA_API_TOKEN": krea_fake.token,
        "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
        "FLUXROUTE_HOME": str(home),
        "FLUXROUTE_CONFIG": "none",
    }


async def generate_and_read_back(client: Client) -> None:
    names = [tool.name for tool in (await client.list_tools()).tools]
    assert "generate_image" in names and "get_image_job" in names

    result = await client.call_tool("generate_image", {"prompt": "a red fox in snow", "provider": "krea"})

    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["provider"] == "krea"
    (link,) = [block for block in result.content if isinstance(block, types.ResourceLink)]
    read = await client.read_resource(str(link.uri))
    assert isinstance(read.contents[0], types.BlobResourceContents)
    prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
    assert "flux-krea-dev-prompt" in prompts


async def test_stdio_server_started_by_the_client_generates_through_krea(krea_fake: KreaFake, tmp_path: Path) -> None:
    krea_fake.image_scale = 1 / 8
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "fluxroute", "serve"], env=server_env(krea_fake, tmp_path)
    )
    async with Client(params) as client:
        await generate_and_read_back(client)

    assert len(krea_fake.jobs) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(krea_fake: KreaFake, tmp_path: Path) -> Iterator[str]:
    """`fluxroute serve --http` on a free loopback port with a bearer token; yields its base URL."""
    krea_fake.image_scale = 1 / 8
    port = free_port()
    env = server_env(krea_fake, tmp_path) | {"FLUXROUTE_SERVER_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "fluxroute", "serve", "--http", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start: {process.stderr.read1().decode() if process.stderr else ''}")  # type: ignore[attr-defined]
        yield base
    finally:
        process.terminate()
        process.wait(10)


async def test_http_server_needs_its_bearer_token_and_then_generates_through_krea(
    http_server: str, krea_fake: KreaFake
) -> None:
    anonymous = httpx.post(f"{http_server}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")

    authorized = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    async with authorized, Client(streamable_http_client(f"{http_server}/mcp", http_client=authorized)) as client:
        await generate_and_read_back(client)

    assert len(krea_fake.jobs) == 1


def test_a_krea_webhook_for_a_job_nobody_waits_on_is_answered_404(http_server: str) -> None:
    response = httpx.post(f"{http_server}/webhooks/krea", json={"job_id": "not-ours", "status": "completed"})

    assert response.status_code == 404


def test_a_forged_fal_webhook_is_refused(http_server: str) -> None:
    response = httpx.post(f"{http_server}/webhooks/fal", json={"request_id": "x", "status": "OK"})

    assert response.status_code == 401


def test_serving_beyond_loopback_needs_an_explicit_flag(tmp_path: Path, krea_fake: KreaFake) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fluxroute", "serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
        env=server_env(krea_fake, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 6
    assert "--allow-remote" in result.stderr
