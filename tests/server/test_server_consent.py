"""Spend approval: elicitation where the client supports it (accepted, declined, cancelled), confirm_spend
where it does not (fail closed), and the daily amount."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mcp import Client, types
from mcp.server.mcpserver import MCPServer

from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect
from tests.server.test_server_tools import FAL, text_of


@pytest.fixture
def settings(hosted_settings: Settings) -> Settings:
    """Every call above $0.01 needs approval: a 4-image fal call ($0.10) does, a Krea one ($0.007) does not."""
    return hosted_settings.model_copy(update={"confirm_above_usd": Decimal("0.01")})


COSTLY = {"prompt": "a fox", **FAL, "num_images": 4}


def answer(action: str, approve: bool = True) -> Any:
    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        answer.asked.append(params.message)  # type: ignore[attr-defined]
        content = {"approve": approve} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return elicit


answer.asked = []  # type: ignore[attr-defined]


async def test_a_costly_call_asks_the_user_and_runs_once_they_approve(connect: Connect, fal_fake: FalFake) -> None:
    answer.asked.clear()  # type: ignore[attr-defined]
    async with connect(elicitation_callback=answer("accept")) as client:
        result = await client.call_tool("generate_image", COSTLY)

    assert not result.is_error, text_of(result)
    (question,) = answer.asked  # type: ignore[attr-defined]
    assert "$0.100" in question and "fal flux/krea" in question
    assert fal_fake.billed == Decimal("0.100")


@pytest.mark.parametrize(
    ("action", "approve", "said"),
    [("decline", True, "declined"), ("cancel", True, "cancelled"), ("accept", False, "did not approve")],
)
async def test_a_costly_call_the_user_turns_down_spends_nothing(
    connect: Connect, fal_fake: FalFake, action: str, approve: bool, said: str
) -> None:
    async with connect(elicitation_callback=answer(action, approve)) as client:
        result = await client.call_tool("generate_image", COSTLY)

    assert result.is_error and said in text_of(result)
    assert fal_fake.jobs == []


async def test_without_elicitation_a_costly_call_is_refused_until_it_carries_confirm_spend(
    connect: Connect, fal_fake: FalFake
) -> None:
    async with connect() as client:
        refused = await client.call_tool("generate_image", COSTLY)
        assert refused.is_error
        assert "confirm_spend=true" in text_of(refused) and "$0.100" in text_of(refused)
        assert fal_fake.jobs == []

        confirmed = await client.call_tool("generate_image", {**COSTLY, "confirm_spend": True})

    assert not confirmed.is_error, text_of(confirmed)
    assert fal_fake.billed == Decimal("0.100")


async def test_a_cheap_call_is_not_asked_about(connect: Connect, krea_fake: KreaFake) -> None:
    answer.asked.clear()  # type: ignore[attr-defined]
    async with connect(elicitation_callback=answer("decline")) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "krea"})

    assert not result.is_error, text_of(result)
    assert answer.asked == []  # type: ignore[attr-defined]


async def test_approval_is_needed_when_a_call_would_pass_the_daily_amount(
    hosted_settings: Settings, krea_fake: KreaFake, era: str
) -> None:
    settings = hosted_settings.model_copy(update={"confirm_daily_usd": Decimal("0.010")})
    server: MCPServer = build_server(settings, Router(settings))

    async with Client(server, mode=era) as client:  # type: ignore[arg-type]
        first = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "krea"})
        second = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "krea"})

    assert not first.is_error, text_of(first)
    assert second.is_error and "spent today" in text_of(second)
