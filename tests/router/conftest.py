"""Routers with every provider available (keys set, a GPU pretended) or none, for planning tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.settings import Settings

ALL_AVAILABLE = {"krea": Availability(True), "fal": Availability(True), "local": Availability(True)}


def make_router(home: Path, available: bool = True, **settings: object) -> Router:
    availability = ALL_AVAILABLE if available else None
    return Router(Settings(home=home, **settings), availability=dict(availability) if availability else None)


@pytest.fixture
def router(tmp_path: Path) -> Router:
    return make_router(tmp_path)
