"""The standard codecs a refiner sits on: Pillow's JPEG, WebP and AVIF, by our short names.

Pillow is imported where it is used, so the command line can list the names without it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import RDCFormatError

FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
"""Our name of each base codec -> Pillow's format name."""
SUFFIXES = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif"}
_FEATURES = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

ORIENTATION_TAG = 0x0112
"""EXIF Orientation: how viewers turn a file's stored pixels (1: as stored; 2-8: a flip or quarter turn)."""
_UPRIGHT = {1: (False, 0, ()), 2: (False, 0, (-1,)), 3: (False, 2, ()), 4: (False, 0, (-2,)),
            5: (True, 0, ()), 6: (False, -1, ()), 7: (True, 2, ()), 8: (False, 1, ())}
"""Orientation -> (transpose, counter-clockwise quarter turns, flipped dims): ``PIL.ImageOps.exif_transpose``."""

if TYPE_CHECKING:
    import numpy as np
    import PIL.Image
    from torch import Tensor


def check_format(name: str) -> str:
    """``name`` if it is one of :data:`FORMATS` and this Pillow can write it; ``ValueError`` otherwise."""
    from PIL import features

    if name not in FORMATS:
        raise ValueError(f"base codec must be one of {', '.join(FORMATS)}, got {name!r}")
    if not features.check(_FEATURES[name]):
        raise ValueError(f"this Pillow has no {FORMATS[name]} support (pip install -U pillow)")
    return name


def encode(image, format: str, quality: int) -> bytes:
    """A PIL ``image`` (RGB or L) as a ``format`` file at Pillow's ``quality`` (0..100), with the image's ICC
    profile if it has one (its pixels are in that colour space; without it viewers would take them as sRGB)."""
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[check_format(format)], quality=int(quality), icc_profile=image.info.get("icc_profile"))
    return buffer.getvalue()


@contextmanager
def _opened(data: bytes) -> Iterator[PIL.Image.Image]:
    """Pillow's lazily opened image of ``data``: whatever Pillow cannot read, on opening or inside the block,
    raises :class:`RDCFormatError` (UnidentifiedImageError is an OSError)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            yield image
    except UnidentifiedImageError as err:  # its message is the repr of our buffer: say what the bytes are instead
        raise RDCFormatError(_unidentified(data)) from err
    except _ERRORS as err:
        raise RDCFormatError(f"not a readable JPEG, WebP or AVIF file: {err}") from err


def _unidentified(data: bytes) -> str:
    """What bytes Pillow cannot identify are: a broken file of one of the three formats (by its signature), one of our
    own files (named, with its command), or something else."""
    from ..bitstream.rdc import MAGIC
    from ..bitstream.rdcv import VIDEO_MAGIC

    broken = ("JPEG" if data.startswith(b"\xff\xd8\xff") else "WebP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP"
              else "AVIF" if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis") else None)
    if broken:
        return f"not a readable JPEG, WebP or AVIF file: a {broken} file whose header does not read"
    if data.startswith(MAGIC):
        return "not a JPEG, WebP or AVIF file: an .rdc file (rdc decompress, RDCPipeline.decompress)"
    if data.startswith(VIDEO_MAGIC):
        return "not a JPEG, WebP or AVIF file: an .rdcv clip (rdc decompress-video, RDCVideoPipeline)"
    return "not a JPEG, WebP or AVIF file: not an image format Pillow can identify"


def probe(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from the header alone, before any pixel is decoded (so a pixel limit can be
    checked first); anything but a JPEG, WebP or AVIF file raises :class:`RDCFormatError` naming what it is."""
    with _opened(data) as image:
        found = (image.format or "").upper()
        width, height = image.size
    if found not in FORMATS.values():
        raise RDCFormatError(f"not a JPEG, WebP or AVIF file (Pillow reads it as {found or 'unknown'})")
    return next(k for k, v in FORMATS.items() if v == found), width, height


def decode(data: bytes) -> tuple[np.ndarray, str, np.ndarray | None]:
    """``(uint8 [H, W, 3] pixels as stored, mode, uint8 [H, W] alpha or None)`` of a file :func:`probe` accepted
    (mode ``"L"`` for grayscale, else ``"RGB"``; WebP and AVIF may hold transparency); a broken file raises
    :class:`RDCFormatError`. :func:`viewing` says how viewers show them."""
    import numpy as np

    with _opened(data) as image:
        image.load()
        mode = "L" if image.mode in ("L", "1") else "RGB"
        alpha = np.array(image.getchannel("A")) if image.mode in ("RGBA", "LA") else None
        return np.array(image.convert("RGB")), mode, alpha


def viewing(data: bytes) -> tuple[int, bytes | None]:
    """``(EXIF orientation, ICC profile)`` of a file :func:`probe` accepted, from its header: how viewers turn its
    stored pixels (1: as stored; :func:`upright` does it) and the colour space they show them in (None: sRGB; see
    :func:`~rdc_diffusers.media.image_io.icc_profile`). A phone's photo is often both turned and in Display P3; a
    refinement of its pixels must be shown the same way."""
    from .image_io import icc_profile

    with _opened(data) as image:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
        return orientation if orientation in _UPRIGHT else 1, icc_profile(image)


def upright(x: Tensor, orientation: int) -> Tensor:
    """``x`` ``[..., H, W]`` (a file's stored pixels, or their refinement) turned as viewers turn them for the
    file's EXIF ``orientation``. A refiner works on the stored pixels, where the codec's blocks lie, and turns its
    result: a camera JPEG refined comes out the way every viewer shows the JPEG."""
    import torch

    transpose, turns, flips = _UPRIGHT[orientation]
    if transpose:
        x = x.transpose(-2, -1)
    return torch.rot90(x, turns, dims=(-2, -1)).flip(flips) if turns or flips else x


def payload_bytes(data: bytes) -> int:
    """Bytes of coded pixels in a file :func:`probe` accepted: the container's headers and metadata (JPEG tables,
    EXIF, ICC, XMP, thumbnails) left out.

    A file's rate says how coarsely its pixels were coded only without them: Pillow's headers alone are ~620 bytes
    (JPEG) and ~300 (AVIF), 0.3 and 0.15 bpp on a 128² crop, and a camera's EXIF can outweigh the picture.
    JPEG: the entropy-coded scans; WebP: the ``VP8 ``/``VP8L``/``ALPH`` chunks; AVIF: the ``mdat`` boxes (which also
    hold an EXIF item if the file has one). A structure this does not recognise counts the whole file.
    """
    if data[:2] == b"\xff\xd8":
        return _jpeg_payload(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _chunks_payload(data, 12, {b"VP8 ", b"VP8L", b"ALPH"}, riff=True)
    return _chunks_payload(data, 0, {b"mdat"}, riff=False)


def _jpeg_payload(data: bytes) -> int:
    """Bytes of entropy-coded scan data: after each SOS header up to the next marker (restart markers and stuffed
    bytes are part of a scan); tables between the scans of a progressive file are left out too."""
    position, total = 2, 0
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xD9:  # end of image
            break
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xDA:  # start of scan: its header, then the coded data up to the next real marker
            end = position
            while (end := data.find(b"\xff", end)) != -1 and end + 1 < len(data):
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:  # stuffed 0xFF or a restart marker
                    end += 2
                elif data[end + 1] == 0xFF:
                    end += 1
                else:
                    break
            end = len(data) if end == -1 or end + 1 >= len(data) else end
            total, position = total + end - position, end
    return total or len(data)


_STANDALONE_MARKERS = {0x01, 0xD8, *range(0xD0, 0xD8)}
"""JPEG markers without a length field: TEM, SOI and the restart markers."""


def lossless(data: bytes) -> bool:
    """Whether a file :func:`probe` accepted holds its pixels exactly: a lossless WebP (its image in a ``VP8L``
    chunk). There is nothing to restore in one, so a refiner returns it as decoded. (Pillow writes JPEG and AVIF
    lossy at every quality.)"""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return any(kind == b"VP8L" for kind, _ in _chunks(data, 12, riff=True) or [])


def _chunks_payload(data: bytes, position: int, kinds: set[bytes], *, riff: bool) -> int:
    """Sum of the payload sizes of the ``kinds`` chunks; the whole file if there are none or the bytes do not have
    the structure."""
    sizes = [size for kind, size in _chunks(data, position, riff=riff) or [] if kind in kinds]
    return sum(sizes) if sizes else len(data)


def _chunks(data: bytes, position: int, *, riff: bool) -> list[tuple[bytes, int]] | None:
    """``(type, payload size)`` of each chunk from ``position`` on (RIFF: little-endian size, then type; ISOBMFF
    boxes: big-endian size, then type, a size of 1 meaning a 64-bit size follows and 0 "to the end of the file");
    None if the bytes do not have that structure."""
    chunks = []
    while position + 8 <= len(data):
        if riff:
            kind, header = data[position:position + 4], 8
            size = int.from_bytes(data[position + 4:position + 8], "little")
            size += header + (size & 1)  # chunks are padded to even sizes
        else:
            size, kind, header = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8], 8
            if size == 1:
                size, header = int.from_bytes(data[position + 8:position + 16], "big"), 16
            elif size == 0:
                size = len(data) - position
        if size < header:
            return None
        chunks.append((kind, size - header))
        position += size
    return chunks
