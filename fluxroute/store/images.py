"""Saved outputs: safe generated names inside one directory, parameters embedded, a content hash; written atomically
and owner-only (see store/files.py). No preview is made here: only MCP results show one, made when they are built
(server/delivery.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from fluxroute.providers.base import ProviderImage
from fluxroute.store.files import locked, private_dir, write_atomically
from fluxroute.types import GeneratedImage

METADATA_KEY = "fluxroute"
JPEG_COMMENT_LIMIT = 65_533


def slug(text: str, words: int = 5) -> str:
    """A filename-safe fragment of caller text: lowercase ASCII letters, digits and dashes only."""
    parts = re.findall(r"[a-z0-9]+", text.lower())[:words]
    return "-".join(parts)[:48] or "image"


def _png_with_text(data: bytes, key: str, text: str) -> bytes:
    """Insert an iTXt chunk right after IHDR: no re-encoding, pixels untouched, readable without decoding. The
    image's bytes are copied once (a multi-megabyte PNG is not sliced into copies first)."""
    payload = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    chunk = b"iTXt" + payload
    packed = struct.pack(">I", len(payload)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    after_ihdr = 8 + 4 + 4 + struct.unpack(">I", data[8:12])[0] + 4  # signature, length, type, data, CRC
    view = memoryview(data)
    return b"".join((view[:after_ihdr], packed, view[after_ihdr:]))


def _jpeg_with_comment(data: bytes, text: str) -> bytes:
    """Insert a COM segment after SOI: no re-encoding, pixels untouched, the image's bytes copied once."""
    body = text.encode("utf-8")[:JPEG_COMMENT_LIMIT]
    view = memoryview(data)
    return b"".join((view[:2], b"\xff\xfe", struct.pack(">H", len(body) + 2), body, view[2:]))


def embed_parameters(data: bytes, image_format: str, parameters: dict[str, object]) -> bytes:
    text = json.dumps(parameters, sort_keys=True, default=str)
    return _png_with_text(data, METADATA_KEY, text) if image_format == "png" else _jpeg_with_comment(data, text)


def read_parameters(path: Path) -> dict[str, object]:
    """The parameters embedded by `embed_parameters` (PNG text chunk or JPEG comment)."""
    with Image.open(path) as image:
        raw = image.info.get(METADATA_KEY) if image.format == "PNG" else image.info.get("comment")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    result: dict[str, object] = json.loads(raw) if raw else {}
    return result


def _convert(image: ProviderImage, output_format: str) -> bytes:
    """The provider's bytes when already in the wanted format, else re-encoded once."""
    wanted = "image/png" if output_format == "png" else "image/jpeg"
    if image.content_type == wanted:
        return image.data
    with Image.open(io.BytesIO(image.data)) as source:
        buffer = io.BytesIO()
        if output_format == "png":
            source.save(buffer, format="PNG")
        else:
            source.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


class ImageStore:
    """Writes images under one directory; every name is generated here, so none can point outside it. Image
    `index` of a job keeps one name: saving it again (a resumed job) replaces the file instead of adding one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()

    def save(
        self,
        image: ProviderImage,
        *,
        job_id: str,
        index: int,
        prompt: str,
        output_format: str,
        seed: int | None,
        parameters: dict[str, object],
    ) -> GeneratedImage:
        private_dir(self.directory)
        data = embed_parameters(_convert(image, output_format), output_format, parameters)
        digest = hashlib.sha256(data).hexdigest()
        extension = "png" if output_format == "png" else "jpg"
        # the name is chosen and the file written under the directory's lock, so that two saves of one
        # image (two resumes of one job) agree on its name
        with locked(self.directory):
            stem = self._saved_stem(f"-{slug(prompt)}-{job_id[:8]}-{index}", extension)
            path = self._inside(f"{stem}.{extension}")
            write_atomically(path, data)
        return GeneratedImage(
            path=str(path),
            url=image.url,
            width=image.width,
            height=image.height,
            format=output_format,
            seed=seed,
            sha256=digest,
            flagged=image.flagged,
        )

    def _saved_stem(self, tail: str, extension: str) -> str:
        """The stem this image was saved under before, or a new one: a UTC timestamp, then `tail`. Names are
        matched as plain strings: one directory listing, no pattern or path object per entry (temporaries start
        with a dot and are skipped)."""
        ending = f"{tail}.{extension}"
        earlier = sorted(
            name.removesuffix(f".{extension}")
            for name in os.listdir(self.directory)
            if name.endswith(ending) and not name.startswith(".")
        )
        return earlier[0] if earlier else datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + tail

    def _inside(self, name: str) -> Path:
        # lexically, not resolve(): a symbolic link planted at the name must not decide where it is
        path = Path(os.path.normpath(self.directory / name))
        if path.parent != self.directory:
            raise ValueError(f"refusing to write outside {self.directory}: {name!r}")
        return path
