"""Real image bytes for the fakes' download URLs: Pillow gradients, black safety-checker images, uploads."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Literal

from PIL import Image

ImageFormat = Literal["png", "jpeg"]
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg"}


@dataclass(frozen=True)
class ImageSpec:
    """What a generated image looks like: logical size, format, and whether it was blacked out."""

    width: int
    height: int
    fmt: ImageFormat = "png"
    black: bool = False
    seed: int = 0

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]


@functools.lru_cache(maxsize=64)
def render(spec: ImageSpec, scale: float = 1.0) -> bytes:
    """Encode ``spec`` at ``scale`` times its logical size (a red/green gradient tinted by the seed)."""
    width = max(1, round(spec.width * scale))
    height = max(1, round(spec.height * scale))
    if spec.black:
        image = Image.new("RGB", (width, height))
    else:
        ramp = Image.linear_gradient("L")  # 256x256, dark at the top
        green = ramp.resize((width, height))
        red = ramp.rotate(90).resize((width, height))
        blue = Image.new("L", (width, height), spec.seed % 256)
        image = Image.merge("RGB", (red, green, blue))
    out = io.BytesIO()
    if spec.fmt == "png":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, "JPEG", quality=85)
    return out.getvalue()


@functools.lru_cache(maxsize=4)
def bomb_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG of ``width`` x ``height``, written chunk by chunk: a few KB that declare (and decode
    to) as many pixels as asked, without this process ever holding them."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])  # 1-bit grey
    packer, row = zlib.compressobj(9), bytes(1 + (width + 7) // 8)  # filter byte 0, then all-black pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def size_of(data: bytes) -> tuple[int, int] | None:
    """Pixel size of encoded image bytes, or None if Pillow cannot read them."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def decode_data_uri(uri: str) -> bytes | None:
    """Bytes of a base64 ``data:`` URI, or None if ``uri`` is not one."""
    if not uri.startswith("data:") or ";base64," not in uri:
        return None
    try:
        return base64.b64decode(uri.split(";base64,", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return None


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


class FileStore:
    """Files a fake serves at ``GET /files/{name}``: generated images (rendered lazily) and uploads.

    ``expiry_s`` (None = never): a file is gone (``get`` and ``logical_size`` answer None) once
    it is that many seconds old, counted from when it was added (``time.monotonic()``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, ImageSpec] = {}
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._added: dict[str, float] = {}
        self.scale = 1.0
        self.expiry_s: float | None = None

    def add_image(self, name: str, spec: ImageSpec) -> None:
        with self._lock:
            self._specs[name] = spec
            self._added[name] = time.monotonic()

    def add_blob(self, name: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._blobs[name] = (data, content_type)
            self._added[name] = time.monotonic()

    def _expired(self, name: str) -> bool:
        added = self._added.get(name)
        return self.expiry_s is not None and added is not None and time.monotonic() - added >= self.expiry_s

    def get(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            if self._expired(name):
                return None
            blob = self._blobs.get(name)
            spec = self._specs.get(name)
            scale = self.scale
        if blob is not None:
            return blob
        if spec is None:
            return None
        return render(spec, scale), spec.content_type

    def logical_size(self, name: str) -> tuple[int, int] | None:
        """Size of a stored file as the API reports it (logical size for generated images)."""
        with self._lock:
            if self._expired(name):
                return None
            spec = self._specs.get(name)
            blob = self._blobs.get(name)
        if spec is not None:
            return spec.width, spec.height
        return size_of(blob[0]) if blob is not None else None

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()
            self._blobs.clear()
            self._added.clear()
        self.scale = 1.0
        self.expiry_s = None
