"""The ``.rdcv`` byte format for a whole clip: the one place that writes and reads it (spec: ``docs/bitstream.md``).

Like ``.rdc``: a header, entropy-coded sections and a CRC-32 over everything, and every way the bytes can
be wrong surfaces as :class:`~rdc_diffusers.errors.RDCFormatError`. The header names both models the
clip needs (the image codec for I-frames, the inter codec for P-frames) by fingerprint.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from ..errors import RDCFormatError, RDCModelMismatchError
from .container import MODEL_ID_SIZE, U32, check_int, decode_name, encode_name, read_sections, seal, verified_body
from .rdc import MAGIC

__all__ = ["FRAME_SECTIONS", "VIDEO_FORMAT_VERSION", "VIDEO_MAGIC", "RDCVFile", "RDCVHeader", "check_models",
           "decode_video_file", "encode_video_file"]

VIDEO_MAGIC = b"\x89RDV"
VIDEO_FORMAT_VERSION = 1
FRAME_SECTIONS = {"I": 2, "P": 4}
"""Sections per frame type: I = (ŷ, ẑ) of the image codec; P = (motion ŷ, ẑ, residual ŷ, ẑ) of the inter codec."""
_FRAME_TYPES = ("I", "P")  # the index is the byte written

# magic | version | flags | width | height | fps num | fps den | gop | frames | codec id | inter id | name_len
_PREFIX = struct.Struct(">4sBBHHIIHI8s8sB")
# seed | num_inference_steps
_MIDDLE = struct.Struct(">QH")
MAX_FRAMES = 100_000


@dataclass(frozen=True)
class RDCVHeader:
    """What a decoder needs besides the frames' payloads."""

    width: int  # frame size before padding, 1..65535
    height: int
    fps: Fraction  # frames per second, numerator and denominator 1..2**32 - 1
    gop_size: int  # distance between I-frames the encoder used, 1..65535 (informative; frame types are explicit)
    codec_id: bytes  # 8-byte fingerprint of the image codec (I-frames)
    inter_codec_id: bytes  # 8-byte fingerprint of the inter codec (P-frames)
    model_name: str  # utf-8, at most 255 bytes
    seed: int  # sampling seed of the refinement, 0 <= seed < 2**64
    num_inference_steps: int  # default refinement steps, 0..65535


@dataclass(frozen=True)
class RDCVFile:
    header: RDCVHeader
    frame_types: tuple[str, ...]  # "I" or "P" per frame; the first is "I"
    sections: tuple[tuple[bytes, ...], ...]  # per frame, FRAME_SECTIONS[type] payloads


def encode_video_file(file: RDCVFile) -> bytes:
    """Serialize ``file``; bad fields raise ``ValueError`` (``TypeError`` for wrong types), never a bad file."""
    h = file.header
    width = check_int("width", h.width, 1, 0xFFFF)
    height = check_int("height", h.height, 1, 0xFFFF)
    fps = Fraction(h.fps)
    check_int("fps numerator", fps.numerator, 1, 0xFFFFFFFF)
    check_int("fps denominator", fps.denominator, 1, 0xFFFFFFFF)
    gop = check_int("gop_size", h.gop_size, 1, 0xFFFF)
    for name in ("codec_id", "inter_codec_id"):
        value = getattr(h, name)
        if not isinstance(value, (bytes, bytearray)) or len(value) != MODEL_ID_SIZE:
            raise ValueError(f"{name} must be {MODEL_ID_SIZE} bytes, got {value!r}")
    name = encode_name(h.model_name)
    seed = check_int("seed", h.seed, 0, 2**64 - 1)
    steps = check_int("num_inference_steps", h.num_inference_steps, 0, 0xFFFF)
    count = check_int("frame count", len(file.frame_types), 1, MAX_FRAMES)
    if len(file.sections) != count:
        raise ValueError(f"{count} frame types but {len(file.sections)} frames of sections")
    if file.frame_types[0] != "I":
        raise ValueError("the first frame must be an I-frame")
    for i, (kind, sections) in enumerate(zip(file.frame_types, file.sections, strict=True)):
        if kind not in FRAME_SECTIONS:
            raise ValueError(f"frame {i}: type must be 'I' or 'P', got {kind!r}")
        if len(sections) != FRAME_SECTIONS[kind]:
            raise ValueError(f"frame {i}: a {kind}-frame has {FRAME_SECTIONS[kind]} sections, got {len(sections)}")

    body = bytearray(_PREFIX.pack(VIDEO_MAGIC, VIDEO_FORMAT_VERSION, 0, width, height, fps.numerator,
                                  fps.denominator, gop, count, bytes(h.codec_id), bytes(h.inter_codec_id), len(name)))
    body += name
    body += _MIDDLE.pack(seed, steps)
    body += bytes(_FRAME_TYPES.index(kind) for kind in file.frame_types)
    return seal(body, [bytes(s) for sections in file.sections for s in sections])


def decode_video_file(data: bytes | bytearray | memoryview) -> RDCVFile:
    """Parse an ``.rdcv`` file; any bad input raises :class:`RDCFormatError` and nothing else.

    The CRC is checked before any field past the version is trusted, so corruption is reported as such.
    """
    is_image = isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[: len(MAGIC)]) == MAGIC
    hint = " (this is an .rdc image file: use decompress, not decompress-video)" if is_image else ""
    minimum = _PREFIX.size + _MIDDLE.size + 1 + 2 * U32.size + U32.size
    body = verified_body(data, VIDEO_MAGIC, VIDEO_FORMAT_VERSION, minimum, ".rdcv", hint)

    # From here on the bytes are what the writer wrote; the checks catch a buggy or hostile writer.
    (_, _, flags, width, height, fps_num, fps_den, gop, count, codec_id, inter_id,
     name_len) = _PREFIX.unpack_from(body, 0)
    if flags != 0:
        raise RDCFormatError(f"unsupported feature flags 0x{flags:02x}; this reader supports none")
    if width < 1 or height < 1 or fps_num < 1 or fps_den < 1 or gop < 1 or not 1 <= count <= MAX_FRAMES:
        raise RDCFormatError(f"invalid header: {width}x{height}, fps {fps_num}/{fps_den}, gop {gop}, {count} frames")
    pos = _PREFIX.size
    if pos + name_len + _MIDDLE.size + count > len(body):
        raise RDCFormatError("header runs past the end of the file")
    model_name = decode_name(body, pos, name_len)
    pos += name_len
    seed, steps = _MIDDLE.unpack_from(body, pos)
    pos += _MIDDLE.size
    type_bytes = body[pos : pos + count]
    pos += count
    if any(b >= len(_FRAME_TYPES) for b in type_bytes):
        raise RDCFormatError("unknown frame type")
    frame_types = tuple(_FRAME_TYPES[b] for b in type_bytes)
    if frame_types[0] != "I":
        raise RDCFormatError("the first frame is not an I-frame")
    flat = read_sections(body, pos, sum(FRAME_SECTIONS[kind] for kind in frame_types))
    sections, index = [], 0
    for kind in frame_types:
        sections.append(flat[index : index + FRAME_SECTIONS[kind]])
        index += FRAME_SECTIONS[kind]
    header = RDCVHeader(width=width, height=height, fps=Fraction(fps_num, fps_den), gop_size=gop, codec_id=codec_id,
                        inter_codec_id=inter_id, model_name=model_name, seed=seed, num_inference_steps=steps)
    return RDCVFile(header=header, frame_types=frame_types, sections=tuple(sections))


def check_models(header: RDCVHeader, codec_id: bytes, inter_codec_id: bytes, model_name: str) -> None:
    """Refuse a clip written by other models: its latents would decode to garbage, not fail loudly."""
    if bytes(header.codec_id) != bytes(codec_id) or bytes(header.inter_codec_id) != bytes(inter_codec_id):
        raise RDCModelMismatchError(
            f"clip was written by model {header.model_name!r} (ids {bytes(header.codec_id).hex()}/"
            f"{bytes(header.inter_codec_id).hex()}) but the loaded model is {model_name!r} "
            f"(ids {bytes(codec_id).hex()}/{bytes(inter_codec_id).hex()})"
        )
