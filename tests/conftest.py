"""Shared fixtures: the provider fakes (tests/fakes) and settings that point fluxroute at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxroute.settings import Settings
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.tiny_flux", "tests.fakes.fleet"]


@pytest.fixture
def hosted_settings(tmp_path: Path, krea_fake: KreaFake, fal_fake: FalFake) -> Settings:
    """Keys for both hosted providers, their hosts on the fakes, images under tmp_path; small fake images; short
    pauses between retries."""
    krea_fake.image_scale = 1 / 8
    fal_fake.image_scale = 1 / 8
    return Settings(
        home=tmp_path / "home",
        krea_api_token=krea_fake.token,
        fal_key=fal_fake.key,
        krea_base_url=krea_fake.base_url,
        fal_base_url=fal_fake.base_url,
        fal_rest_url=fal_fake.base_url,
        fal_cdn_url=fal_fake.base_url,
        fal_jwks_url=fal_fake.jwks_url,
        provider_timeout_s=20,
        # the fault tests' pauses, short: backoff after a failed check, listings, following a cancel
        retry_backoff_s=0.02,
        reconcile_delay_s=0.05,
        cancel_settle_s=2.0,
    )
