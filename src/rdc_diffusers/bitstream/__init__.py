"""The byte formats, and the only code that reads or writes them (spec: ``docs/bitstream.md``): ``.rdc`` for an
image (:mod:`.rdc`), ``.rdcv`` for a clip (:mod:`.rdcv`), and what both share (:mod:`.container`). Every way the
bytes can be wrong surfaces as :class:`~rdc_diffusers.errors.RDCFormatError`."""

from __future__ import annotations

from .rdc import FORMAT_VERSION, MAGIC, MODES, RDCFile, RDCHeader, check_model, decode_file, encode_file
from .rdcv import (
    FRAME_SECTIONS,
    VIDEO_FORMAT_VERSION,
    VIDEO_MAGIC,
    RDCVFile,
    RDCVHeader,
    check_models,
    decode_video_file,
    encode_video_file,
)

__all__ = ["FORMAT_VERSION", "FRAME_SECTIONS", "MAGIC", "MODES", "VIDEO_FORMAT_VERSION", "VIDEO_MAGIC", "RDCFile",
           "RDCHeader", "RDCVFile", "RDCVHeader", "check_model", "check_models", "decode_file", "decode_video_file",
           "encode_file", "encode_video_file", "sniff"]


def sniff(data: bytes | bytearray | memoryview) -> RDCFile | RDCVFile:
    """Parse an ``.rdcv`` clip or an ``.rdc`` image, whichever the magic bytes say (``rdc info`` takes both);
    anything else fails as :func:`decode_file` does."""
    if bytes(data[: len(VIDEO_MAGIC)]) == VIDEO_MAGIC:
        return decode_video_file(data)
    return decode_file(data)
