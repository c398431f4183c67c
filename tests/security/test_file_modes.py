"""What fluxroute writes is readable by its owner only: the home, the job store (with its WAL files), images."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.jobstore import DB_FILENAME
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems start with (0022: new files world-readable), whatever this process had."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_a_generation_leaves_an_owner_only_home_store_and_images(
    hosted_settings: Settings, krea_fake: KreaFake, usual_umask: None
) -> None:
    router = Router(hosted_settings)
    result = await router.generate(ImageRequest(prompt="a lighthouse", provider="krea", model="flux-dev"))
    home = hosted_settings.home
    database = home / DB_FILENAME

    try:
        assert mode(home) == 0o700
        assert mode(hosted_settings.images_dir) == 0o700
        assert {path.name: mode(path) for path in home.glob(f"{DB_FILENAME}*")} == {
            DB_FILENAME: 0o600,
            f"{DB_FILENAME}-wal": 0o600,  # open while the store is: SQLite gives them the database's mode
            f"{DB_FILENAME}-shm": 0o600,
        }
        [image] = result.images
        assert mode(Path(str(image.path))) == 0o600
    finally:
        await router.aclose()
    assert mode(database) == 0o600


async def test_an_out_dir_fluxroute_creates_is_owner_only_and_one_that_exists_is_left_alone(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path, usual_umask: None
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    router = Router(hosted_settings)
    request = ImageRequest(prompt="a lighthouse", provider="krea", model="flux-dev")
    try:
        created = await router.generate(request, out_dir=tmp_path / "renders" / "new")
        into_shared = await router.generate(request, out_dir=shared)
    finally:
        await router.aclose()

    assert mode(tmp_path / "renders" / "new") == 0o700
    assert mode(shared) == 0o755  # the user's own directory keeps the mode they gave it
    for result in (created, into_shared):
        assert mode(Path(str(result.images[0].path))) == 0o600
