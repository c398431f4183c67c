"""A server that makes its own router: tools listed before it exists, one router for every caller, made in the
background once the server runs or by the first call that comes sooner, and a bad catalog refused at build."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from fluxroute.errors import ConfigError
from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Router]:
    """Every Router the server makes."""
    routers: list[Router] = []

    class Counted(Router):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            routers.append(self)

    monkeypatch.setattr("fluxroute.router.Router", Counted)
    return routers


async def test_calls_at_start_share_the_one_router_made_for_them(hosted_settings: Settings, made: list[Router]) -> None:
    server = build_server(hosted_settings)
    assert made == []  # building the server makes no router

    async with Client(server, mode="legacy") as client:  # type: ignore[arg-type]
        listed = await client.list_tools()
        calls = [
            client.call_tool("plan_image_route", {"prompt": f"a lighthouse at dusk, frame {i}", "aspect_ratio": "16:9"})
            for i in range(4)
        ]
        results = await asyncio.gather(*calls, client.call_tool("list_image_models", {}))

    assert [tool.name for tool in listed.tools][:2] == ["generate_image", "plan_image_route"]
    assert [result.is_error for result in results] == [False] * 5
    assert len(made) == 1


async def test_the_router_is_made_once_the_server_runs_without_waiting_for_a_call(
    hosted_settings: Settings, made: list[Router]
) -> None:
    async with Client(build_server(hosted_settings), mode="legacy") as client:  # type: ignore[arg-type]
        await client.list_tools()
        for _ in range(500):  # bounded: the router is made in a worker thread
            if made:
                break
            await asyncio.sleep(0.01)
        assert len(made) == 1
        assert not (await client.call_tool("list_image_models", {})).is_error

    assert len(made) == 1


def test_a_price_override_for_no_offer_stops_the_server_at_build(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path / "home", prices={"no-such-offer": Decimal("0.01")})
    with pytest.raises(ConfigError, match="no-such-offer"):
        build_server(settings)
