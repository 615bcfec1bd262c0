"""The standard codecs a refiner sits on: Pillow's JPEG, WebP and AVIF, by our short names.

Pillow is imported where it is used, so the command line can list the names without it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..errors import RDCFormatError

FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
"""Our name of each base codec -> Pillow's format name."""
SUFFIXES = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif"}
_FEATURES = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

if TYPE_CHECKING:
    import numpy as np


def check_format(name: str) -> str:
    """``name`` if it is one of :data:`FORMATS` and this Pillow can write it; ``ValueError`` otherwise."""
    from PIL import features

    if name not in FORMATS:
        raise ValueError(f"base codec must be one of {', '.join(FORMATS)}, got {name!r}")
    if not features.check(_FEATURES[name]):
        raise ValueError(f"this Pillow has no {FORMATS[name]} support (pip install -U pillow)")
    return name


def encode(image, format: str, quality: int) -> bytes:
    """A PIL ``image`` (RGB or L) as a ``format`` file at Pillow's ``quality`` (0..100)."""
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[check_format(format)], quality=int(quality))
    return buffer.getvalue()


def probe(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from the header alone, before any pixel is decoded (so a pixel limit can be
    checked first); anything but a JPEG, WebP or AVIF file raises :class:`RDCFormatError` naming what it is."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            found = (image.format or "").upper()
            width, height = image.size
    except _ERRORS as err:  # UnidentifiedImageError is an OSError
        raise RDCFormatError(f"not a readable JPEG, WebP or AVIF file: {err}") from err
    if found not in FORMATS.values():
        raise RDCFormatError(f"not a JPEG, WebP or AVIF file (Pillow reads it as {found or 'unknown'})")
    return next(k for k, v in FORMATS.items() if v == found), width, height


def decode(data: bytes) -> tuple[np.ndarray, str]:
    """``(uint8 [H, W, 3] pixels, mode)`` of a file :func:`probe` accepted (mode ``"L"`` for grayscale, else
    ``"RGB"``); a broken file raises :class:`RDCFormatError`."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = "L" if image.mode in ("L", "1") else "RGB"
            return np.array(image.convert("RGB")), mode
    except _ERRORS as err:
        raise RDCFormatError(f"not a readable JPEG, WebP or AVIF file: {err}") from err
