"""`fluxroute://images/...` serves exactly the files the job store recorded: no symbolic link, no changed file,
and an image saved outside the home (`generate --out DIR`) all the same."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mcp import Client, types
from mcp.shared.exceptions import MCPError

from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.krea import KreaFake

REQUEST = ImageRequest(prompt="a lighthouse", provider="krea", model="flux-dev")


async def generate(router: Router, out_dir: Path | None = None) -> tuple[GenerationResult, str, Path]:
    result = await router.generate(REQUEST, out_dir=out_dir)
    return result, f"fluxroute://images/{result.job_id}-0.png", Path(str(result.images[0].path))


async def read(router: Router, settings: Settings, uri: str) -> bytes | str:
    """The image's bytes, or the error message the server answered instead."""
    async with Client(build_server(settings, router), mode="legacy") as client:
        try:
            read = await client.read_resource(uri)
        except MCPError as exc:
            return str(exc)
    [contents] = read.contents
    assert isinstance(contents, types.BlobResourceContents)
    return base64.b64decode(contents.blob)


@pytest.fixture
async def router(hosted_settings: Settings, krea_fake: KreaFake) -> Router:
    return Router(hosted_settings)


async def test_an_image_saved_outside_the_home_is_served_from_its_recorded_path(
    router: Router, hosted_settings: Settings, tmp_path: Path
) -> None:
    _result, uri, path = await generate(router, out_dir=tmp_path / "renders")

    assert not path.is_relative_to(hosted_settings.home)
    assert await read(router, hosted_settings, uri) == path.read_bytes()


async def test_a_symlink_planted_at_a_recorded_image_path_is_refused(
    router: Router, hosted_settings: Settings, tmp_path: Path
) -> None:
    _result, uri, path = await generate(router)
    outside = tmp_path / "outside.png"
    outside.write_bytes(path.read_bytes())  # even the very same bytes, once behind a link, are not served
    path.unlink()
    path.symlink_to(outside)

    refused = await read(router, hosted_settings, uri)

    assert isinstance(refused, str) and "is not served: its saved file is now a symbolic link" in refused
    assert str(outside) not in refused


async def test_a_recorded_path_that_is_now_a_directory_is_refused(router: Router, hosted_settings: Settings) -> None:
    _result, uri, path = await generate(router)
    path.unlink()
    path.mkdir()

    refused = await read(router, hosted_settings, uri)

    assert isinstance(refused, str) and "is not served: its saved file is now not a regular file" in refused


async def test_an_image_file_changed_since_it_was_saved_is_refused(router: Router, hosted_settings: Settings) -> None:
    _result, uri, path = await generate(router)
    path.write_bytes(path.read_bytes() + b"appended")

    refused = await read(router, hosted_settings, uri)

    assert isinstance(refused, str) and "is not served: its file has changed since it was saved" in refused
