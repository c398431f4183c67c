"""The 401 `fluxroute serve --http` answers on /mcp without the right bearer token: RFC 6750's challenge with
`error="invalid_token"` and a sentence saying whether the token was missing or wrong (what a client such as Claude
Code shows for a rejected Authorization header), the same in a JSON body, and the right token opening /mcp."""

from __future__ import annotations

import re

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fluxroute.server.http import NO_TOKEN, WRONG_TOKEN
from fluxroute.settings import Settings
from tests.server.serving import serving

TOKEN = "right-token-0123456789"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
ACCEPT = {"accept": "application/json, text/event-stream"}
# auth-param = token "=" quoted-string (RFC 7235); error_description's characters exclude '"' and '\' (RFC 6750)
CHALLENGE = re.compile(r'Bearer ((?:[a-z_]+="[\x20\x21\x23-\x5B\x5D-\x7E]*"(?:, )?)+)')


def challenge(response: httpx.Response) -> dict[str, str]:
    """The auth-params of the response's Bearer challenge; the whole header must parse."""
    match = CHALLENGE.fullmatch(response.headers["www-authenticate"])
    assert match, response.headers["www-authenticate"]
    return dict(re.findall(r'([a-z_]+)="([^"]*)"', match.group(1)))


@pytest.mark.parametrize(
    ("authorization", "description"),
    [
        (None, NO_TOKEN),
        (f"Bearer {TOKEN[:-1]}X", WRONG_TOKEN),
        (f"Bearer {TOKEN}-and-more", WRONG_TOKEN),
        (TOKEN, NO_TOKEN),  # the token without its scheme
        (f"Basic {TOKEN}", NO_TOKEN),
        ("Bearer", NO_TOKEN),  # the scheme without a token
    ],
)
async def test_a_missing_or_wrong_token_gets_a_401_that_says_which(
    hosted_settings: Settings, authorization: str | None, description: str
) -> None:
    headers = ACCEPT | ({"authorization": authorization} if authorization else {})
    async with serving(hosted_settings, token=TOKEN) as url, httpx.AsyncClient() as http:
        refused = await http.post(f"{url}/mcp", json=INITIALIZE, headers=headers)

    assert refused.status_code == 401
    assert challenge(refused) == {"realm": "fluxroute", "error": "invalid_token", "error_description": description}
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {"error": "invalid_token", "error_description": description}
    assert TOKEN not in refused.text and TOKEN not in refused.headers["www-authenticate"]


def test_the_two_sentences_name_the_variable_and_say_missing_or_wrong() -> None:
    assert NO_TOKEN.startswith("no bearer token") and WRONG_TOKEN.startswith("wrong bearer token")
    for sentence in (NO_TOKEN, WRONG_TOKEN):
        assert "FLUXROUTE_SERVER_TOKEN" in sentence and "OAuth" in sentence


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_the_right_token_opens_mcp_in_both_eras(hosted_settings: Settings, mode: str, scheme: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=30)
    async with (
        serving(hosted_settings, token=TOKEN) as url,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        tools = [tool.name for tool in (await client.list_tools()).tools]

    assert "generate_image" in tools


async def test_the_sdk_client_with_a_wrong_token_is_refused(hosted_settings: Settings) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer not-the-token"}, timeout=30)
    async with serving(hosted_settings, token=TOKEN) as url:
        with pytest.raises(BaseExceptionGroup):
            async with Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as client:  # type: ignore[arg-type]
                await client.list_tools()


async def test_health_and_webhooks_stay_outside_the_token(hosted_settings: Settings) -> None:
    async with serving(hosted_settings, token=TOKEN) as url, httpx.AsyncClient() as http:
        health = await http.get(f"{url}/health")

    assert health.status_code == 200 and health.json() == {"ok": True}
