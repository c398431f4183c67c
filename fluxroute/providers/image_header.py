"""The pixel size an image's first bytes declare, read without decoding a single pixel."""

from __future__ import annotations

import io
import zlib

from PIL import Image

from fluxroute.errors import UnsafeURL

__all__ = ["declared_size", "png_or_webp_size"]


def declared_size(data: bytes) -> tuple[int, int] | None:
    """The size an image's first bytes declare, or None when they hold none (or are no image). No pixel is
    decoded, so an image declaring a huge size costs nothing here.

    Raises:
        UnsafeURL: Pillow's own decompression-bomb check refused the size it read (Image.MAX_IMAGE_PIXELS).
    """
    size = png_or_webp_size(data)
    if size is None:
        try:
            with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header, decodes no pixels
                size = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning where warnings raise
            raise UnsafeURL(f"the image declares more than {Image.MAX_IMAGE_PIXELS} pixels") from None
        except Exception:  # Pillow raises many kinds on truncated or foreign bytes
            return None
    return size if size[0] > 0 and size[1] > 0 else None


def png_or_webp_size(data: bytes) -> tuple[int, int] | None:
    """PNG's IHDR and WebP's frame header, read directly: Pillow wants the chunks after PNG's IHDR (which a
    large text or ICC chunk can push past the header budget) and the whole file for WebP."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 33:
        # only a header whose checksum holds declares anything: garbled bytes are garbled, not a size
        if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
