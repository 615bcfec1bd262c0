"""Issue 13: standard JPEG / WebP / AVIF files as the fidelity layer, refined by the residual UNet."""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline, build_tiny_refiner, load_script, random_image, wide_gamut_profile
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

from rdc_diffusers import (
    BaseCodec,
    DecompressionBombError,
    IncompatibleModelError,
    RateTargetError,
    RDCFormatError,
    RDCRefinerPipeline,
)
from rdc_diffusers.media.image_io import to_tensor
from rdc_diffusers.media.standard_codecs import FORMATS, ORIENTATION_TAG, SUFFIXES, upright
from rdc_diffusers.models.base_codec import RATE_ANCHORS

EXAMPLE_IMAGE = Path(__file__).parents[1] / "examples" / "images" / "kodim23.png"


@pytest.fixture(scope="module")
def refiner() -> RDCRefinerPipeline:
    return build_tiny_refiner()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_file_is_a_standard_one_and_the_plain_decode_is_pillows(refiner, name):
    data = refiner.compress(random_image(48, 80), format=name, quality=40)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == FORMATS[name] and opened.size == (80, 48)
        plain = pixels(opened)
    out = refiner.decompress(data, refine=False)
    assert np.array_equal(pixels(out.images[0]), plain)
    assert out.bpp == [8 * len(data) / (80 * 48)]


def test_an_analysis_transform_folder_without_some_weights_is_refused(refiner, tmp_path):
    refiner.codec.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "beta" not in k}, weights, metadata={"format": "pt"})
    with pytest.raises(IncompatibleModelError, match="beta"):
        BaseCodec.from_pretrained(tmp_path)


def test_refinement_is_seeded_and_strength_zero_is_the_plain_decode(refiner):
    data = refiner.compress(random_image(48, 80), format="jpeg", quality=20)
    first, again = (pixels(refiner.decompress(data, seed=3).images[0]) for _ in range(2))
    plain = pixels(refiner.decompress(data, refine=False).images[0])
    assert np.array_equal(first, again) and not np.array_equal(first, plain)
    assert not np.array_equal(first, pixels(refiner.decompress(data, seed=4).images[0]))
    assert np.array_equal(pixels(refiner.decompress(data, strength=0.0).images[0]), plain)


@pytest.mark.parametrize("alpha", [False, True])
def test_a_lossless_webp_comes_back_exactly_as_stored(refiner, alpha):
    """A lossless WebP (a screenshot, an exported graphic) has nothing to restore: refining would only add noise."""
    image = random_image(48, 80)
    if alpha:  # the extended format: VP8X, then the VP8L chunk
        image.putalpha(Image.linear_gradient("L").resize((80, 48)))
    data = save(image, "webp", lossless=True)
    assert BaseCodec.lossless(data) and not BaseCodec.lossless(save(image, "webp", quality=100))
    assert not BaseCodec.lossless(save(image.convert("RGB"), "jpeg", quality=100))
    assert not BaseCodec.lossless(save(image, "avif", quality=100))
    with pytest.warns(UserWarning, match="lossless WebP"):
        refined = refiner.decompress(data).images[0]
    assert np.array_equal(np.asarray(refined), np.asarray(image))


def test_a_transparent_image_coded_as_jpeg_is_said_to_lose_its_transparency(refiner):
    image = random_image(48, 80)
    image.putalpha(Image.linear_gradient("L").resize((80, 48)))
    with pytest.warns(UserWarning, match="and a JPEG file holds colour only"):
        refiner.compress(image, format="jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # WebP and AVIF keep it
        refiner.compress(image, format="webp")
        refiner.compress(image, format="avif")


def test_files_above_the_refiners_ceiling_come_back_as_decoded(refiner, tmp_path):
    """Where the refiner was measured to make files worse (a near-lossless JPEG), it leaves them as they are."""
    image = random_image(48, 80)
    low, high = (refiner.compress(image, format="jpeg", quality=q) for q in (20, 95))
    rate = [BaseCodec.payload_bpp(d, 80, 48) for d in (low, high)]
    capped = copy.deepcopy(refiner)
    capped.register_to_config(max_refined_bpp={"jpeg": (rate[0] * rate[1]) ** 0.5})
    capped.save_pretrained(tmp_path / "capped")
    capped = RDCRefinerPipeline.from_pretrained(tmp_path / "capped")
    capped.set_progress_bar_config(disable=True)
    with pytest.warns(UserWarning, match="above the .* bpp where this refiner stops improving JPEG"):
        kept = pixels(capped.decompress(high).images[0])
    assert np.array_equal(kept, pixels(refiner.decompress(high, refine=False).images[0]))
    assert not np.array_equal(kept, pixels(refiner.decompress(high).images[0]))  # uncapped: refined
    assert np.array_equal(pixels(capped.decompress(low).images[0]), pixels(refiner.decompress(low).images[0]))
    webp = refiner.compress(image, format="webp", quality=95)  # no ceiling for WebP
    assert np.array_equal(pixels(capped.decompress(webp).images[0]), pixels(refiner.decompress(webp).images[0]))


def test_the_ceiling_lies_where_refining_stops_helping(refiner, tmp_path):
    def point(bpp: float, lpips_refined: float, psnr_change: float) -> dict:
        return {"bpp": bpp, "lpips_plain": 0.05 / bpp, "lpips_refined": lpips_refined, "psnr_change": psnr_change}

    results = {"comparisons": {
        "jpeg": {"points": [point(4.0, 0.02, -4.7), point(1.0, 0.04, -0.1), point(2.0, 0.02, -0.3)]},  # LPIPS up
        "webp": {"points": [point(1.0, 0.04, -0.1), point(2.0, 0.01, -1.2)]},  # PSNR down by more than 1 dB
        "avif": {"points": [point(1.0, 0.04, -0.1), point(2.0, 0.01, -0.9)]}}}  # always better: no ceiling
    (tmp_path / "refiner.json").write_text(json.dumps(results))
    refiner.save_pretrained(tmp_path / "model" / "refiner")
    script = load_script("examples/refiner_ceiling.py")
    script.main([str(tmp_path / "refiner.json"), str(tmp_path / "model"), "--write"])
    written = RDCRefinerPipeline.from_pretrained(tmp_path / "model" / "refiner").config.max_refined_bpp
    assert written == {"jpeg": pytest.approx(2 ** 1.5, abs=1e-3), "webp": pytest.approx(2 ** 0.5, abs=1e-3)}
    results["comparisons"]["avif"]["points"][0]["lpips_refined"] = 0.06
    (tmp_path / "refiner.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="lowest rate measured"):
        script.main([str(tmp_path / "refiner.json"), str(tmp_path / "model")])


def test_a_callback_sees_each_step(refiner):
    data = refiner.compress(random_image(48, 80))
    seen = []
    refiner.decompress(data, num_inference_steps=2, callback_on_step_end=lambda p, i, t, d: seen.append(i) or d)
    assert seen == [0, 1]


def test_other_files_and_bombs_are_refused_before_decoding(refiner):
    png = io.BytesIO()
    random_image(16, 16).save(png, "PNG")
    with pytest.raises(RDCFormatError, match="not a JPEG, WebP or AVIF file .*PNG"):
        refiner.decompress(png.getvalue())
    with pytest.raises(RDCFormatError, match="^not a readable JPEG, WebP or AVIF file: a JPEG file whose header"):
        refiner.decompress(b"\xff\xd8\xff" + b"\x00" * 10)
    webp = refiner.compress(random_image(16, 16), format="webp")
    with pytest.raises(RDCFormatError, match="a WebP file whose header does not read"):
        refiner.decompress(webp[:12] + b"\x00" * 20)
    rdc_file = build_tiny_pipeline().compress(random_image(16, 16))
    with pytest.raises(RDCFormatError, match=r"^not a JPEG, WebP or AVIF file: an \.rdc file \(rdc decompress"):
        refiner.decompress(rdc_file)
    with pytest.raises(RDCFormatError, match="^not a JPEG, WebP or AVIF file: not an image format Pillow can identify"):
        refiner.decompress(b"just some text")
    jpeg = refiner.compress(random_image(64, 64), format="jpeg", quality=90)
    with pytest.raises(RDCFormatError, match="not a readable.*truncated"):  # a header that reads, pixels that don't
        refiner.decompress(jpeg[: len(jpeg) // 2])
    with pytest.raises(DecompressionBombError):
        refiner.decompress(refiner.compress(random_image(48, 80)), max_pixels=1000)


def test_a_rate_target_gives_the_largest_file_that_fits(refiner):
    image = random_image(64, 96)
    data = refiner.compress(image, format="avif", target_bpp=1.0)
    assert 8 * len(data) / (64 * 96) <= 1.0
    larger = [refiner.compress(image, format="avif", quality=q) for q in range(101)]
    fitting = [d for d in larger if 8 * len(d) / (64 * 96) <= 1.0]
    assert len(data) == max(len(d) for d in fitting)
    with pytest.raises(RateTargetError):
        refiner.compress(image, format="avif", target_bpp=0.001)


def test_the_unets_quality_input_follows_the_files_rate():
    rates, qualities = zip(*RATE_ANCHORS, strict=True)
    assert BaseCodec.rate_quality(torch.tensor(rates)).tolist() == pytest.approx(qualities, abs=1e-4)
    steps = BaseCodec.rate_quality(torch.tensor([0.01, 0.1, 0.3, 0.7, 5.0])).tolist()
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 100


def save(image: Image.Image, name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[name], **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_quality_input_counts_coded_pixels_not_headers_or_metadata(name):
    """Pillow's headers alone are 0.02-0.3 bpp on a 128² crop, and EXIF can be any size: the rate the quality input
    comes from must be that of the pixels, the same for a training crop as for a whole photo."""
    image = random_image(128, 128)
    plain = save(image, name, quality=30)
    payload = BaseCodec.payload_bytes(plain)
    assert 0.8 * len(plain) - 700 < payload < len(plain) - 10  # a header was left out, and no more than that
    if name != "avif":  # libavif stores EXIF as an item inside mdat, counted (see payload_bytes)
        exif = Image.Exif()
        exif[0x010F] = "camera maker " * 500
        assert BaseCodec.payload_bytes(save(image, name, quality=30, exif=exif)) == payload
    assert BaseCodec.payload_bytes(b"not a container at all") == len(b"not a container at all")


def test_headers_and_exif_do_not_change_the_refinement(refiner):
    """A smooth 192x128 crop as a JPEG at quality 10: its header alone would move the quality input from 23 to 45."""
    refiner = copy.deepcopy(refiner)
    torch.nn.init.normal_(refiner.unet.unet.class_embedding.linear_2.weight)  # zero at first: make the quality matter
    image = Image.open(EXAMPLE_IMAGE).convert("RGB").crop((256, 128, 448, 256))
    exif = Image.Exif()
    exif[0x010F] = "camera maker " * 500
    plain, tagged = save(image, "jpeg", quality=10), save(image, "jpeg", quality=10, exif=exif)
    assert np.array_equal(pixels(refiner.decompress(plain).images[0]), pixels(refiner.decompress(tagged).images[0]))
    pixels_quality = BaseCodec.file_quality(tagged, 192, 128)
    assert pixels_quality < BaseCodec.rate_quality(8 * len(plain) / (192 * 128)).item() - 15


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_decode_is_turned_as_viewers_turn_the_file(refiner, name, orientation):
    """A camera stores a portrait photo sideways with an EXIF orientation: both decodes come out as every viewer
    (``ImageOps.exif_transpose``) shows the file, and the refinement is that of the stored pixels, turned."""
    image = random_image(48, 80)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    stored, tagged = save(image, name, quality=40), save(image, name, quality=40, exif=exif)
    with Image.open(io.BytesIO(tagged)) as opened:
        shown = pixels(ImageOps.exif_transpose(opened))
    assert np.array_equal(pixels(refiner.decompress(tagged, refine=False).images[0]), shown)
    refined = refiner.decompress(tagged, output_type="pt").images
    assert refined.shape[-2:] == shown.shape[:2]
    assert torch.equal(refined, upright(refiner.decompress(stored, output_type="pt").images, orientation))


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_colour_space_goes_from_the_image_to_the_file_to_the_refined_image(rdc, refiner, name, tmp_path):
    """A phone's photo in Display P3: dropping the profile would show its pixels as sRGB."""
    profile = wide_gamut_profile()
    image = random_image(48, 80)
    image.info["icc_profile"] = profile
    data = refiner.compress(image, format=name, quality=40)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.info.get("icc_profile") == profile
    assert refiner.decompress(data).images[0].info.get("icc_profile") == profile
    assert "icc_profile" not in refiner.decompress(refiner.compress(random_image(48, 80), format=name)).images[0].info
    model = tmp_path / "tiny-refiner"
    refiner.save_pretrained(model)
    (tmp_path / "in").write_bytes(data)
    for out in ("out.png", "out.jpg"):
        done = rdc("refine", str(tmp_path / "in"), "-o", str(tmp_path / out), "--model", str(model))
        assert done.code == 0, done.err
        with Image.open(tmp_path / out) as written:
            assert written.info.get("icc_profile") == profile


@pytest.mark.parametrize("name", ["webp", "avif"])
def test_a_transparent_files_alpha_comes_back_untouched(rdc, refiner, name, tmp_path):
    """A cut-out product photo or a logo as WebP/AVIF: the refinement changes colour, never the transparency."""
    rgba = random_image(48, 80)
    rgba.putalpha(Image.linear_gradient("L").resize((80, 48)))
    with Image.open(io.BytesIO(refiner.compress(rgba, format=name, quality=40))) as written:  # rdc compress --base
        assert written.mode == "RGBA"
        assert np.abs(np.asarray(written.getchannel("A"), float) - np.asarray(rgba.getchannel("A"))).mean() < 2
    with Image.open(io.BytesIO(refiner.compress(rgba, format="jpeg", quality=40))) as written:
        assert written.mode == "RGB"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    data = save(rgba, name, quality=40, exif=exif)
    with Image.open(io.BytesIO(data)) as opened:
        shown = ImageOps.exif_transpose(opened)
        shown.load()
    for refine in (False, True):
        decoded = refiner.decompress(data, refine=refine).images[0]
        assert decoded.mode == "RGBA" and decoded.size == shown.size == (48, 80)
        assert np.array_equal(np.asarray(decoded.getchannel("A")), np.asarray(shown.getchannel("A")))
    assert np.array_equal(np.asarray(decoded.convert("RGB")), pixels(refiner.decompress(data).images[0]))
    assert refiner.decompress(data, output_type="pt").images.shape[1] == 3
    model = tmp_path / "tiny-refiner"
    refiner.save_pretrained(model)
    (tmp_path / "in").write_bytes(data)
    assert rdc("refine", str(tmp_path / "in"), "-o", str(tmp_path / "out.png"), "--model", str(model)).code == 0
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA"
    refused = rdc("refine", str(tmp_path / "in"), "-o", str(tmp_path / "out.jpg"), "--model", str(model))
    assert refused.code == 2 and "JPEG cannot hold transparency" in refused.err
    assert not (tmp_path / "out.jpg").exists()


def test_a_progressive_jpegs_payload_is_its_scans_without_the_tables_between_them():
    image = random_image(64, 96)
    baseline, progressive = save(image, "jpeg", quality=50), save(image, "jpeg", quality=50, progressive=True)
    payload = BaseCodec.payload_bytes(progressive)
    assert 0.75 * BaseCodec.payload_bytes(baseline) < payload < BaseCodec.payload_bytes(baseline)
    assert payload < len(progressive) - 500  # its Huffman tables: ~250 bytes before the first scan, more between


def test_an_image_model_names_its_refiner(refiner, tmp_path):
    """As rdc-bsds names its inter codec: the refiner is a whole pipeline in the model's refiner/ folder."""
    image_model = tmp_path / "tiny-rdc"
    build_tiny_pipeline().save_pretrained(image_model)
    with pytest.raises(ValueError, match="has no refiner"):
        RDCRefinerPipeline.from_pretrained(image_model)
    refiner.save_pretrained(image_model / "refiner")
    loaded = RDCRefinerPipeline.from_pretrained(image_model)
    assert loaded.config.default_format == "webp"
    data = refiner.compress(random_image(48, 80))
    assert np.array_equal(pixels(loaded.decompress(data).images[0]), pixels(refiner.decompress(data).images[0]))


def test_rdc_compress_base_then_rdc_refine(rdc, refiner, tmp_path):
    model = tmp_path / "tiny-refiner"
    refiner.save_pretrained(model)
    random_image(48, 80).save(tmp_path / "in.png")
    made = rdc("compress", str(tmp_path / "in.png"), "--base", "avif", "--quality", "30", "-o", str(tmp_path),
               "--model", str(model))
    assert made.code == 0, made.err
    with Image.open(tmp_path / "in.avif") as opened:
        assert opened.format == "AVIF"
    done = rdc("refine", str(tmp_path / "in.avif"), "-o", str(tmp_path / "out.png"), "--model", str(model))
    assert done.code == 0, done.err
    assert "refined, 1 step of DDIMScheduler, strength 1, seed 0 (avif file)" in done.out
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (80, 48)
    random_image(48, 80).save(tmp_path / "lossless.webp", lossless=True)
    kept = rdc("refine", str(tmp_path / "lossless.webp"), "-o", str(tmp_path / "kept.png"), "--model", str(model))
    assert kept.code == 0 and kept.out.endswith("80x48 RGB, plain decode: refining would not improve this file "
                                                "(webp file)\n") and "lossless WebP" in kept.err
    again = rdc("refine", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png"), "--model", str(model))
    assert again.code == 1 and "not a JPEG, WebP or AVIF file" in again.err
    refused = rdc("compress", str(tmp_path / "in.png"), "--base", "jpeg", "--steps", "2", "-o", str(tmp_path),
                  "--model", str(model))
    assert refused.code == 2 and "stores no refinement settings" in refused.err


def test_rdc_refine_a_folder(rdc, refiner, tmp_path):
    """A folder of the files people have: each refined into OUTDIR/<stem>.png, as the API refines it; a broken one
    stops everything before the model is loaded, naming it."""
    model = tmp_path / "tiny-refiner"
    refiner.save_pretrained(model)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("a", "jpeg"), ("b", "webp"), ("c", "avif")):
        (photos / f"{name}{SUFFIXES[seed]}").write_bytes(refiner.compress(random_image(24, 40, seed=len(name)),
                                                                          format=seed, quality=30))
    random_image(24, 40).save(photos / "e.webp", lossless=True)  # said to be left as it is
    (photos / "notes.txt").write_text("not an image: left alone")
    done = rdc("refine", str(photos), "-o", str(tmp_path / "out"), "--model", str(model), "--seed", "3")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == f"{tmp_path / 'out' / 'a.png'}: 40x24 RGB, refined, 1 step of DDIMScheduler, strength 1, " \
                       "seed 3 (jpeg file)"
    assert lines[3] == f"{tmp_path / 'out' / 'e.png'}: 40x24 RGB, plain decode: refining would not improve this " \
                       "file (webp file)"
    assert "a lossless WebP holds its pixels exactly: returned as decoded" in done.err
    assert lines[-1] == "4 files (1 process)" and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png", "b.png", "c.png", "e.png"]
    expected = refiner.decompress((photos / "c.avif").read_bytes(), seed=3).images[0]
    assert np.array_equal(pixels(Image.open(tmp_path / "out" / "c.png")), pixels(expected))
    (photos / "d.jpg").write_bytes(b"\xff\xd8 not really")
    broken = rdc("refine", str(photos), "-o", str(tmp_path / "again"), "--model", str(model))
    assert broken.code == 1 and "d.jpg" in broken.err and not (tmp_path / "again").exists()


def test_a_tiled_refinement_matches_the_whole_one(refiner):
    """Large files are refined tile by tile (memory bounded by the tile); the blend hides the tiles."""
    from rdc_diffusers.metrics.quality import psnr

    image = random_image(192, 320, seed=4)
    reference, _ = to_tensor(image)
    data = refiner.compress(image, format="jpeg", quality=30)
    whole = refiner.decompress(data, output_type="pt", tile_size=0).images
    pieces = refiner.decompress(data, output_type="pt", tile_size=128).images
    assert pieces.shape == (1, 3, 192, 320) and not torch.equal(pieces, whole)
    assert abs(psnr(pieces, reference) - psnr(whole, reference)) < 0.05
