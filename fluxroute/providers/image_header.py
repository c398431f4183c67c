"""What an image's bytes declare, read without decoding a single pixel: its size, and whether it is whole.

`declared_size` reads the pixel size from the first bytes. `check_whole` checks the structure of a PNG, JPEG or
WebP from its first byte to its last: every length fits, every checksum the format carries holds, and the end
marker the format requires ends the bytes. A truncated body fails it, and so does a corrupted PNG (each chunk
carries a CRC-32); a byte flipped inside JPEG or WebP compressed data passes (those formats carry no checksum
over it, and only a full decode could notice).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
import zlib
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from fluxroute.errors import UnsafeURL

# the image types a data: URI may carry (SVG and HTML can carry scripts)
DATA_URI_TYPES = ("image/png", "image/jpeg", "image/webp")

__all__ = [
    "MAX_PARTS",
    "DamagedImage",
    "Header",
    "check_pillow_limit",
    "check_whole",
    "declared_size",
    "header",
    "png_or_webp_size",
]

Kind = Literal["png", "jpeg", "webp"]
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> depths
_PNG_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_MAX_CHUNK = 2**31 - 1
# the chunks (PNG, WebP) or marker segments (JPEG) one image may hold: a 64 MB PNG written in libpng's 8 KB IDAT
# chunks has 8,192; a body of millions of empty chunks would only cost seconds of walking them
MAX_PARTS = 100_000
# JPEG frame headers (SOF0-3, 5-7, 9-11, 13-15); C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# inside entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker (D0-D7) or a fill 0xFF;
# anything else is the next marker
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


class DamagedImage(ValueError):
    """Bytes that begin as a PNG, JPEG or WebP but are not a whole one: truncated, corrupted or malformed."""


@dataclass(frozen=True)
class Header:
    """What an image's header declares: its format and its size in pixels."""

    kind: Kind
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


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
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 33:
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


def header(data: bytes) -> Header | None:
    """The format and size a PNG, JPEG or WebP declares, read from its header alone; None for other formats.

    Raises:
        DamagedImage: the bytes begin as one of the three formats but hold no readable header.
    """
    if data[:8] == PNG_SIGNATURE:
        width, height = _png_header(data)
        return Header("png", width, height)
    if data[:3] == b"\xff\xd8\xff":
        width, height = _jpeg_frame(data)
        return Header("jpeg", width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = png_or_webp_size(data)
        if size is None or size[0] <= 0 or size[1] <= 0:
            raise DamagedImage("a WebP without a readable VP8, VP8L or VP8X header")
        return Header("webp", *size)
    return None


def check_whole(data: bytes, kind: Kind) -> None:
    """Check that `data`, which `header` read as `kind`, is a whole image of that format, end to end, without
    decoding it. PNG: every chunk's length fits and its CRC-32 holds, IHDR comes first, the IDAT chunks run
    together, PLTE comes where the colour type wants one, no unknown critical chunk, and IEND ends the bytes.
    JPEG: every marker segment fits, a frame header (SOF) and a scan (SOS) come in order, and EOI ends the bytes
    (T.81 defines nothing after EOI, so no trailing byte, not even zero padding, is accepted). WebP: the RIFF
    length is the body's, every chunk fits (padding included) and ends exactly at the end, and the VP8, VP8L
    or VP8X chunk holds a well-formed header.

    Raises:
        DamagedImage: what is wrong, in a few words.
    """
    if kind == "png":
        _check_png(data)
    elif kind == "jpeg":
        _check_jpeg(data)
    else:
        _check_webp(data)


def check_pillow_limit(width: int, height: int) -> None:
    """Pillow's own decompression-bomb check (Image.MAX_IMAGE_PIXELS), applied as Image.open applies it: a
    DecompressionBombWarning over the limit (an error where warnings are errors), a DecompressionBombError over
    twice the limit. It keeps a lowered Pillow limit in force for images that Pillow never opens here."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = width * height
    if limit is None or pixels <= limit:
        return
    if pixels > 2 * limit:
        raise Image.DecompressionBombError(
            f"Image size ({pixels} pixels) exceeds limit of {2 * limit} pixels, could be decompression bomb DOS attack."
        )
    warnings.warn(
        f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, could be decompression bomb DOS attack.",
        Image.DecompressionBombWarning,
        stacklevel=2,
    )


# --- PNG ------------------------------------------------------------------------------------------------------------


def _png_header(data: bytes) -> tuple[int, int]:
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise DamagedImage("a PNG whose first chunk is not a 13-byte IHDR")
    if zlib.crc32(memoryview(data)[12:29]) != int.from_bytes(data[29:33], "big"):
        raise DamagedImage("the PNG's IHDR fails its CRC")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, compression, filtering, interlace = data[24:29]
    if not (0 < width <= _MAX_CHUNK and 0 < height <= _MAX_CHUNK):
        raise DamagedImage(f"the PNG declares {width}x{height} pixels")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise DamagedImage(
            f"the PNG's IHDR is malformed (bit depth {depth}, colour type {colour}, compression {compression}, "
            f"filter {filtering}, interlace {interlace})"
        )
    return width, height


def _check_png(data: bytes) -> None:
    colour = data[25]
    view, end, crc32 = memoryview(data), len(data), zlib.crc32
    pos, seen_palette, idat_state = 8, False, 0  # IDAT: 0 none yet, 1 in the run, 2 run ended
    for _ in range(MAX_PARTS):
        if pos + 12 > end:
            raise DamagedImage(f"the PNG ends at byte {end} without IEND")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if length > _MAX_CHUNK or not kind.isalpha():
            raise DamagedImage(f"the PNG holds a malformed chunk header at byte {pos}")
        if stop > end:
            raise DamagedImage(f"the PNG's {kind.decode('ascii')} chunk at byte {pos} runs past the end ({end} bytes)")
        if crc32(view[pos + 4 : stop - 4]) != int.from_bytes(data[stop - 4 : stop], "big"):
            raise DamagedImage(f"the PNG's {kind.decode('ascii')} chunk at byte {pos} fails its CRC")
        if kind == b"IDAT":
            if idat_state == 2:
                raise DamagedImage("the PNG's IDAT chunks do not run together")
            if colour == 3 and not seen_palette:
                raise DamagedImage("a palette PNG without PLTE before its image data")
            idat_state = 1
        else:
            idat_state = 2 if idat_state else 0
            if kind == b"IEND":
                if not idat_state:
                    raise DamagedImage("the PNG has no image data (IDAT)")
                if stop != end:
                    raise DamagedImage(f"{end - stop} bytes follow the PNG's IEND")
                return
            if kind == b"PLTE":
                seen_palette = True
            elif not kind[0] & 0x20 and kind not in _PNG_CRITICAL:  # an upper-case first letter: critical
                raise DamagedImage(f"the PNG holds an unknown critical chunk {kind.decode('ascii')}")
            elif kind == b"IHDR" and pos != 8:
                raise DamagedImage("the PNG holds a second IHDR")
        pos = stop
    raise DamagedImage(f"the PNG holds more than {MAX_PARTS} chunks")


# --- JPEG -----------------------------------------------------------------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[int, int, int]:
    """Walk marker segments from SOI to the first SOS; (width, height) from the frame header and the offset of
    the first scan's entropy-coded data."""
    end, pos, size = len(data), 2, None
    for _ in range(MAX_PARTS):
        while pos < end and data[pos] == 0xFF and pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 4 > end:
            raise DamagedImage("the JPEG ends before its first scan")
        if data[pos] != 0xFF:
            raise DamagedImage(f"the JPEG holds no marker at byte {pos}")
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xD8, 0xD9) or 0xD0 <= marker <= 0xD7 or marker in (0x00, 0x01):
            raise DamagedImage(f"the JPEG holds marker {marker:02X} before its first scan")
        stop = pos + 2 + length
        if length < 2 or stop > end:
            raise DamagedImage(f"the JPEG's segment {marker:02X} at byte {pos} runs past the end ({end} bytes)")
        if marker in _JPEG_SOF:
            if size is not None:
                raise DamagedImage("the JPEG holds a second frame header")
            components = data[pos + 9] if length >= 8 else 0
            if length < 8 or length != 8 + 3 * components or components == 0:
                raise DamagedImage("the JPEG's frame header is malformed")
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if width == 0 or height == 0:
                raise DamagedImage(f"the JPEG's frame header declares {width}x{height} pixels")
            size = (width, height)
        elif marker == 0xDA:
            if size is None:
                raise DamagedImage("the JPEG's first scan comes before its frame header")
            return size[0], size[1], stop
        pos = stop
    raise DamagedImage(f"the JPEG holds more than {MAX_PARTS} marker segments")


def _jpeg_frame(data: bytes) -> tuple[int, int]:
    width, height, _ = _jpeg_segments(data)
    return width, height


def _check_jpeg(data: bytes) -> None:
    _, _, pos = _jpeg_segments(data)
    end, find = len(data), _JPEG_MARKER.search
    for _ in range(MAX_PARTS):
        found = find(data, pos)  # the end of this scan's entropy-coded data
        if found is None:
            raise DamagedImage("the JPEG ends before its EOI marker")
        pos = found.start()
        marker = data[pos + 1]
        if marker == 0xD9:
            if pos + 2 != end:
                raise DamagedImage(f"{end - pos - 2} bytes follow the JPEG's EOI marker")
            return
        if marker in (0xD8, 0x01) or marker in _JPEG_SOF:
            raise DamagedImage(f"the JPEG holds marker {marker:02X} after its first scan")
        if pos + 4 > end:
            raise DamagedImage("the JPEG ends before its EOI marker")
        stop = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if stop - pos < 4 or stop > end:
            raise DamagedImage(f"the JPEG's segment {marker:02X} at byte {pos} runs past the end ({end} bytes)")
        if stop == end:
            raise DamagedImage("the JPEG ends before its EOI marker")
        if marker != 0xDA and data[stop] != 0xFF:  # only a scan header is followed by coded data
            raise DamagedImage(f"the JPEG's segment {marker:02X} at byte {pos} is not followed by a marker")
        pos = stop  # a table, or another scan's header (progressive JPEG)
    raise DamagedImage(f"the JPEG holds more than {MAX_PARTS} marker segments")


# --- WebP -----------------------------------------------------------------------------------------------------------


def _check_webp(data: bytes) -> None:
    end = len(data)
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared != end:
        raise DamagedImage(f"the WebP's RIFF header declares {declared} bytes, the body has {end}")
    pos, first, frames, parts = 12, True, 0, 0
    while pos < end:
        parts += 1
        if parts > MAX_PARTS:
            raise DamagedImage(f"the WebP holds more than {MAX_PARTS} chunks")
        if pos + 8 > end:
            raise DamagedImage(f"the WebP ends inside a chunk header at byte {pos}")
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body, stop = pos + 8, pos + 8 + length + (length & 1)
        if stop > end:
            raise DamagedImage(f"the WebP's {kind!r} chunk at byte {pos} runs past the end ({end} bytes)")
        if first and kind not in (b"VP8 ", b"VP8L", b"VP8X"):
            raise DamagedImage(f"the WebP's first chunk is {kind!r}, not VP8, VP8L or VP8X")
        if kind == b"VP8 ":
            _check_vp8(data, body, length)
            frames += 1
        elif kind == b"VP8L":
            if length < 5 or data[body] != 0x2F or data[body + 4] >> 5:
                raise DamagedImage("the WebP's VP8L header is malformed")
            frames += 1
        elif kind == b"VP8X":
            if not first or length < 10:
                raise DamagedImage("the WebP's VP8X chunk is malformed or out of place")
        elif kind == b"ANMF":
            frames += 1
        first = False
        pos = stop
    if frames == 0:
        raise DamagedImage("the WebP holds no image data (VP8, VP8L or ANMF)")


def _check_vp8(data: bytes, body: int, length: int) -> None:
    if length < 10 or data[body + 3 : body + 6] != b"\x9d\x01\x2a":
        raise DamagedImage("the WebP's VP8 header is malformed")
    tag = int.from_bytes(data[body : body + 3], "little")
    # a shown key frame of profile 0-3, whose first partition fits in the chunk
    if tag & 1 or (tag >> 1) & 7 > 3 or not (tag >> 4) & 1 or (tag >> 5) > length - 10:
        raise DamagedImage("the WebP's VP8 frame header is malformed")


def data_uri_image(uri: str, max_bytes: int) -> bytes:
    """The bytes of a `data:image/png|jpeg|webp;base64,...` URI, at most `max_bytes` (refused before decoding).

    Raises:
        UnsafeURL: another media type (SVG and HTML can carry scripts), not base64, or too large.
    """
    header, comma, payload = uri.partition(",")
    media_type, _, encoding = header.removeprefix("data:").lower().partition(";")
    if not comma or media_type not in DATA_URI_TYPES or encoding != "base64":
        raise UnsafeURL(f"data: URIs must be base64 {', '.join(DATA_URI_TYPES)}; got {header[:60]!r}")
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise UnsafeURL(f"its data is larger than the {max_bytes} byte limit (max_input_image_bytes)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise UnsafeURL("its base64 data does not decode") from None
    if len(data) > max_bytes:
        raise UnsafeURL(f"its data is larger than the {max_bytes} byte limit (max_input_image_bytes)")
    return data


def within_pixel_cap(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """`size`, if its width x height is within `max_pixels` (the setting max_image_pixels).

    Raises:
        UnsafeURL: it declares more.
    """
    width, height = size
    if width * height > max_pixels:
        raise UnsafeURL(f"the image declares {width}x{height} pixels, more than max_image_pixels ({max_pixels})")
    return size
