"""Saved outputs: parameters embedded without touching pixels, hashes, previews, names that stay inside."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.providers.base import ProviderImage
from fluxroute.store.images import ImageStore, read_parameters, slug


def provider_image(fmt: str, size: tuple[int, int] = (1024, 768)) -> ProviderImage:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 90, 160)).save(buffer, format=fmt)
    return ProviderImage(buffer.getvalue(), size[0], size[1], f"image/{fmt.lower()}")


@pytest.mark.parametrize(("source", "wanted"), [("PNG", "png"), ("JPEG", "jpeg"), ("PNG", "jpeg"), ("JPEG", "png")])
def test_parameters_are_embedded_and_readable(tmp_path: Path, source: str, wanted: str) -> None:
    saved = ImageStore(tmp_path).save(
        provider_image(source),
        job_id="job123456789",
        index=0,
        prompt="a cat",
        output_format=wanted,
        seed=7,
        parameters={"prompt": "a cat", "seed": 7, "provider": "fal"},
    )
    assert saved.path is not None and saved.preview_path is not None
    path = Path(saved.path)
    assert read_parameters(path) == {"prompt": "a cat", "seed": 7, "provider": "fal"}
    with Image.open(path) as image:
        assert image.format == ("PNG" if wanted == "png" else "JPEG")
        assert image.size == (1024, 768)
    assert saved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(saved.preview_path) as preview:
        assert preview.format == "JPEG" and max(preview.size) <= 512


def test_embedding_keeps_the_providers_pixels_exactly(tmp_path: Path) -> None:
    original = provider_image("PNG", (64, 48))
    saved = ImageStore(tmp_path).save(
        original, job_id="j" * 12, index=0, prompt="x", output_format="png", seed=None, parameters={"a": 1}
    )
    with Image.open(io.BytesIO(original.data)) as before, Image.open(saved.path or "") as after:
        assert before.tobytes() == after.tobytes()


@pytest.mark.parametrize("prompt", ["../../../etc/passwd", "/abs/path", "a\\b\\c", "..", "名前 🐈", ""])
def test_names_derived_from_caller_text_stay_inside_the_directory(tmp_path: Path, prompt: str) -> None:
    out = tmp_path / "out"
    saved = ImageStore(out).save(
        provider_image("PNG", (32, 32)),
        job_id="abcdefgh1234",
        index=3,
        prompt=prompt,
        output_format="png",
        seed=None,
        parameters={},
    )
    assert Path(saved.path or "").parent == out.resolve()
    assert Path(saved.preview_path or "").parent == out.resolve()


def test_slug_is_filename_safe() -> None:
    assert slug("A Lighthouse, at DUSK! ../x") == "a-lighthouse-at-dusk-x"
    assert slug("???") == "image"
