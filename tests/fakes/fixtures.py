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
def fal_fake(fal_fake_server: FalFake) -> Iterator[FalFake]:
    """A running ``FalFake`` (key ``test-fal-key:secret``) in default state. fluxroute reaches it through its
    settings (``fal_base_url``, ``fal_rest_url``, ``fal_cdn_url``, ``fal_jwks_url``: see ``hosted_settings``);
    nothing of fal-client is patched. Tests of fal-client itself against the fake use ``fal_client_on_fake``."""
    fake = fal_fake_server
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def fal_client_on_fake(fal_fake: FalFake, monkeypatch: pytest.MonkeyPatch) -> FalFake:
    """``fal_fake`` with fal-client's own hosts pointed at it, for the tests that drive fal-client directly
    (``fal_client.AsyncClient(key=fal_fake.key)``): patched the way fal's own tests do it, the module globals
    ``QUEUE_URL_FORMAT``, ``RUN_URL_FORMAT``, ``REST_URL`` and ``CDN_URL`` of ``fal_client.client``, which
    fal-client reads at call time (and has no setting for)."""
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", fal_fake.base_url + "/")
    monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", fal_fake.run_url + "/")
    monkeypatch.setattr(fal_client.client, "REST_URL", fal_fake.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_fake.base_url)
    return fal_fake


@pytest.fixture
def webhook_receiver(webhook_receiver_server: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """Records every request to ``.url``; ``await receiver.wait_for(n)`` returns the n-th delivery."""
    webhook_receiver_server.reset()
    yield webhook_receiver_server
    webhook_receiver_server.reset()
