"""Saved outputs: parameters embedded without touching pixels, hashes, no preview, names that stay inside."""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.providers.base import ProviderImage
from fluxroute.store.images import ImageStore, read_parameters, slug
from fluxroute.types import GeneratedImage


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
    assert saved.path is not None
    path = Path(saved.path)
    assert read_parameters(path) == {"prompt": "a cat", "seed": 7, "provider": "fal"}
    with Image.open(path) as image:
        assert image.format == ("PNG" if wanted == "png" else "JPEG")
        assert image.size == (1024, 768)
    assert saved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the image alone: previews are made for MCP only


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


def test_slug_is_filename_safe() -> None:
    assert slug("A Lighthouse, at DUSK! ../x") == "a-lighthouse-at-dusk-x"
    assert slug("???") == "image"


def noise_image(seed: int, size: tuple[int, int] = (1024, 1024)) -> ProviderImage:
    """A PNG that does not compress (several MB): writing it takes long enough for writers and readers to
    overlap."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format="PNG", compress_level=0)
    return ProviderImage(buffer.getvalue(), size[0], size[1], "image/png")


def save_together(store: ImageStore, images: list[ProviderImage], job_id: str) -> list[GeneratedImage]:
    """Save `images` as image 0 of `job_id`, one thread each, released at the same moment."""
    start = threading.Barrier(len(images))

    def save(image: ProviderImage) -> GeneratedImage:
        start.wait()
        return store.save(image, job_id=job_id, index=0, prompt="a cat", output_format="png", seed=1, parameters={})

    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(save, images))


def test_two_saves_of_one_image_at_once_leave_one_whole_file_and_no_temporaries(tmp_path: Path) -> None:
    """Two resumes of one job saving its image at the same moment: one name, one complete file, which is
    exactly one of the two writes."""
    images = [noise_image(1, (1024, 1024)), noise_image(2, (1024, 960))]  # a shorter write must not keep a tail
    store = ImageStore(tmp_path)
    for round_ in range(5):
        first, second = save_together(store, images, job_id=f"job{round_}56789")

        assert first.path == second.path
        on_disk = Path(str(first.path)).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() in {first.sha256, second.sha256}
        with Image.open(io.BytesIO(on_disk)) as image:
            image.load()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 5, names  # per round one image; no preview, no temporary file left
    assert not [name for name in names if name.startswith(".") or name.endswith(".tmp")]


def test_a_reader_never_sees_half_an_image_while_it_is_saved_again(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)

    def save(seed: int) -> GeneratedImage:
        image = noise_image(seed)
        return store.save(
            image, job_id="abcdefgh1234", index=0, prompt="a cat", output_format="png", seed=None, parameters={}
        )

    first = save(0)
    path = Path(str(first.path))
    digests = {first.sha256}
    done = threading.Event()

    def save_again() -> None:
        try:
            for seed in range(1, 6):
                digests.add(save(seed).sha256)
        finally:
            done.set()

    writer = threading.Thread(target=save_again)
    writer.start()
    seen = []
    while not done.is_set():
        seen.append(hashlib.sha256(path.read_bytes()).hexdigest())
    writer.join()

    assert len(digests) == 6
    assert set(seen) <= digests, "a read caught a file half written"


def test_saving_an_image_again_replaces_it_under_the_same_name(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    saves = [
        store.save(
            provider_image("PNG", (32, 32)),
            job_id="abcdefgh1234",
            index=1,
            prompt="a cat",
            output_format="png",
            seed=None,
            parameters={"attempt": attempt},
        )
        for attempt in range(2)
    ]

    assert saves[0].path == saves[1].path
    assert read_parameters(Path(str(saves[1].path))) == {"attempt": 1}
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_a_symlink_planted_at_an_image_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")

    def save() -> GeneratedImage:
        return store.save(
            provider_image("PNG", (32, 32)),
            job_id="abcdefgh1234",
            index=0,
            prompt="a cat",
            output_format="png",
            seed=None,
            parameters={},
        )

    path = Path(str(save().path))
    path.unlink()
    path.symlink_to(outside)
    again = save()

    assert outside.read_text() == "not yours"
    assert Path(str(again.path)) == path and not path.is_symlink()
    with Image.open(path) as image:
        assert image.size == (32, 32)


def test_images_and_their_folder_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        saved = ImageStore(tmp_path / "images").save(
            provider_image("JPEG", (32, 32)),
            job_id="abcdefgh1234",
            index=0,
            prompt="a cat",
            output_format="jpeg",
            seed=None,
            parameters={},
        )
    finally:
        os.umask(previous)

    assert stat.S_IMODE((tmp_path / "images").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(str(saved.path)).stat().st_mode) == 0o600


def test_a_save_again_finds_its_earlier_name_among_others_and_never_a_hidden_one(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)

    def save(job_id: str) -> Path:
        image = provider_image("PNG", (16, 16))
        saved = store.save(image, job_id=job_id, index=0, prompt="a cat", output_format="png", seed=None, parameters={})
        return Path(str(saved.path))

    (tmp_path / ".20200101-000000-a-cat-abcdefgh-0.png").write_bytes(b"hidden")  # not one of ours
    first = save("abcdefgh1234")
    others = [save(f"{n:08x}ffff") for n in range(20)]
    assert first.name != ".20200101-000000-a-cat-abcdefgh-0.png" and first.name.endswith("-a-cat-abcdefgh-0.png")
    assert save("abcdefgh5678") == first  # the same job prefix and index: the same image, the same name
    assert len({first, *others}) == 21
