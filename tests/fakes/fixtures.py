"""Pytest fixtures: the Krea and fal fakes and a webhook receiver, each a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import fal_client.client
import pytest

from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.fakes.webhooks import WebhookReceiver

KREA_TOKEN = "test-krea-token"
FAL_KEY = "test-fal-key:secret"


# One server per session, reset() around every test: uvicorn starts in ~30 ms but needs ~150 ms
# to stop, so a server per test would cost seconds per test file. Tests still see a fresh fake.
@pytest.fixture(scope="session")
def krea_fake_server() -> Iterator[KreaFake]:
    with KreaFake(token=KREA_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="session")
def fal_fake_server() -> Iterator[FalFake]:
    with FalFake(key=FAL_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def webhook_receiver_server() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def krea_fake(krea_fake_server: KreaFake) -> Iterator[KreaFake]:
    """A running ``KreaFake`` in default state; token ``test-krea-token``; ``.base_url``."""
    krea_fake_server.reset()
    yield krea_fake_server
    krea_fake_server.reset()


@pytest.fixture
def fal_fake(fal_fake_server: FalFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[FalFake]:
    """A running ``FalFake`` (key ``test-fal-key:secret``) with fal-client's hosts pointed at it.

    Patched the way fal's own tests do it: the module globals ``QUEUE_URL_FORMAT``,
    ``RUN_URL_FORMAT``, ``REST_URL`` and ``CDN_URL`` of ``fal_client.client``, which
    fal-client reads at call time. Pass ``key=fal_fake.key`` to ``fal_client.AsyncClient``.
    """
    fake = fal_fake_server
    fake.reset()
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", fake.base_url + "/")
    monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", fake.run_url + "/")
    monkeypatch.setattr(fal_client.client, "REST_URL", fake.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fake.base_url)
    yield fake
    fake.reset()


@pytest.fixture
def webhook_receiver(webhook_receiver_server: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """Records every request to ``.url``; ``await receiver.wait_for(n)`` returns the n-th delivery."""
    webhook_receiver_server.reset()
    yield webhook_receiver_server
    webhook_receiver_server.reset()
