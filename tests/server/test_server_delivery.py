"""Inline previews: made only for MCP results, from the saved image itself, kept within their budget even for images
that compress badly (noise, like fine texture), and cached while the file stays the same."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from mcp import types
from PIL import Image

from fluxroute.router import Router
from fluxroute.server.delivery import (
    INLINE_BUDGET,
    PREVIEW_CACHE_ENTRIES,
    PREVIEW_LONG_EDGE,
    preview_bytes,
    preview_cache_info,
    previews,
)
from fluxroute.settings import Settings
from fluxroute.tools.outputs import ImageOutput
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect


def saved_image(path: Path, image: Image.Image, fmt: str = "PNG") -> ImageOutput:
    image.save(path, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 95}))
    return ImageOutput(
        path=str(path),
        url=None,
        width=image.width,
        height=image.height,
        format="png" if fmt == "PNG" else "jpeg",
        seed=1,
        flagged=False,
    )


def noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))


def gradient(size: tuple[int, int]) -> Image.Image:
    ramp = Image.linear_gradient("L")
    return Image.merge("RGB", (ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 90)))


def jpeg_size(data: bytes | None) -> tuple[int, int]:
    with Image.open(io.BytesIO(data or b"")) as preview:
        preview.load()
        assert preview.format == "JPEG" and preview.mode == "RGB"
        return preview.size


def test_four_noisy_previews_are_shrunk_to_fit_the_budget_and_stay_jpeg(tmp_path: Path) -> None:
    images = [saved_image(tmp_path / f"{i}.png", noise((1024, 1024))) for i in range(4)]
    assert sum(len(preview_bytes(Path(str(image.path)))) for image in images) > INLINE_BUDGET

    shrunk = previews(images)

    assert all(data is not None for data in shrunk)
    assert sum(len(data) for data in shrunk if data) <= INLINE_BUDGET
    assert all(max(jpeg_size(data)) < PREVIEW_LONG_EDGE for data in shrunk)


def test_a_1mp_png_preview_keeps_its_aspect_at_the_long_edge(tmp_path: Path) -> None:
    image = saved_image(tmp_path / "wide.png", gradient((1216, 832)))

    [data] = previews([image])

    assert jpeg_size(data) == (512, 350)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_to_the_long_edge(tmp_path: Path) -> None:
    image = saved_image(tmp_path / "big.jpg", gradient((2048, 1536)), fmt="JPEG")

    assert jpeg_size(preview_bytes(Path(str(image.path)))) == (512, 384)


def test_a_small_image_is_not_enlarged(tmp_path: Path) -> None:
    image = saved_image(tmp_path / "small.png", gradient((64, 48)))

    assert jpeg_size(previews([image])[0]) == (64, 48)


def test_a_missing_image_or_one_behind_a_link_is_left_out_rather_than_failing_the_result(tmp_path: Path) -> None:
    linked = saved_image(tmp_path / "real.png", gradient((64, 64)))
    gone = linked.model_copy(update={"path": str(tmp_path / "gone.png")})
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "real.png")
    unsaved = linked.model_copy(update={"path": None})

    assert previews([gone, linked.model_copy(update={"path": str(link)}), unsaved]) == [None, None, None]


def test_the_cache_answers_an_unchanged_file_and_misses_a_changed_one(tmp_path: Path) -> None:
    path = Path(str(saved_image(tmp_path / "a.png", gradient((1024, 1024))).path))
    first = preview_bytes(path)
    before = preview_cache_info()

    again = preview_bytes(path)

    after = preview_cache_info()
    assert again == first
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)

    noise((1024, 1024)).save(path, format="PNG")  # another size and mtime: the old preview must not be served
    changed = preview_bytes(path)
    assert changed != first and preview_cache_info().misses == after.misses + 1


def test_the_cache_stays_bounded(tmp_path: Path) -> None:
    for i in range(PREVIEW_CACHE_ENTRIES + 8):
        preview_bytes(Path(str(saved_image(tmp_path / f"{i}.png", gradient((96, 96))).path)))

    info = preview_cache_info()
    assert info.maxsize == PREVIEW_CACHE_ENTRIES and info.currsize == PREVIEW_CACHE_ENTRIES


async def test_a_python_generation_writes_the_image_alone_and_no_preview(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.image_scale = 1.0
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a lighthouse", provider="krea", model="flux-dev"))
    finally:
        await router.aclose()

    [image] = result.images
    assert [path.name for path in hosted_settings.images_dir.iterdir()] == [Path(str(image.path)).name]


async def test_an_mcp_result_carries_a_preview_made_from_the_saved_1mp_image(
    connect: Connect, krea_fake: KreaFake, settings: Settings
) -> None:
    krea_fake.image_scale = 1.0
    arguments = {"prompt": "a lighthouse", "provider": "krea", "model": "flux-dev", "width": 1024, "height": 1024}

    async with connect() as client:
        result = await client.call_tool("generate_image", arguments)

    assert not result.is_error
    [preview] = [block for block in result.content if isinstance(block, types.ImageContent)]
    assert preview.mime_type == "image/jpeg"
    assert jpeg_size(base64.b64decode(preview.data)) == (PREVIEW_LONG_EDGE, PREVIEW_LONG_EDGE)
    assert result.structured_content is not None
    [saved] = result.structured_content["images"]
    assert saved["width"] * saved["height"] >= 1_000_000 and "preview_path" not in saved
    assert list(settings.images_dir.iterdir()) == [Path(saved["path"])]  # shown inline, never written
