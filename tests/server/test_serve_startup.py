"""`fluxroute serve --http`, run as a user runs it, says on stderr in one line where it serves: the MCP URL, whether a
bearer token is required (never the token), the webhook paths and public base, and the store it writes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

TOKEN = "startup-token-0123456789"
STARTED = "fluxroute: MCP at "
WAIT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(env: dict[str, str], port: int) -> Iterator[tuple[str, list[str]]]:
    """Start `python -m fluxroute serve --http --port PORT`; yield its start-up line (read from stderr, waiting at
    most WAIT_S) and a list that holds every stderr line once it has stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fluxroute", "serve", "--http", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while not any(line.startswith(STARTED) for line in seen):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no start-up line within {WAIT_S} s; stderr so far: {seen}")
            if line is None:
                pytest.fail(f"serve exited ({process.wait()}) before its start-up line; stderr: {seen}")
            seen.append(line)
        yield next(line for line in seen if line.startswith(STARTED)), seen
    finally:
        process.send_signal(signal.SIGTERM)  # as a service manager stops it (SIGINT also prints "interrupted")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        while (line := lines.get_nowait() if not lines.empty() else None) is not None:
            seen.append(line)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"FAL_KEY", "KREA_API_TOKEN", "FLUXROUTE_SERVER_TOKEN"}}
    return clean | {"FLUXROUTE_HOME": str(tmp_path / "home"), "FLUXROUTE_CONFIG": "none"}


def test_one_line_names_url_token_required_webhooks_public_base_and_store(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "fluxroute.toml"
    config.write_text('webhook_base_url = "https://hooks.example.com/fluxroute/"\n', encoding="utf-8")
    port = free_port()

    with serve(env | {"FLUXROUTE_CONFIG": str(config), "FLUXROUTE_SERVER_TOKEN": TOKEN}, port) as (line, seen):
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        refused = httpx.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=10)

    store = tmp_path / "home" / "fluxroute.db"
    assert line == (
        f"fluxroute: MCP at http://127.0.0.1:{port}/mcp; bearer token required (FLUXROUTE_SERVER_TOKEN); "
        "webhooks at /webhooks/krea and /webhooks/fal (public base https://hooks.example.com/fluxroute); "
        f"store {store}"
    )
    assert health.status_code == 200 and refused.status_code == 401  # serving, and the token is required
    assert store.is_file()
    assert seen == [line], seen  # one line, printed once, and nothing else at the default log level
    assert TOKEN not in "\n".join(seen)


def test_without_a_token_or_webhook_base_the_line_says_so(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()

    with serve(env, port) as (line, seen):
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)

    assert health.status_code == 200
    assert line == (
        f"fluxroute: MCP at http://127.0.0.1:{port}/mcp; no bearer token required (FLUXROUTE_SERVER_TOKEN unset); "
        "webhooks at /webhooks/krea and /webhooks/fal (webhook_base_url unset: jobs are polled); "
        f"store {tmp_path / 'home' / 'fluxroute.db'}"
    )
    assert seen == [line], seen
