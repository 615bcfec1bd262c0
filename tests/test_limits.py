"""The decompression-bomb guard: a header claiming too many pixels is refused before any decoding or allocation;
inputs above the same limit are refused at encode time."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import pytest
from conftest import random_image
from test_video import build_tiny_video_pipeline, moving_clip

from rdc_diffusers import DecompressionBombError, RDCFormatError, UnsupportedImageError, limits
from rdc_diffusers.bitstream.rdc import decode_file

ROOT = Path(__file__).resolve().parents[1]


def forge_size(data: bytes, width: int, height: int) -> bytes:
    """The same file claiming another size, CRC recomputed (width and height are u16 at offsets 6 and 8 in both
    formats)."""
    body = bytearray(data[:-4])
    struct.pack_into(">HH", body, 6, width, height)
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def never(*args, **kwargs):
    raise AssertionError("decoding started")


@pytest.mark.parametrize(("width", "height"), [(65535, 65535), (65535, 1024), (7681, 4320)])
def test_a_forged_size_is_refused_before_decoding(tiny_pipeline, width, height):
    data = forge_size(tiny_pipeline.compress(random_image(16, 24)), width, height)
    assert decode_file(data).header.width == width  # a well-formed file, as far as the container goes
    tiny_pipeline.codec.decompress = never
    try:
        with pytest.raises(DecompressionBombError) as info:
            tiny_pipeline.decompress(data)
    finally:
        del tiny_pipeline.codec.decompress
    message = str(info.value)
    assert f"{width}x{height} = {width * height:,} pixels" in message and "33,177,600" in message
    assert isinstance(info.value, RDCFormatError)


def test_the_limit_is_global_and_per_call(tiny_pipeline, monkeypatch):
    data = tiny_pipeline.compress(random_image(16, 24))
    assert tiny_pipeline.decompress(data, max_pixels=16 * 24).images[0].size == (24, 16)  # at the limit: fine
    with pytest.raises(DecompressionBombError, match="above the limit of 383"):
        tiny_pipeline.decompress(data, max_pixels=383)

    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DecompressionBombError, match="above the limit of 100"):
        tiny_pipeline.decompress(data)
    assert tiny_pipeline.decompress(data, max_pixels=math.inf, refine=False).images[0].size == (24, 16)
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", None)  # as Pillow: None lifts the limit
    assert tiny_pipeline.decompress(data, refine=False).images[0].size == (24, 16)


@pytest.mark.parametrize("bad", [0, -5, "100", True, float("nan")])
def test_a_bad_limit_is_a_value_error(tiny_pipeline, bad):
    data = tiny_pipeline.compress(random_image(16, 16))
    with pytest.raises(ValueError, match="max_pixels must be a positive number"):
        tiny_pipeline.decompress(data, max_pixels=bad)


def test_encoding_refuses_an_image_above_the_limit(tiny_pipeline):
    with pytest.raises(UnsupportedImageError, match=r"the image is 24x16 = 384 pixels, above the limit of 383"):
        tiny_pipeline.compress(random_image(16, 24), max_pixels=383)
    with pytest.raises(UnsupportedImageError, match="above the limit"):
        tiny_pipeline.compress(random_image(16, 24), target_bpp=1.0, max_pixels=100)


def test_video_files_and_clips_are_guarded_per_frame():
    pipe = build_tiny_video_pipeline()
    data = pipe.compress(moving_clip(count=2), gop_size=2)
    pipe.codec.decompress = never
    with pytest.raises(DecompressionBombError, match=r"the clip \(per frame\) claims 65535x65535"):
        pipe.decompress(forge_size(data, 65535, 65535))
    with pytest.raises(UnsupportedImageError, match="above the limit of 1,000"):
        pipe.compress(moving_clip(count=2), max_pixels=1000)


def test_the_command_line_refuses_a_bomb_before_loading_a_model(rdc, tiny_pipeline, tmp_path):
    bomb = tmp_path / "bomb.rdc"
    bomb.write_bytes(forge_size(tiny_pipeline.compress(random_image(16, 24)), 65535, 65535))
    code, _, err = rdc("decompress", bomb, "-o", tmp_path / "out.png", "--model", tmp_path / "no-such-model")
    assert code != 0 and "65535x65535" in err and "above the limit" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
    code, _, err = rdc("decompress", bomb, "-o", tmp_path / "out.png", "--model", tmp_path / "no-such-model",
                       "--max-pixels", "none")
    assert code != 0 and "above the limit" not in err  # past the guard: now the missing model is the problem


def test_a_few_thousand_fuzz_cases_end_in_typed_errors_or_images(tmp_path):
    """The CI share of benchmarks/fuzz.py (the committed report has 100,000 cases), run as a user runs it."""
    import json
    import subprocess

    from conftest import PYTHON, python_env

    subprocess.run([PYTHON, str(ROOT / "benchmarks/fuzz.py"), "--cases", "2400", "--jobs", "1", "--batch", "1200",
                    "--out", str(tmp_path)], check=True, env=python_env(), capture_output=True, timeout=600)
    report = json.loads((tmp_path / "fuzz.json").read_text())
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == 2400
    assert outcomes["typed"] > 0 and outcomes["decoded"] > 0  # both the checks and the deep decoder were reached
    failures = {k: outcomes[k] for k in ("other", "over_time", "over_memory", "crashed")}
    assert failures == dict.fromkeys(failures, 0), report["failures"]
    assert report["bomb"]["refused"] == report["bomb"]["of"]
    assert (tmp_path / "fuzz.md").read_text().startswith("# Fuzzing the decoders: 2,400 cases")


def test_a_file_asking_for_too_many_steps_is_refused_unless_the_caller_chooses(tiny_pipeline, monkeypatch):
    data = tiny_pipeline.compress(random_image(16, 24), num_inference_steps=3)
    monkeypatch.setattr(limits, "MAX_FILE_STEPS", 2)
    with pytest.raises(DecompressionBombError, match="asks for 3 refinement steps, above the limit of 2"):
        tiny_pipeline.decompress(data)
    assert tiny_pipeline.decompress(data, num_inference_steps=3).images[0].size == (24, 16)  # the caller chose
    assert tiny_pipeline.decompress(data, refine=False).images[0].size == (24, 16)
