"""What `fluxroute serve --http` trusts: Host and Origin checked on every bind (DNS rebinding), the bearer token,
and binds that would expose it refused before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fluxroute.cli import main
from fluxroute.errors import ConfigError
from fluxroute.server.http import check_bind, transport_security
from fluxroute.settings import Settings
from tests.fakes.krea import KreaFake
from tests.server.serving import serving
from tests.server.test_server_tools import text_of

TOKEN = "right-token-0123456789"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
ACCEPT = {"accept": "application/json, text/event-stream"}
GENERATE = {"prompt": "a red fox in snow", "provider": "krea"}
LOOPBACK_BINDS = ["127.0.0.1", "127.0.0.2"]  # Linux routes all of 127/8 to lo


def client_for(url: str, mode: str = "legacy", **headers: str) -> Client:
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("bind", LOOPBACK_BINDS)
async def test_a_foreign_host_or_origin_is_refused_on_every_loopback_bind(
    bind: str, hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    async with serving(hosted_settings, bind) as url, httpx.AsyncClient() as http:
        rebound = await http.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"host": "evil.example"})
        foreign_page = await http.post(
            f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"origin": "http://evil.example"}
        )
        own = await http.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT)

        assert rebound.status_code == 421
        assert foreign_page.status_code == 403
        assert own.status_code == 200 and '"result"' in own.text
        for mode in ("legacy", "auto"):
            with pytest.raises(BaseExceptionGroup):
                async with client_for(url, mode, Host="evil.example") as client:
                    await client.call_tool("generate_image", GENERATE)

    assert krea_fake.jobs == []  # no tool ran


async def test_the_bind_address_itself_works_as_host_and_generates(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    async with serving(hosted_settings, "127.0.0.2") as url, client_for(url, "auto") as client:
        result = await client.call_tool("generate_image", GENERATE)

    assert not result.is_error, text_of(result)
    assert len(krea_fake.jobs) == 1


async def test_an_allowed_host_and_its_https_origin_are_accepted(hosted_settings: Settings) -> None:
    async with (
        serving(hosted_settings, "127.0.0.2", allowed_hosts=["MCP.example.com"]) as url,
        httpx.AsyncClient() as http,
    ):
        proxied = await http.post(
            f"{url}/mcp",
            json=INITIALIZE,
            headers=ACCEPT | {"host": "mcp.example.com", "origin": "https://mcp.example.com"},
        )
        other = await http.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"host": "other.example.com"})
        local_page = await http.post(
            f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"origin": "http://localhost:6274"}
        )

    assert proxied.status_code == 200
    assert other.status_code == 421
    assert local_page.status_code == 200  # a page served from loopback (the MCP Inspector's, say)


async def test_only_the_right_bearer_token_opens_mcp(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    async with serving(hosted_settings, token=TOKEN) as url, httpx.AsyncClient() as http:
        missing = await http.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT)
        wrong = await http.post(
            f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"authorization": f"Bearer {TOKEN[:-1]}X"}
        )
        bare = await http.post(f"{url}/mcp", json=INITIALIZE, headers=ACCEPT | {"authorization": TOKEN})
        with pytest.raises(BaseExceptionGroup):
            async with client_for(url, Authorization="Bearer not-the-token") as client:
                await client.call_tool("generate_image", GENERATE)
        assert krea_fake.jobs == []

        async with client_for(url, Authorization=f"Bearer {TOKEN}") as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]

    for refused in (missing, wrong, bare):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text
    assert "generate_image" in tools


def test_every_bind_but_the_three_loopback_names_needs_allow_remote() -> None:
    for local in ("127.0.0.1", "::1", "[::1]", "localhost"):
        check_bind(local, 8000, allow_remote=False, has_token=False, insecure_no_auth=False)
    for remote in ("127.0.0.2", "0.0.0.0", "192.168.1.5", "example.com"):
        with pytest.raises(ConfigError, match="--allow-remote"):
            check_bind(remote, 8000, allow_remote=False, has_token=True, insecure_no_auth=False)


def test_a_remote_bind_without_a_token_is_refused_unless_insecure_is_said() -> None:
    with pytest.raises(ConfigError, match=r"FLUXROUTE_SERVER_TOKEN.*--insecure-no-auth"):
        check_bind("0.0.0.0", 8000, allow_remote=True, has_token=False, insecure_no_auth=False)
    check_bind("0.0.0.0", 8000, allow_remote=True, has_token=True, insecure_no_auth=False)
    check_bind("0.0.0.0", 8000, allow_remote=True, has_token=False, insecure_no_auth=True)


def test_host_checks_name_the_bind_the_loopback_names_and_the_allowed_hosts_only() -> None:
    security = transport_security("0.0.0.0", 8443, ["mcp.example.com"])

    assert security.enable_dns_rebinding_protection
    assert set(security.allowed_hosts) == {"127.0.0.1:8443", "localhost:8443", "[::1]:8443", "mcp.example.com"}
    assert "https://mcp.example.com" in security.allowed_origins
    assert not any("0.0.0.0" in origin for origin in security.allowed_origins)
    with pytest.raises(ConfigError, match=r"allowed host 'https://x\.example'"):
        transport_security("127.0.0.1", 8000, ["https://x.example"])


def test_allowed_hosts_come_from_the_environment_comma_separated() -> None:
    settings = Settings.load(
        {"FLUXROUTE_SERVER_ALLOWED_HOSTS": "mcp.example.com, proxy.example.com:8443"}, config_file=Path("/absent")
    )

    assert settings.server_allowed_hosts == ["mcp.example.com", "proxy.example.com:8443"]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FAL_KEY", "KREA_API_TOKEN", "FLUXROUTE_SERVER_TOKEN", "FLUXROUTE_SERVER_ALLOWED_HOSTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")


def refused(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 6) -> str:
    """Run `fluxroute serve --http ...`, which must exit with `code` (6: configuration; 8: cannot listen) before
    serving; its stderr."""
    exited = main(["serve", "--http", *argv])
    err = capsys.readouterr().err
    assert exited == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(capsys: pytest.CaptureFixture[str], port: str) -> None:
    assert f"--port {port} is not a TCP port" in refused(capsys, "--port", port)


@pytest.mark.usefixtures("cli_env")
def test_serve_refuses_a_busy_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])

        assert "in use" in refused(capsys, "--port", port, code=8)


@pytest.mark.usefixtures("cli_env")
def test_serve_refuses_loopback_aliases_and_unauthenticated_remote_binds(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--allow-remote" in refused(capsys, "--host", "127.0.0.2", "--port", "8765")
    assert "--insecure-no-auth" in refused(capsys, "--host", "127.0.0.2", "--allow-remote", "--port", "8765")
    assert "allowed host" in refused(capsys, "--allowed-host", "http://evil.example/", "--port", "8765")
