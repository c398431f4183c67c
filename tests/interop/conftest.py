"""Interop tests run real third-party clients and converters (the `interop` extra). A test marked
`needs(distribution, module)` is skipped where that package is missing, and fails instead when CI=true:
CI installs the extra, so a missing client there is a broken install, not a reason to pass."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.fakes.krea import KreaFake
from tests.needs import missing
from tests.server.test_server_transports import server_env


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(distribution, module): the third-party package a test runs (the interop extra)"
    )


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        distribution, module = marker.args
        if installed(module):
            continue
        missing(f"{distribution} is not installed (pip install -e '.[interop]')")


@pytest.fixture
def serve_command(krea_fake: KreaFake, tmp_path: Path) -> tuple[str, list[str], dict[str, str]]:
    """`fluxroute serve` over stdio as a client starts it (command, args, env), generating through the Krea fake;
    its config sets a price for Krea's Topaz upscaler (Krea publishes none), so that upscale_image has a route."""
    krea_fake.image_scale = 1 / 8
    config = tmp_path / "fluxroute.toml"
    config.write_text('[prices]\n"krea-topaz-standard" = "0.08"\n', encoding="utf-8")
    env = server_env(krea_fake, tmp_path / "home") | {"FLUXROUTE_CONFIG": str(config)}
    return sys.executable, ["-m", "fluxroute", "serve"], env
