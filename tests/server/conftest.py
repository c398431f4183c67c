"""An MCP server over the provider fakes, and SDK clients for it in both protocol eras."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings

# "legacy": the initialize handshake (<= 2025-11-25); "auto": 2026-07-28, no session, input_required rounds
ERAS = ["legacy", "auto"]

Connect = Callable[..., Any]


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(hosted_settings: Settings) -> Settings:
    return hosted_settings


@pytest.fixture
def server(settings: Settings) -> MCPServer:
    return build_server(settings, Router(settings))


@pytest.fixture
def connect(server: MCPServer, era: str) -> Connect:
    """`async with connect(**client_options) as client`: an in-memory SDK client in this test's era."""

    @asynccontextmanager
    async def open_client(**options: Any) -> AsyncIterator[Client]:
        async with Client(server, mode=era, **options) as client:  # type: ignore[arg-type]
            yield client

    return open_client
