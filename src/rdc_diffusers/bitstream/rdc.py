"""The ``.rdc`` byte format: the one place that writes and reads it (spec: ``docs/bitstream.md``).

Keeping every byte-level decision here means a format change touches one file, and every way a
file can be wrong surfaces as one exception type, :class:`~rdc_diffusers.errors.RDCFormatError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import RDCFormatError, RDCModelMismatchError
from .container import MODEL_ID_SIZE, U32, check_int, decode_name, encode_name, read_sections, seal, verified_body

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MODES",
    "RDCFile",
    "RDCHeader",
    "check_model",
    "decode_file",
    "encode_file",
]

MAGIC = b"\x89RDC"  # the 0x89 high byte keeps text tools from taking the file for text, like PNG
FORMAT_VERSION = 3
OLDEST_READ_VERSION = 2
"""Version 2 lacks the strength byte; it reads as strength 1 (what every version-2 decoder did)."""
RETIRED_VERSIONS = {
    1: "version 1 files were written by the retired single-rate models rdc-bsds-q1, rdc-bsds-q3 and rdc-bsds-q5; "
       "decode them with rdc-diffusers 0.1 (pip install 'rdc-diffusers<0.2')",
}
"""What to tell the holder of a file in a layout this reader no longer reads."""

# Original PIL modes that can be recorded; the index is the byte written, so only ever append.
MODES: tuple[str, ...] = (
    "RGB", "L", "LA", "RGBA", "P", "PA", "1", "I;16", "I;16B", "I;16L",
    "I", "F", "CMYK", "YCbCr", "RGBX", "LAB", "HSV", "La", "RGBa", "I;16N",
)  # fmt: skip

MAX_SECTIONS = 255
FLAG_ICC_PROFILE = 0x01
"""Feature flag: the last section is the image's ICC profile (zlib-compressed, as PNG stores it)."""
MAX_ICC_PROFILE = 4 * 2**20
"""Largest ICC profile read (bytes, inflated): real ones are 0.5-60 KB; a larger one is a zlib bomb."""
QUALITY_SCALE = 100  # the quality and the strength are stored in hundredths
MAX_QUALITY_STORED = 100 * QUALITY_SCALE
MAX_STRENGTH_STORED = 1 * QUALITY_SCALE

# magic | version | flags | width | height | mode | model_id | name_len
_PREFIX = struct.Struct(">4sBBHHB8sB")
# seed | num_inference_steps | quality (hundredths) | strength (hundredths) | n_sections
_MIDDLE = struct.Struct(">QHHBB")
_MIDDLE_V2 = struct.Struct(">QHHB")
# The smallest well-formed file: empty name, one empty section.
MIN_FILE_SIZE = _PREFIX.size + _MIDDLE.size + U32.size + U32.size
_MIN_FILE_SIZE_V2 = MIN_FILE_SIZE - 1


@dataclass(frozen=True)
class RDCHeader:
    """What a decoder needs besides the entropy-coded payloads."""

    width: int  # original image size in pixels (before any padding), 1..65535
    height: int
    mode: str  # original PIL mode of the input, one of MODES
    model_id: bytes  # exactly 8 bytes: fingerprint of the model that wrote the file
    model_name: str  # human-readable name of that model, utf-8, at most 255 bytes
    seed: int  # sampling seed for refinement, 0 <= seed < 2**64
    num_inference_steps: int  # default refinement steps, 0..65535
    quality: float  # the codec's rate setting, 0..100 in steps of 0.01 (stored as u16 hundredths)
    strength: float = 1.0  # default refinement strength, 0..1 in steps of 0.01 (u8 hundredths; version 3 on)


@dataclass(frozen=True)
class RDCFile:
    """A header plus its entropy-coded payloads, e.g. ``(y_string, z_string)``."""

    header: RDCHeader
    sections: tuple[bytes, ...]  # 1..255 sections (254 with an ICC profile)
    icc_profile: bytes | None = None  # the colour space of the image's pixels; None: sRGB


def encode_file(file: RDCFile) -> bytes:
    """Serialize ``file``; bad fields raise ``ValueError`` (``TypeError`` for wrong types), never a bad file."""
    h = file.header
    width = check_int("width", h.width, 1, 0xFFFF)
    height = check_int("height", h.height, 1, 0xFFFF)
    if h.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {h.mode!r}")
    if not isinstance(h.model_id, (bytes, bytearray)):
        raise TypeError(f"model_id must be bytes, got {type(h.model_id).__name__}")
    if len(h.model_id) != MODEL_ID_SIZE:
        raise ValueError(f"model_id must be {MODEL_ID_SIZE} bytes, got {h.model_id!r}")
    name = encode_name(h.model_name)
    seed = check_int("seed", h.seed, 0, 2**64 - 1)
    steps = check_int("num_inference_steps", h.num_inference_steps, 0, 0xFFFF)
    quality = check_hundredths("quality", h.quality, MAX_QUALITY_STORED)
    strength = check_hundredths("strength", h.strength, MAX_STRENGTH_STORED)
    sections = [bytes(s) for s in file.sections]
    flags = 0
    if file.icc_profile:
        if not isinstance(file.icc_profile, (bytes, bytearray)):
            raise TypeError(f"icc_profile must be bytes, got {type(file.icc_profile).__name__}")
        if len(file.icc_profile) > MAX_ICC_PROFILE:
            raise ValueError(f"icc_profile must be at most {MAX_ICC_PROFILE} bytes, got {len(file.icc_profile)}")
        flags |= FLAG_ICC_PROFILE
        sections.append(zlib.compress(bytes(file.icc_profile), 9))
    if not 1 + bool(flags) <= len(sections) <= MAX_SECTIONS:
        raise ValueError(f"an .rdc file holds 1..{MAX_SECTIONS - bool(flags)} sections, got {len(file.sections)}")

    body = bytearray(
        _PREFIX.pack(MAGIC, FORMAT_VERSION, flags, width, height, MODES.index(h.mode), bytes(h.model_id), len(name))
    )
    body += name
    body += _MIDDLE.pack(seed, steps, quality, strength, len(sections))
    return seal(body, sections)


def check_hundredths(name: str, value: object, stored_max: int) -> int:
    """``value`` in hundredths as stored, if it is a number in ``0..stored_max/100`` in steps of 0.01."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    in_range = 0 <= value <= stored_max / QUALITY_SCALE  # also refuses NaN and infinities
    stored = round(value * QUALITY_SCALE) if in_range else -1
    if not in_range or abs(stored - value * QUALITY_SCALE) > 1e-6:
        raise ValueError(f"{name} must be in 0..{stored_max // QUALITY_SCALE} in steps of 0.01, got {value!r}")
    return stored


def decode_file(data: bytes | bytearray | memoryview) -> RDCFile:
    """Parse an ``.rdc`` file; any bad input raises :class:`RDCFormatError` and nothing else.

    The CRC is checked before any field past the version is trusted, so corruption is reported
    as corruption rather than as whatever nonsense the flipped field happens to spell.
    """
    body = verified_body(data, MAGIC, FORMAT_VERSION, _MIN_FILE_SIZE_V2, ".rdc", retired=RETIRED_VERSIONS,
                         oldest=OLDEST_READ_VERSION)
    middle = _MIDDLE if body[len(MAGIC)] == FORMAT_VERSION else _MIDDLE_V2

    # From here on the bytes are what the writer wrote; the checks catch a buggy or hostile writer.
    _, _, flags, width, height, mode_index, model_id, name_len = _PREFIX.unpack_from(body, 0)
    if flags & ~FLAG_ICC_PROFILE:
        raise RDCFormatError(f"unsupported feature flags 0x{flags:02x}; this reader supports 0x{FLAG_ICC_PROFILE:02x}")
    if width < 1 or height < 1:
        raise RDCFormatError(f"invalid image size {width}x{height}")
    if mode_index >= len(MODES):
        raise RDCFormatError(f"unknown image mode index {mode_index}")
    pos = _PREFIX.size
    if pos + name_len + middle.size > len(body):
        raise RDCFormatError("model name runs past the end of the header")
    model_name = decode_name(body, pos, name_len)
    pos += name_len
    if middle is _MIDDLE:
        seed, steps, quality, strength, n_sections = middle.unpack_from(body, pos)
    else:
        (seed, steps, quality, n_sections), strength = middle.unpack_from(body, pos), MAX_STRENGTH_STORED
    pos += middle.size
    if quality > MAX_QUALITY_STORED:
        raise RDCFormatError(f"quality {quality / QUALITY_SCALE:g} is outside 0..100")
    if strength > MAX_STRENGTH_STORED:
        raise RDCFormatError(f"strength {strength / QUALITY_SCALE:g} is outside 0..1")
    if n_sections < 1 + (flags & FLAG_ICC_PROFILE):
        raise RDCFormatError("file has no sections" if n_sections == 0 else "file has an ICC profile but no image")
    sections = read_sections(body, pos, n_sections)
    icc_profile = None
    if flags & FLAG_ICC_PROFILE:
        sections, icc_profile = sections[:-1], inflate_profile(sections[-1])

    header = RDCHeader(
        width=width,
        height=height,
        mode=MODES[mode_index],
        model_id=model_id,
        model_name=model_name,
        seed=seed,
        num_inference_steps=steps,
        quality=quality / QUALITY_SCALE,
        strength=strength / QUALITY_SCALE,
    )
    return RDCFile(header=header, sections=sections, icc_profile=icc_profile)


def inflate_profile(section: bytes) -> bytes:
    """The ICC profile section, inflated; at most :data:`MAX_ICC_PROFILE` bytes are ever produced."""
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(section, MAX_ICC_PROFILE + 1)
    except zlib.error as err:
        raise RDCFormatError(f"corrupt ICC profile: {err}") from err
    if len(profile) > MAX_ICC_PROFILE or not inflater.eof or inflater.unused_data:
        raise RDCFormatError(f"corrupt ICC profile (not one zlib stream of at most {MAX_ICC_PROFILE} bytes)")
    return profile


def check_model(header: RDCHeader, model_id: bytes, model_name: str) -> None:
    """Refuse a file written by another model: its latents would decode to garbage, not fail loudly."""
    if bytes(header.model_id) != bytes(model_id):
        raise RDCModelMismatchError(
            f"file was written by model {header.model_name!r} (id {bytes(header.model_id).hex()}) "
            f"but the loaded model is {model_name!r} (id {bytes(model_id).hex()})"
        )
