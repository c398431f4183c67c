"""Provider API answers are read with a byte cap: an endless body, a declared huge length and a gzip bomb stop
at the cap (a raw HTTP server on 127.0.0.1 that counts what it managed to send); an oversize status answer from
the Krea fake is retried like any garbled answer, and the job is still collected and billed once."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import httpx
import pytest

from fluxroute.providers.submission import MAX_ANSWER_BYTES, AnswerTooLarge, CappedTransport, read_json
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake

CHUNK = b"x" * 65536


class Hostile:
    """Answers every request with `kind`: an endless chunked body, a huge declared length, or a gzip bomb."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            if self.kind == "endless":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                    await writer.drain()
                    self.sent += len(CHUNK)
            elif self.kind == "declared":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 314572800\r\n\r\n")
                while True:
                    writer.write(CHUNK)
                    await writer.drain()
                    self.sent += len(CHUNK)
            else:  # 1 GiB of zeros in about 1 MB of gzip
                bomb = gzip.compress(b"\x00" * (1 << 30), compresslevel=9)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                writer.write(head + b"content-length: %d\r\n\r\n" % len(bomb) + bomb)
                await writer.drain()
                self.sent += len(bomb)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def hostile_server(kind: str) -> AsyncIterator[tuple[str, Hostile]]:
    hostile = Hostile(kind)
    server = await asyncio.start_server(hostile.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/jobs/1", hostile
        server.close()


@pytest.mark.parametrize("kind", ["endless", "declared"])
async def test_an_answer_past_the_cap_stops_being_read_at_the_cap(kind: str) -> None:
    async with hostile_server(kind) as (url, hostile), httpx.AsyncClient(transport=CappedTransport()) as client:
        with pytest.raises(AnswerTooLarge, match="larger than"):
            await client.get(url)
        await asyncio.sleep(0.1)
    # what the server got out before the client hung up: the cap plus what socket buffers hold
    assert hostile.sent < MAX_ANSWER_BYTES + 8 * 1024 * 1024, hostile.sent
    print(f"{kind}: server sent {hostile.sent / 2**20:.1f} MiB before the client stopped reading (cap 4 MiB)")


async def test_a_gzip_bomb_is_not_inflated_and_reads_as_a_garbled_answer() -> None:
    async with hostile_server("gzip") as (url, _), httpx.AsyncClient(transport=CappedTransport()) as client:
        response = await client.get(url)
        assert len(response.content) < 2 * 1024 * 1024  # passed on undecoded: about 1 MB, not 1 GiB
        with pytest.raises(Exception, match="garbled answer"):
            read_json(response, "krea")


async def test_an_oversize_status_answer_is_retried_and_the_job_still_collected_once(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    oversize = b'{"status": "' + b"x" * (MAX_ANSWER_BYTES + 1024) + b'"}'
    fault = krea_fake.faults.garble(route="get_job", body=oversize, times=2)
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a lighthouse at dusk", model="flux-dev", provider="krea"))
    finally:
        await router.aclose()
    assert fault.hits == 2
    assert result.provider == "krea" and Decimal(str(result.cost_usd)) == krea_fake.billed == Decimal("0.007")
    assert router.store.total_charged() == krea_fake.billed and len(krea_fake.jobs) == 1
