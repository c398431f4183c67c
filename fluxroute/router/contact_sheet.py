"""The contact sheet of a draft set: one small JPEG with the drafts side by side, numbered 1..n in large print."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["SHEET_BUDGET", "contact_sheet", "read_or_none"]

# at most this many bytes: it goes inline as a tool result's preview (server/delivery.py INLINE_BUDGET)
SHEET_BUDGET = 200_000
TILE = 384  # the long edge of one draft on the sheet, in pixels
GAP = 8
QUALITY = 82


def contact_sheet(images: list[bytes | None], budget: int = SHEET_BUDGET) -> bytes:
    """A JPEG of `images` (encoded PNG/JPEG; None for a draft that cannot be shown, drawn as a grey tile) in a
    grid, each numbered from 1 in its top-left corner, within `budget` bytes (smaller tiles when it must)."""
    tile = TILE
    while True:
        data = _render(images, tile, QUALITY)
        if len(data) <= budget or tile <= 96:
            return data
        tile = int(tile * math.sqrt(budget / len(data)) * 0.9)


def _render(images: list[bytes | None], tile: int, quality: int) -> bytes:
    from PIL import Image, ImageDraw, ImageFont  # loaded by the first sheet: planning never needs it

    count = max(1, len(images))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tiles = [_tile(data, tile) for data in images]
    width = columns * tile + (columns + 1) * GAP
    height = rows * tile + (rows + 1) * GAP
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font_size = max(16, tile // 7)
    font = ImageFont.load_default(size=font_size)
    for number, picture in enumerate(tiles, start=1):
        row, column = divmod(number - 1, columns)
        left = GAP + column * (tile + GAP) + (tile - picture.width) // 2
        top = GAP + row * (tile + GAP) + (tile - picture.height) // 2
        sheet.paste(picture, (left, top))
        label = str(number)
        box = draw.textbbox((0, 0), label, font=font)
        pad = font_size // 3
        badge = (left + pad, top + pad, left + pad * 3 + box[2] - box[0], top + pad * 3 + box[3] - box[1])
        draw.rounded_rectangle(badge, radius=pad, fill=(0, 0, 0), outline=(255, 255, 255), width=max(2, pad // 3))
        draw.text((badge[0] + pad - box[0], badge[1] + pad - box[1]), label, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _tile(data: bytes | None, tile: int) -> PILImage:
    from PIL import Image, UnidentifiedImageError

    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as source:
                picture = source.convert("RGB")
                picture.thumbnail((tile, tile), Image.Resampling.LANCZOS)
                return picture
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
            pass
    return Image.new("RGB", (tile, tile), (96, 96, 96))


def read_or_none(path: str | None) -> bytes | None:
    """The saved image at `path` (no link followed), or None when it is gone or cannot be read."""
    if path is None:
        return None
    from fluxroute.store.files import read_regular

    try:
        return read_regular(Path(path))
    except OSError:
        return None
