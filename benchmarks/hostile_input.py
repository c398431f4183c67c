"""Peak memory of each bomb class: what fluxroute's process grows by when a provider, a caller or a forged
webhook sends far more than it should. Each case runs in a fresh process; its peak resident memory (VmHWM) is
reset after setup (Linux: /proc/self/clear_refs) and read after the bomb, so the figure is the growth the bomb
caused. The hostile bodies come from a raw server that generates them as it sends them.

    .venv/bin/python benchmarks/hostile_input.py            # all cases, a Markdown table
    .venv/bin/python benchmarks/hostile_input.py --case X   # one case, one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
CHUNK = b"\x00" * 65536


def memory(key: str) -> int:
    text = Path("/proc/self/status").read_text(encoding="ascii")
    match = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.MULTILINE)
    assert match is not None
    return int(match[1]) * 1024


def bomb_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def serve(kind: str, payload: bytes = b"") -> tuple[asyncio.Server, int]:
    """A raw HTTP server answering every request with `kind`: 300 MB endless chunks, a 1 GiB gzip bomb
    (about 1 MB on the wire), or `payload` as an image."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            if kind == "endless":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                for _ in range(300 * MiB // len(CHUNK)):
                    writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    await writer.drain()
            else:
                head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(payload)}\r\n"
                extra = "content-type: application/json\r\ncontent-encoding: gzip\r\n" if kind == "gzip" else ""
                writer.write((head + extra + "\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def settings_for(port: int):  # type: ignore[no-untyped-def]
    from fluxroute.settings import Settings

    base = f"http://127.0.0.1:{port}"
    return Settings(home=Path("/tmp/fluxroute-hostile"), krea_api_token="k", krea_base_url=base)


async def result_download(kind: str) -> Callable[[], Awaitable[str]]:
    from fluxroute.errors import FluxrouteError
    from fluxroute.providers.downloads import ResultDownloads
    from fluxroute.providers.polling import Pace

    payload = {"endless": b"", "png-144mp": bomb_png(12000, 12000), "png-400mp": bomb_png(20000, 20000)}[kind]
    _, port = await serve("endless" if kind == "endless" else "image", payload)
    downloads = ResultDownloads(settings_for(port), httpx.Timeout(30.0))

    async def run() -> str:
        try:
            await downloads.image(f"http://127.0.0.1:{port}/r.png", provider="krea", pace=Pace("krea", "j", 1, 0.5))
        except FluxrouteError as exc:
            return f"{type(exc).__name__}: {str(exc)[-90:]}"
        return "accepted"

    return run


async def api_answer(kind: str) -> Callable[[], Awaitable[str]]:
    from fluxroute.providers.submission import CappedTransport, read_json

    payload = gzip.compress(b"\x00" * (1 << 30), compresslevel=9) if kind == "gzip" else b""
    _, port = await serve(kind, payload)
    client = httpx.AsyncClient(transport=CappedTransport())

    async def run() -> str:
        try:
            read_json(await client.get(f"http://127.0.0.1:{port}/jobs/1"), "krea")
        except Exception as exc:  # the outcome is what is reported
            return f"{type(exc).__name__}: {str(exc)[:90]}"
        return "accepted"

    return run


async def input_data_uri() -> Callable[[], Awaitable[str]]:
    from fluxroute.errors import FluxrouteError
    from fluxroute.types import ImageRequest

    uri = "data:image/png;base64," + "A" * (100 * MiB)  # the caller's own 100 MB string

    async def run() -> str:
        try:
            ImageRequest.parse({"prompt": "a cat", "init_image": uri})
        except FluxrouteError as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[-1][-90:]}"
        return "accepted"

    return run


CASES: dict[str, tuple[str, Callable[[], Awaitable[Callable[[], Awaitable[str]]]]]] = {
    "result-300mb": ("result download, 300 MB body (cap 64 MiB)", lambda: result_download("endless")),
    "result-144mp": ("result PNG of 17.5 KB declaring 144 MP (cap 25 MP)", lambda: result_download("png-144mp")),
    "result-400mp": ("result PNG declaring 400 MP (cap 25 MP)", lambda: result_download("png-400mp")),
    "status-300mb": ("status answer, 300 MB body (cap 4 MiB)", lambda: api_answer("endless")),
    "status-gzip": ("status answer, gzip bomb: 1 MB inflating to 1 GiB", lambda: api_answer("gzip")),
    "input-data-uri": ("init_image data: URI of 100 MB (cap 4,096 characters)", input_data_uri),
}


async def one(case: str) -> dict[str, object]:
    setup = await CASES[case][1]()
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # peak := current
    before = memory("VmRSS")
    started = time.perf_counter()
    outcome = await setup()
    return {
        "case": case,
        "growth_mb": round((memory("VmHWM") - before) / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 2),
        "outcome": outcome,
    }


def webhook_case() -> dict[str, object]:
    """`fluxroute serve --http` as a subprocess, sent a 200 MB webhook body; its own peak memory is read."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXROUTE_", "KREA_", "FAL_"))}
    env |= {"FLUXROUTE_HOME": "/tmp/fluxroute-hostile-serve", "FLUXROUTE_CONFIG": "none"}
    server = subprocess.Popen(
        [sys.executable, "-m", "fluxroute", "serve", "--http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = Path(f"/proc/{server.pid}/status")
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        before = int(re.findall(r"VmRSS:\s+(\d+)", status.read_text())[0]) * 1024
        sent = 0

        def body():  # type: ignore[no-untyped-def]
            nonlocal sent
            for _ in range(200 * MiB // len(CHUNK)):
                sent += len(CHUNK)
                yield CHUNK

        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/webhooks/krea", content=body(), timeout=30)
            outcome = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"connection closed by the server ({type(exc).__name__})"
        peak = int(re.findall(r"VmHWM:\s+(\d+)", status.read_text())[0]) * 1024
        return {
            "case": "webhook-200mb",
            "growth_mb": round((peak - before) / 1e6, 1),
            "seconds": 0,
            "outcome": f"{outcome} after {sent / MiB:.0f} MiB sent (cap 64 KiB)",
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(asyncio.run(one(args.case))))
        return
    rows = []
    for case in CASES:
        done = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True, cwd=ROOT
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows.append(webhook_case())
    labels = {name: label for name, (label, _) in CASES.items()} | {"webhook-200mb": "webhook body of 200 MB"}
    print("| bomb | peak memory growth | outcome |\n|---|---:|---|")
    for row in rows:
        print(f"| {labels[str(row['case'])]} | {row['growth_mb']} MB | {row['outcome']} |")


if __name__ == "__main__":
    main()
