"""The .rdc format: what round-trips, and that every bad input is an RDCFormatError."""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import replace

import pytest

from rdc_diffusers.bitstream.rdc import (
    FLAG_ICC_PROFILE,
    FORMAT_VERSION,
    MAGIC,
    MAX_ICC_PROFILE,
    MIN_FILE_SIZE,
    MODES,
    RDCFile,
    RDCHeader,
    check_model,
    decode_file,
    encode_file,
)
from rdc_diffusers.errors import RDCError, RDCFormatError, RDCModelMismatchError

MODEL_ID = bytes.fromhex("0123456789abcdef")


def make_header(**overrides: object) -> RDCHeader:
    fields: dict = {
        "width": 768,
        "height": 512,
        "mode": "RGBA",
        "model_id": MODEL_ID,
        "model_name": "rdc-base-λ0.013",
        "seed": 2**64 - 1,
        "num_inference_steps": 4,
        "quality": 37.12,
        "strength": 0.75,
    }
    fields.update(overrides)
    return RDCHeader(**fields)


def small_file() -> bytes:
    """A ~60-byte file: short enough to flip every bit of it."""
    data = encode_file(RDCFile(make_header(model_name="tiny"), (b"yyyyyyyyyy", b"zzzz")))
    assert 50 <= len(data) <= 70
    return data


def with_crc(body: bytes) -> bytes:
    """Re-seal an edited file body, to test the checks that come after the CRC."""
    return body + struct.pack(">I", zlib.crc32(body))


# Byte offsets in small_file() (docs/bitstream.md): a 20-byte prefix, the 4-byte name "tiny", then
# seed (u64) | num_inference_steps (u16) | quality (u16, hundredths) | strength (u8, hundredths) | n_sections (u8).
QUALITY_OFFSET = 20 + 4 + 8 + 2
STRENGTH_OFFSET = QUALITY_OFFSET + 2


def test_the_smallest_file_is_min_file_size_bytes() -> None:
    """Empty name, one empty section: 20 + 14 (seed, steps, quality, strength, count) + 4 (section length) + 4 (CRC)."""
    data = encode_file(RDCFile(make_header(model_name=""), (b"",)))
    assert len(data) == MIN_FILE_SIZE == 42
    assert decode_file(data).sections == (b"",)
    with pytest.raises(RDCFormatError, match="truncated"):
        decode_file(data[:-1])


def test_the_quality_sits_where_the_spec_puts_it() -> None:
    data = small_file()
    assert struct.unpack_from(">H", data, QUALITY_OFFSET) == (3712,)  # 37.12 in hundredths
    assert data[STRENGTH_OFFSET] == 75  # 0.75 in hundredths
    assert data[STRENGTH_OFFSET + 1] == 2  # the section count follows


def test_a_version_2_file_reads_with_strength_1() -> None:
    """Version 2 (rdc-diffusers 0.2.0) had no strength byte; its decoders always refined fully."""
    body = small_file()[:-4]
    version_2 = bytearray(body[:STRENGTH_OFFSET] + body[STRENGTH_OFFSET + 1 :])
    version_2[4] = 2
    decoded = decode_file(with_crc(bytes(version_2)))
    assert decoded.header == make_header(model_name="tiny", strength=1.0)
    assert decoded.sections == (b"yyyyyyyyyy", b"zzzz")
    for n in range(len(version_2) + 4):
        with pytest.raises(RDCFormatError):
            decode_file(with_crc(bytes(version_2))[:n])


def test_round_trip_with_several_sections() -> None:
    sections = (b"\x00\x01y-string" * 50, b"z", b"", bytes(range(256)))
    original = RDCFile(make_header(), sections)
    data = encode_file(original)

    assert data.startswith(MAGIC)
    assert data[4] == FORMAT_VERSION
    decoded = decode_file(data)
    assert decoded == original
    assert encode_file(decoded) == data
    assert decode_file(bytearray(data)) == original
    assert decode_file(memoryview(data)) == original


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_round_trips(mode: str) -> None:
    header = make_header(mode=mode, width=1, height=65535, seed=0, model_name="")
    assert decode_file(encode_file(RDCFile(header, (b"y", b"z")))).header == header


def test_every_truncation_is_a_format_error() -> None:
    data = small_file()
    for n in range(len(data)):
        with pytest.raises(RDCFormatError):
            decode_file(data[:n])


def test_every_single_bit_flip_is_a_format_error() -> None:
    data = small_file()
    for i in range(len(data)):
        for bit in range(8):
            corrupted = bytearray(data)
            corrupted[i] ^= 1 << bit
            with pytest.raises(RDCFormatError):
                decode_file(bytes(corrupted))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n" + bytes(64),
        b"\x89PNG\r\n\x1a\n",
        random.Random(0).randbytes(200),
        "\x89RDC not bytes",
        None,
        [0x89, 0x52, 0x44, 0x43],
    ],
    ids=["empty", "png", "png-signature-only", "random", "str", "none", "list"],
)
def test_foreign_data_is_a_format_error(data: object) -> None:
    with pytest.raises(RDCFormatError):
        decode_file(data)  # type: ignore[arg-type]


def test_foreign_data_is_called_foreign_not_truncated() -> None:
    with pytest.raises(RDCFormatError, match="not an .rdc file"):
        decode_file(b"\x89PNG\r\n\x1a\n")


def test_newer_version_is_refused_by_name() -> None:
    body = bytearray(small_file()[:-4])
    body[4] = FORMAT_VERSION + 1
    with pytest.raises(RDCFormatError,
                       match=f"newer format version {FORMAT_VERSION + 1}; this reader supports {FORMAT_VERSION}"):
        decode_file(with_crc(bytes(body)))


def test_a_version_1_file_names_the_retired_models() -> None:
    """Version 1 had no quality field: the single-rate models wrote it; this reader says so and what to do."""
    body = small_file()[:-4]
    version_1 = bytearray(body[:QUALITY_OFFSET] + body[STRENGTH_OFFSET + 1 :])  # the version 1 layout
    version_1[4] = 1
    with pytest.raises(RDCFormatError) as info:
        decode_file(with_crc(bytes(version_1)))
    message = str(info.value)
    assert "version 1" in message and "rdc-bsds-q3" in message and "rdc-diffusers<0.2" in message


@pytest.mark.parametrize("quality", [0, 0.01, 37.12, 99.99, 100, 100.0])
def test_the_quality_round_trips(quality: float) -> None:
    header = make_header(quality=quality)
    decoded = decode_file(encode_file(RDCFile(header, (b"y", b"z")))).header
    assert decoded.quality == quality
    assert isinstance(decoded.quality, float)


@pytest.mark.parametrize("strength", [0, 0.01, 0.5, 1, 1.0])
def test_the_strength_round_trips(strength: float) -> None:
    decoded = decode_file(encode_file(RDCFile(make_header(strength=strength), (b"y", b"z")))).header
    assert decoded.strength == strength
    assert isinstance(decoded.strength, float)


@pytest.mark.parametrize("stored", [101, 0xFF])
def test_a_forged_strength_above_1_is_a_format_error(stored: int) -> None:
    body = bytearray(small_file()[:-4])
    body[STRENGTH_OFFSET] = stored
    with pytest.raises(RDCFormatError, match="strength"):
        decode_file(with_crc(bytes(body)))


@pytest.mark.parametrize("stored", [10001, 0xFFFF])
def test_a_forged_quality_above_100_is_a_format_error(stored: int) -> None:
    body = bytearray(small_file()[:-4])
    struct.pack_into(">H", body, QUALITY_OFFSET, 10000)
    assert decode_file(with_crc(bytes(body))).header.quality == 100.0  # the largest valid value
    struct.pack_into(">H", body, QUALITY_OFFSET, stored)
    with pytest.raises(RDCFormatError, match="quality"):
        decode_file(with_crc(bytes(body)))


def test_unknown_flags_are_refused() -> None:
    body = bytearray(small_file()[:-4])
    body[5] = 0x02
    with pytest.raises(RDCFormatError, match="unsupported feature flags 0x02"):
        decode_file(with_crc(bytes(body)))


def test_an_icc_profile_round_trips_as_a_flagged_last_section() -> None:
    profile = bytes(range(256)) * 12  # ICC profiles are 0.5-60 KB
    plain = RDCFile(make_header(), (b"yyyy", b"zz"))
    data = encode_file(replace(plain, icc_profile=profile))
    assert data[5] == FLAG_ICC_PROFILE and encode_file(plain)[5] == 0
    assert decode_file(data) == replace(plain, icc_profile=profile)
    assert len(data) < len(encode_file(plain)) + len(profile) // 4  # stored deflated, as PNG stores it


@pytest.mark.parametrize("last", [b"not zlib", zlib.compress(b"x" * (MAX_ICC_PROFILE + 1)),  # a bomb
                                  zlib.compress(b"icc") + b"!", zlib.compress(b"icc")[:-2]])
def test_a_bad_icc_profile_section_is_a_format_error(last: bytes) -> None:
    data = encode_file(RDCFile(make_header(model_name="tiny"), (b"yyyy", last)))
    body = bytearray(data[:-4])
    body[5] = FLAG_ICC_PROFILE
    with pytest.raises(RDCFormatError, match="corrupt ICC profile"):
        decode_file(with_crc(bytes(body)))


def test_an_icc_profile_alone_is_a_format_error() -> None:
    one = bytearray(encode_file(RDCFile(make_header(model_name="tiny"), (b"yyyy",)))[:-4])
    one[5] = FLAG_ICC_PROFILE
    with pytest.raises(RDCFormatError, match="ICC profile but no image"):
        decode_file(with_crc(bytes(one)))


def test_trailing_garbage_is_refused() -> None:
    data = small_file()
    with pytest.raises(RDCFormatError):
        decode_file(data + b"\x00")
    # Even when the writer sealed the garbage under a valid CRC.
    with pytest.raises(RDCFormatError, match="section lengths"):
        decode_file(with_crc(data[:-4] + b"junk"))


def test_corruption_is_reported_as_checksum_mismatch() -> None:
    corrupted = bytearray(small_file())
    corrupted[9] ^= 0x40  # low byte of the height: without the CRC it would decode as another size
    with pytest.raises(RDCFormatError, match="checksum mismatch"):
        decode_file(bytes(corrupted))


def test_sealed_random_edits_raise_only_format_errors() -> None:
    """A buggy writer's output, CRC and all, must still fail as RDCFormatError, never IndexError."""
    rng = random.Random(1)
    body = small_file()[:-4]
    for _ in range(2000):
        edited = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            edited[rng.randrange(6, len(edited))] = rng.randrange(256)
        cut = rng.choice([len(edited), rng.randrange(len(edited) + 1)])
        try:
            decode_file(with_crc(bytes(edited[:cut])))
        except RDCFormatError:
            pass


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 0},
        {"height": 65536},
        {"mode": "RGB;15"},
        {"model_id": b"short"},
        {"model_name": "x" * 256},
        {"seed": -1},
        {"seed": 2**64},
        {"num_inference_steps": 65536},
        {"quality": -1},
        {"quality": -0.01},
        {"quality": 100.01},
        {"quality": 37.123},  # files store hundredths: round first (rdc_diffusers.models.codec.check_quality)
        {"quality": float("nan")},
        {"quality": float("inf")},
        {"strength": -0.01},
        {"strength": 1.01},
        {"strength": 0.555},
        {"strength": float("nan")},
    ],
)
def test_encode_refuses_out_of_range_fields(overrides: dict) -> None:
    with pytest.raises(ValueError) as info:
        encode_file(RDCFile(make_header(**overrides), (b"y", b"z")))
    assert not isinstance(info.value, RDCError)  # a caller's bug, not a bad file


@pytest.mark.parametrize("sections", [(), (b"s",) * 256])
def test_encode_refuses_bad_section_counts(sections: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError):
        encode_file(RDCFile(make_header(), sections))


def test_check_model_names_both_models() -> None:
    header = decode_file(small_file()).header
    check_model(header, MODEL_ID, "tiny")  # same model: no error

    other_id = bytes.fromhex("fedcba9876543210")
    with pytest.raises(RDCModelMismatchError) as info:
        check_model(header, other_id, "rdc-large")
    message = str(info.value)
    for part in ("tiny", MODEL_ID.hex(), "rdc-large", other_id.hex()):
        assert part in message
    assert isinstance(info.value, RDCFormatError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "overrides",
    [{"width": 12.0}, {"seed": True}, {"model_id": "0123456789abcdef"}, {"model_name": b"tiny"},
     {"quality": True}, {"quality": "50"}, {"quality": None}, {"strength": None}],
)
def test_encode_refuses_wrong_types(overrides: dict) -> None:
    with pytest.raises(TypeError):
        encode_file(RDCFile(make_header(**overrides), (b"y", b"z")))
