"""Inline previews stay within their budget even for images that compress badly (noise, like fine texture)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from fluxroute.server.delivery import INLINE_BUDGET, previews
from fluxroute.tools.outputs import ImageOutput


def noisy_preview(path: Path, seed: int) -> ImageOutput:
    image = Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3))
    image.save(path, format="JPEG", quality=95)
    return ImageOutput(
        path=None, url=None, width=1408, height=1408, format="png", seed=seed, flagged=False, preview_path=str(path)
    )


def test_four_noisy_previews_are_shrunk_to_fit_the_budget_and_stay_jpeg(tmp_path: Path) -> None:
    images = [noisy_preview(tmp_path / f"{i}.jpg", i) for i in range(4)]
    assert sum(Path(str(image.preview_path)).stat().st_size for image in images) > INLINE_BUDGET

    shrunk = previews(images)

    assert all(data is not None for data in shrunk)
    assert sum(len(data) for data in shrunk if data) <= INLINE_BUDGET
    for data in shrunk:
        with Image.open(io.BytesIO(data or b"")) as preview:
            assert preview.format == "JPEG" and max(preview.size) < 512


def test_previews_that_fit_are_sent_as_saved(tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    Image.new("RGB", (512, 512), "teal").save(path, format="JPEG")
    image = ImageOutput(
        path=None, url=None, width=1024, height=1024, format="png", seed=1, flagged=False, preview_path=str(path)
    )

    assert previews([image]) == [path.read_bytes()]


def test_a_missing_preview_is_left_out_rather_than_failing_the_result(tmp_path: Path) -> None:
    image = ImageOutput(
        path=None,
        url=None,
        width=64,
        height=64,
        format="png",
        seed=1,
        flagged=False,
        preview_path=str(tmp_path / "gone.jpg"),
    )

    assert previews([image]) == [None]
