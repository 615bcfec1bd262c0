"""Encoder-side latent optimisation (``encoder_steps``): better rate-distortion for the same decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_image
from PIL import Image

from rdc_diffusers import RDCCodec
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, DEFAULT_MODEL
from rdc_diffusers.media.image_io import to_tensor
from rdc_diffusers.models.latent_optimisation import optimise_latent, rate_distortion

EXAMPLE_IMAGE = Path(__file__).parents[1] / "examples" / "images" / "kodim23.png"


def coded_cost(codec, x: torch.Tensor, quality: float, steps: int) -> tuple[float, float]:
    """(bpp from the real bytes, the training objective bpp + λ·255²·MSE of the decoded image)."""
    out = codec.compress(x, quality, encoder_steps=steps)
    bpp = 8 * sum(len(s[0]) for s in out["strings"]) / x[0, 0].numel()
    x_hat = codec.decompress(out["strings"], out["shape"], quality)["x_init"]
    return bpp, bpp + codec.lmbda(torch.tensor(quality)).item() * 255**2 * torch.mean((x_hat - x) ** 2).item()


def test_the_bundled_codec_codes_a_photo_better_with_an_optimised_latent():
    codec = RDCCodec.from_pretrained(BUNDLED_DIR / DEFAULT_MODEL / "codec")
    with Image.open(EXAMPLE_IMAGE) as image:
        x, _ = to_tensor(image.crop((320, 192, 448, 320)))
    for quality in (50, 90):  # measured: -1.2 % and -4.3 % (at quality 10 this crop is 144 bytes either way)
        (plain_bpp, plain), (bpp, optimised) = (coded_cost(codec, x, quality, steps) for steps in (0, 20))
        assert optimised < 0.995 * plain, (quality, plain, optimised)
        assert bpp < 1.1 * plain_bpp  # the same rate, more or less: the quality still sets it


def test_the_optimisation_is_seeded_and_never_worse_by_its_objective(tiny_pipeline):
    codec = tiny_pipeline.codec
    x, _ = to_tensor(random_image(64, 128, seed=2))
    analysis = codec.analyse(x)
    inputs = (codec, x, analysis["y"], analysis["scales"], analysis["means"], 60.0)
    first, again = optimise_latent(*inputs, steps=3), optimise_latent(*inputs, steps=3)
    assert torch.equal(first, again)
    with torch.no_grad():
        assert rate_distortion(codec, x, first, *inputs[3:]) <= rate_distortion(codec, x, analysis["y"], *inputs[3:])
    assert not any(p.grad is not None for p in codec.parameters())  # the model itself is untouched


def test_padding_pixels_are_neither_counted_nor_scored(tiny_pipeline):
    """The decoder crops the padding away: the objective is the image's bits per pixel and its own MSE."""
    codec = tiny_pipeline.codec
    x, _ = to_tensor(random_image(64, 128, seed=4))
    analysis = codec.analyse(x)
    pixels = torch.zeros_like(x[:, :1])
    pixels[..., :40, :100] = 1
    other = x.clone()
    other[..., 40:, :] = 1 - other[..., 40:, :]  # different content where pixels is 0
    with torch.no_grad():
        costs = [rate_distortion(codec, image, analysis["y"], analysis["scales"], analysis["means"], 50.0,
                                 pixels=pixels) for image in (x, other)]
        whole = rate_distortion(codec, x, analysis["y"], analysis["scales"], analysis["means"], 50.0)
    assert torch.equal(costs[0], costs[1])
    assert not torch.equal(costs[0], whole)


def test_a_tiled_analysis_is_optimised_tile_by_tile(tiny_pipeline):
    codec = tiny_pipeline.codec
    x, _ = to_tensor(random_image(192, 320, seed=3))
    analysis = codec.analyse(x, tile_size=64)
    out = codec.code_latent(analysis, 50, encoder_steps=2)
    assert codec.decompress(out["strings"], out["shape"], 50)["x_init"].shape == x.shape


def test_the_pipeline_file_is_an_ordinary_one(tiny_pipeline):
    image = random_image(64, 128, seed=5)
    data = tiny_pipeline.compress(image, quality=70, encoder_steps=3)
    assert data == tiny_pipeline.compress(image, quality=70, encoder_steps=3)
    assert decode_file(data).header.quality == 70
    assert tiny_pipeline.decompress(data, refine=False).images[0].size == (128, 64)


def test_rate_control_with_optimisation_never_exceeds_the_target(tiny_pipeline):
    image = random_image(64, 128, seed=6)
    plain = tiny_pipeline.compress(image, quality=60)
    target = 8 * len(plain) / (64 * 128)
    data = tiny_pipeline.compress(image, target_bpp=target, encoder_steps=3)
    assert len(data) <= len(plain)


@pytest.mark.parametrize("steps", [-1, 1.5, True, "3"])
def test_encoder_steps_must_be_a_whole_number(tiny_pipeline, steps):
    with pytest.raises(ValueError, match="encoder_steps"):
        tiny_pipeline.compress(random_image(64, 64), encoder_steps=steps)


def test_rdc_compress_encoder_steps(rdc, tiny_model_dir, tmp_path):
    small_png = tmp_path / "small.png"
    random_image(40, 70).save(small_png)
    made = rdc("compress", small_png, "-o", tmp_path / "a.rdc", "--model", tiny_model_dir, "--encoder-steps", 2)
    assert made.code == 0, made.err
    assert rdc("decompress", tmp_path / "a.rdc", "-o", tmp_path / "a.png", "--model", tiny_model_dir).code == 0
    refused = rdc("compress", small_png, "--base", "jpeg", "--encoder-steps", 2, "-o", tmp_path)
    assert refused.code == 2 and "--encoder-steps" in refused.err
