"""Tiled transforms and UNet: memory bounded by the tile, output matching the untiled one (no seams)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_image, shown_progress

from rdc_diffusers import tiling
from rdc_diffusers.media.image_io import to_tensor
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.tiling import choose_tile_size, tile_spans, tiled


@pytest.mark.parametrize(("size", "tile", "overlap"), [(64, 64, 64), (320, 128, 64), (384, 128, 128), (200, 40, 8)])
def test_tile_spans_partition_the_axis(size, tile, overlap):
    align = 8
    spans = tile_spans(size, tile, overlap, align)
    kept = [k for _, _, start, stop in spans for k in range(start, stop)]
    assert kept == list(range(size))  # the kept parts partition 0..size
    for start, stop, keep_start, keep_stop in spans:
        assert start == max(keep_start - overlap, 0) and stop == min(keep_stop + overlap, size)
        assert all(v % align == 0 for v in (start, stop, keep_start, keep_stop))


def test_tile_spans_refuse_misaligned_sizes():
    with pytest.raises(ValueError, match="multiples of 64"):
        tile_spans(640, 100, 64, 64)


def test_a_local_function_tiles_exactly_when_its_reach_is_within_half_the_overlap():
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 3, 5, padding=2))
    x = torch.rand(1, 3, 192, 256)
    with torch.no_grad():
        whole = conv(x)
        pieces = tiled(conv, [x], scales=[1], out_scale=1, tile=64, overlap=16, align=16)  # reach 4 < 16 / 2
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=0)


def test_the_codec_transforms_tile_up_to_float_rounding(tiny_pipeline):
    codec = tiny_pipeline.codec
    x, _ = to_tensor(random_image(192, 320, seed=3))
    with torch.no_grad():
        analysis, tiled_analysis = codec.analyse(x), codec.analyse(x, tile_size=64)
        torch.testing.assert_close(tiled_analysis["y"], analysis["y"], atol=1e-4, rtol=0)
        coded = codec.code_latent(analysis, 50)
        whole = codec.decompress(coded["strings"], coded["shape"], 50)["x_init"]
        pieces = codec.decompress(coded["strings"], coded["shape"], 50, tile_size=64)["x_init"]
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [1, 3])
def test_a_tiled_refined_decode_matches_the_whole_one_without_seams(tiny_pipeline, steps):
    image = random_image(192, 320, seed=4)
    reference, _ = to_tensor(image)
    data = tiny_pipeline.compress(image, num_inference_steps=steps)
    whole = tiny_pipeline.decompress(data, output_type="pt", tile_size=0).images
    pieces = tiny_pipeline.decompress(data, output_type="pt", tile_size=128).images
    assert not torch.equal(pieces, whole)  # GroupNorm sees each tile alone: close, not equal
    assert abs(psnr(pieces, reference) - psnr(whole, reference)) < 0.05
    # No seam: across the tile borders (x = 128, 256; y = 128) the difference image changes no more than it does
    # between any other neighbouring pixels.
    diff = (pieces - whole).abs().mean(1)[0]
    steps_x, steps_y = (diff[:, 1:] - diff[:, :-1]).abs(), (diff[1:] - diff[:-1]).abs()
    at_borders = torch.cat([steps_x[:, [127, 255]].flatten(), steps_y[127].flatten()])
    assert at_borders.mean() < 2 * torch.cat([steps_x.flatten(), steps_y.flatten()]).mean() + 1e-4


def test_large_images_are_tiled_automatically(tiny_pipeline, monkeypatch):
    calls = []
    original = tiling.tiled

    def spy(fn, inputs, **kwargs):
        calls.append(kwargs["tile"])
        return original(fn, inputs, **kwargs)

    monkeypatch.setattr("rdc_diffusers.models.codec.tiled", spy)
    monkeypatch.setattr("rdc_diffusers.pipelines.pipeline_rdc.tiled", spy)
    data = tiny_pipeline.compress(random_image(128, 192), num_inference_steps=2)
    tiny_pipeline.decompress(data)
    assert calls == []  # small: whole
    monkeypatch.setattr(tiling, "AUTO_TILE_PIXELS", 128 * 128)
    monkeypatch.setattr(tiling, "TILE_SIZE", 64)
    tiny_pipeline.decompress(data)
    assert calls == [64]  # one tiling of the whole decode: g_s and both steps of each tile
    tiny_pipeline.decompress(data, tile_size=0)
    assert len(calls) == 1


@pytest.mark.parametrize("bad", [-64, 100, 64.0, True])
def test_a_bad_tile_size_is_a_value_error(bad):
    with pytest.raises(ValueError, match="tile_size must be a positive multiple of 64"):
        choose_tile_size(bad, 512, 512, 64)


def test_a_tiled_decode_counts_tiles_in_its_progress_bar(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(128, 192), num_inference_steps=2)
    try:
        shown = shown_progress(tiny_pipeline)
        tiny_pipeline.decompress(data, tile_size=64)
        assert "6/6" in shown.getvalue() and "2/2" not in shown.getvalue()  # tiles, not each tile's steps
        shown = shown_progress(tiny_pipeline)
        tiny_pipeline.decompress(data, tile_size=0)
        assert "2/2" in shown.getvalue()  # whole: the steps
    finally:
        tiny_pipeline.set_progress_bar_config(disable=True)
