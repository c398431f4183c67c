"""Fuzzed tool calls, derived from the exported tool schemas (so they follow any later schema change), over the
in-memory MCP client and over raw stdio JSON-RPC lines to `fluxroute serve`.

Every case is a valid call with exactly one thing broken — a wrong type, a bound crossed, a string too long or
empty, a choice not offered, a pattern broken, an unknown field, a required field left out, control or
invisible characters, a bad style reference; over stdio also NaN / Infinity / 1e400 and broken JSON-RPC. Each
must be refused with the field it broke named, with no traceback text anywhere, and without a single request
reaching a provider (counted at the fakes). A few valid calls run too, so the counters are seen to move.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

SEED = 20261201
IN_MEMORY_CASES = 1000
STDIO_CASES = 300
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages")
# strings some fields must read as text a model can use (the others carry ids, URLs, choices)
TEXT_FIELDS = {"prompt", "negative_prompt", "style"}
KNOWN_GOOD = {"size": "16:9", "model": "flux-dev", "init_image": "https://images.example.com/a.png"}


@dataclass(frozen=True)
class Case:
    tool: str
    arguments: Any  # usually a dict; the JSON-RPC cases send other shapes
    field: str  # the field the refusal must name
    how: str  # what was broken, for the failure message


def tool_schemas() -> dict[str, dict[str, Any]]:
    return {tool["name"]: tool["inputSchema"] for tool in export("mcp")}


def good_value(name: str, schema: dict[str, Any]) -> Any:
    if name in KNOWN_GOOD:
        return KNOWN_GOOD[name]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        return "a lighthouse at dusk"[: schema.get("maxLength", 64)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return (low + schema.get("maximum", low + 2)) / 2
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return {}


def minimal_call(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    return {name: good_value(name, properties[name]) for name in schema.get("required", [])}


def breakages(name: str, schema: dict[str, Any], rng: random.Random) -> Iterator[tuple[Any, str]]:
    """(a bad value, what is wrong with it) for one property, as its schema says."""
    kind = schema.get("type")
    if isinstance(kind, list):  # nullable: null is a value it takes
        kind = next(k for k in kind if k != "null")
    others: dict[str, Any] = {"string": 7, "integer": "seven", "number": "7.5", "boolean": "yes", "array": {"a": 1}}
    yield others.get(kind, [1, 2]) if kind else 12345, "wrong type"
    yield {"nested": [name]}, "an object"
    if "enum" in schema:
        yield "not-one-of-them", "not a choice"
    if kind in ("integer", "number"):
        if "minimum" in schema:
            yield schema["minimum"] - rng.choice([1, 10, 10**6]), "below minimum"
        if "exclusiveMinimum" in schema:
            yield schema["exclusiveMinimum"], "at the exclusive minimum"
        if "maximum" in schema:
            yield schema["maximum"] + rng.choice([1, 1000, 10**12]), "above maximum"
        if kind == "integer":
            yield 2.5, "a fraction"
    if kind == "string":
        if "maxLength" in schema:
            yield "x" * (schema["maxLength"] + rng.choice([1, 100])), "too long"
        if schema.get("minLength", 0) >= 1:
            yield "", "empty"
        if "pattern" in schema:
            yield rng.choice(["x y!", "a\nb", " ", "\u00e9 \u00e9"]), "pattern broken"  # no pattern here takes a space
        if name in TEXT_FIELDS:
            yield rng.choice(["a\x00b", "\x07", "lighthouse\x1b[31m"]), "control characters"
            yield rng.choice(["\u200b", "\u200b\u200d\ufeff", "   \t\n "]), "nothing visible"
    if kind == "array" and isinstance(schema.get("items"), dict):
        item = schema["items"]
        if "maxItems" in schema:
            yield [good_value("url", {"type": "string"})] * (schema["maxItems"] + 1), "too many items"
        if item.get("type") == "object":
            yield [{"strength": 0.5}], "an item without its required field"
            yield [{"url": "https://images.example.com/a.png", "strength": rng.choice([-1, 2, "strong"])}], "bad item"
            yield [{"url": "https://images.example.com/a.png", "extra": 1}], "unknown field in an item"
            yield ["https://images.example.com/a.png"], "an item of the wrong type"


def cases(rng: random.Random, count: int) -> list[Case]:
    out: list[Case] = []
    schemas = tool_schemas()
    while len(out) < count:
        for tool, schema in schemas.items():
            base = minimal_call(schema)
            properties: dict[str, Any] = schema.get("properties", {})
            for name, prop in properties.items():
                for value, how in breakages(name, prop, rng):
                    out.append(Case(tool, {**base, name: value}, name, how))
            unknown = rng.choice(["promt", "Width", "api_key", "__proto__", "size"])
            out.append(Case(tool, {**base, unknown: 1}, unknown, "unknown field"))
            for name in schema.get("required", []):
                out.append(Case(tool, {k: v for k, v in base.items() if k != name}, name, "required field missing"))
    rng.shuffle(out)
    return out


def provider_requests(krea: KreaFake, fal: FalFake) -> int:
    return sum(krea.request_counts.values()) + sum(fal.request_counts.values())


def check_refusal(case: Case, text: str) -> None:
    assert not any(mark in text for mark in TRACEBACK_MARKS), f"{case}: traceback text: {text[:500]}"
    assert case.field in text, f"{case.how} in {case.field!r} of {case.tool}: refusal does not name it: {text[:300]}"


@pytest.fixture
def router(hosted_settings: Settings) -> Router:
    return Router(hosted_settings)


@pytest.fixture
def server(hosted_settings: Settings, router: Router) -> MCPServer:
    return build_server(hosted_settings, router)


async def test_a_thousand_fuzzed_calls_over_the_sdk_client_are_refused_by_field_and_reach_no_provider(
    server: MCPServer, router: Router, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    rng = random.Random(SEED)
    fuzzed = cases(rng, IN_MEMORY_CASES)
    assert len(fuzzed) >= IN_MEMORY_CASES
    kinds: Counter[str] = Counter()
    async with Client(server, mode="legacy") as client:  # type: ignore[arg-type]
        # valid calls move the counters, so a refusal that reached a provider would be seen
        before = provider_requests(krea_fake, fal_fake)
        valid = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk", "model": "flux-dev"})
        assert not valid.is_error and provider_requests(krea_fake, fal_fake) > before

        for case in fuzzed:
            before = provider_requests(krea_fake, fal_fake)
            result = await client.call_tool(case.tool, case.arguments)
            text = "\n".join(getattr(block, "text", "") for block in result.content)
            assert result.is_error, f"{case}: accepted: {text[:300]}"
            check_refusal(case, text)
            assert provider_requests(krea_fake, fal_fake) == before, f"{case}: reached a provider"
            kinds[case.how] += 1
    summary = router.store.spend_summary()  # only the valid call was charged; refusals reserved nothing
    assert summary.charges == 1 and summary.reserved_today == 0 and summary.at_risk_today == 0
    print(f"{len(fuzzed)} fuzzed calls over the SDK client, all refused by field: {dict(kinds)}")


class StdioServer:
    """`fluxroute serve` over stdio, spoken to in raw JSON-RPC lines (any bytes, not only what an SDK sends)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fluxroute", "serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.next_id = 0

    def _drain(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def request(self, method: str, params: Any, raw_params: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        params_text = raw_params if raw_params is not None else json.dumps(params)
        self.send(f'{{"jsonrpc": "2.0", "id": {self.next_id}, "method": "{method}", "params": {params_text}}}')
        return self.answer(self.next_id)

    def answer(self, want: int | None) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, f"the server closed stdout; stderr: {''.join(self.stderr)[-2000:]}"
            message: dict[str, Any] = json.loads(line)
            if "id" in message and (want is None or message["id"] == want):
                return message

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def stdio_cases(rng: random.Random) -> Iterator[tuple[Case, str]]:
    """(case, the `arguments` JSON text as sent): schema cases, then non-finite and out-of-range numbers that
    only raw JSON can carry."""
    for case in cases(rng, STDIO_CASES - 60):
        yield case, json.dumps(case.arguments)
    schemas = tool_schemas()
    numeric = [
        (tool, name)
        for tool, schema in schemas.items()
        for name, prop in schema.get("properties", {}).items()
        if prop.get("type") in ("number", "integer")
    ]
    for i in range(60):
        tool, name = numeric[i % len(numeric)]
        base = json.dumps(minimal_call(schemas[tool]))[:-1]
        token = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400][i % 6]
        separator = ", " if base != "{" else ""
        label = token if len(token) < 10 else "10**400 written out"
        yield Case(tool, None, name, f"{label} in raw JSON"), f'{base}{separator}"{name}": {token}}}'


@pytest.fixture
def stdio_env(krea_fake: KreaFake, fal_fake: FalFake, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXROUTE_") and k not in ("FAL_KEY",)}
    return env | {
        "KREA_API_TOKEN": krea_fake.token,
        "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
        "FAL_KEY": fal_fake.key,
        "FLUXROUTE_FAL_BASE_URL": fal_fake.base_url,
        "FLUXROUTE_HOME": str(tmp_path / "home"),
        "FLUXROUTE_CONFIG": "none",
    }


def test_fuzzed_json_rpc_over_raw_stdio_is_answered_by_field_and_never_crashes_the_server(
    stdio_env: dict[str, str], krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    rng = random.Random(SEED + 1)
    server = StdioServer(stdio_env)
    kinds: Counter[str] = Counter()
    try:
        hello = server.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        )
        assert "result" in hello, hello
        server.send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        sent = 0
        for case, arguments in stdio_cases(rng):
            before = provider_requests(krea_fake, fal_fake)
            answer = server.request("tools/call", None, f'{{"name": "{case.tool}", "arguments": {arguments}}}')
            text = json.dumps(answer)
            if "error" in answer:  # JSON-RPC level: the line itself could not be taken (e.g. NaN in JSON)
                assert not any(mark in text for mark in TRACEBACK_MARKS), text[:500]
                kinds["json-rpc error: " + case.how] += 1
            else:
                assert answer["result"]["isError"] is True, f"{case}: accepted: {text[:300]}"
                check_refusal(case, text)
                kinds[case.how] += 1
            assert provider_requests(krea_fake, fal_fake) == before, f"{case}: reached a provider"
            sent += 1
        # broken JSON-RPC: each gets an error answer or none, and the server goes on answering
        for line in [
            '{"jsonrpc": "2.0", "id": 9001, "method": "tools/call", "params": {"name": "generate_image"',
            '{"jsonrpc": "2.0", "id": 9002, "method": "tools/call", "params": []}',
            '{"jsonrpc": "2.0", "id": 9003, "method": "tools/call", "params": {"name": "no_such_tool"}}',
            "\x00\x01\x02",
            "[]",
            '"just a string"',
        ]:
            server.send(line)
        alive = server.request("tools/list", {})
        assert "result" in alive and alive["result"]["tools"], alive
    finally:
        server.close()
    stderr = "".join(server.stderr)
    assert not any(mark in stderr for mark in TRACEBACK_MARKS), stderr[-3000:]
    assert sent >= STDIO_CASES
    print(f"{sent} raw stdio calls, every one refused by field or as a JSON-RPC error: {dict(kinds)}")
