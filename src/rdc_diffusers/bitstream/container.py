"""What the ``.rdc`` and ``.rdcv`` formats share: the checks every file opens with (magic, length, version,
CRC-32), the section table, and how a header field is validated before it is written."""

from __future__ import annotations

import operator
import struct
import zlib

from ..errors import RDCFormatError

MODEL_ID_SIZE = 8
MAX_NAME_BYTES = 255
U32 = struct.Struct(">I")


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Return ``value`` as an int in ``[lo, hi]``; ``TypeError``/``ValueError`` otherwise (a caller's bug)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value!r}")
    return number


def seal(body: bytearray, sections: list[bytes]) -> bytes:
    """The tail both formats share: the u32 section lengths, the sections, then the CRC-32 of everything."""
    for i, section in enumerate(sections):
        if len(section) > 0xFFFFFFFF:
            raise ValueError(f"section {i} is {len(section)} bytes, more than a u32 length can record")
        body += U32.pack(len(section))
    for section in sections:
        body += section
    body += U32.pack(zlib.crc32(body))
    return bytes(body)


def verified_body(data: bytes | bytearray | memoryview, magic: bytes, version: int, minimum: int, kind: str,
                  foreign_hint: str = "", retired: dict[int, str] | None = None, oldest: int | None = None) -> bytes:
    """The checks both formats open with (type, magic, length, version, CRC); returns the bytes before the CRC.

    Versions ``oldest..version`` are read (default: ``version`` only). The version is checked before the CRC
    because a newer version may lay the file out differently.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    elif isinstance(data, bytearray):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise RDCFormatError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")

    # Foreign data is reported as foreign even when it is short; a prefix of the magic is truncation.
    if data[: len(magic)] != magic[: len(data)]:
        raise RDCFormatError(f"not an {kind} file (bad magic bytes){foreign_hint}")
    if len(data) < minimum:
        raise RDCFormatError(f"truncated file: {len(data)} bytes, an {kind} file has at least {minimum}")
    found = data[len(magic)]
    if found in (retired or {}):
        raise RDCFormatError(f"format version {found} is no longer read by this reader (it reads {version}): "
                             f"{retired[found]}")
    if found > version:
        raise RDCFormatError(f"written by a newer format version {found}; this reader supports {version}")
    if found < (version if oldest is None else oldest):
        raise RDCFormatError(f"unknown format version {found}; this reader supports {version}")
    (stored_crc,) = U32.unpack_from(data, len(data) - U32.size)
    body = data[: -U32.size]
    if zlib.crc32(body) != stored_crc:
        raise RDCFormatError("checksum mismatch: the file is corrupted or truncated")
    return body


def read_sections(body: bytes, pos: int, count: int) -> tuple[bytes, ...]:
    """The ``count`` sections whose u32 length table starts at ``pos``; they must fill the rest of ``body``."""
    if pos + count * U32.size > len(body):
        raise RDCFormatError("section table runs past the end of the file")
    lengths = struct.unpack_from(f">{count}I", body, pos)
    pos += count * U32.size
    if pos + sum(lengths) != len(body):
        raise RDCFormatError(f"section lengths add up to {sum(lengths)} bytes but the file holds {len(body) - pos}")
    sections = []
    for n in lengths:
        sections.append(body[pos : pos + n])
        pos += n
    return tuple(sections)


def encode_name(model_name: object) -> bytes:
    """The model name as a header stores it: utf-8, at most :data:`MAX_NAME_BYTES` bytes."""
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    name = model_name.encode("utf-8")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"model_name must be at most {MAX_NAME_BYTES} utf-8 bytes, got {len(name)}")
    return name


def decode_name(body: bytes, pos: int, length: int) -> str:
    """Inverse of :func:`encode_name`, for the ``length`` bytes at ``pos`` (the caller checked they exist)."""
    try:
        return body[pos : pos + length].decode("utf-8")
    except UnicodeDecodeError:
        raise RDCFormatError("model name is not valid utf-8") from None
