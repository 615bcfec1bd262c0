"""RDCPipeline end to end with a tiny random-weight model: bytes, decoding modes, determinism, inputs, errors."""

from __future__ import annotations

import io
import subprocess
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import PYTHON, build_tiny_pipeline, load_pipeline, python_env, random_image
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from safetensors.torch import load_file

from rdc_diffusers import RDCFormatError, RDCModelMismatchError, RDCPipeline, RDCPipelineOutput, ResidualUNet
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.media.image_io import crop_to, pad_to_multiple, to_tensor


def decode_np(pipe: RDCPipeline, data: bytes, **kwargs) -> np.ndarray:
    return pipe.decompress(data, output_type="np", **kwargs).images


# --- the real round trip ------------------------------------------------------------------------------------------


def test_compress_gives_bytes_and_decompress_counts_their_bits(tiny_pipeline):
    image = random_image(48, 80)

    data = tiny_pipeline.compress(image)
    out = tiny_pipeline.decompress(data)

    assert isinstance(data, bytes)
    assert isinstance(out, RDCPipelineOutput)
    assert len(out.images) == 1 and out.images[0].size == (80, 48) and out.images[0].mode == "RGB"
    assert out.bpp == [8 * len(data) / (80 * 48)]
    assert out.data == [data]


def test_a_transparent_image_is_said_to_come_back_opaque(tiny_pipeline):
    """An .rdc file holds colour only: a logo's clear pixels come back as whatever colour lies under them."""
    image = random_image(48, 80)
    image.putalpha(255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opaque RGBA: nothing to say
        tiny_pipeline.compress(image)
    image.putalpha(PIL.Image.linear_gradient("L").resize((80, 48)))  # clear at the top, opaque at the bottom
    with pytest.warns(UserWarning, match=r"the image is transparent \(.*%.*\) and an \.rdc file holds colour only"):
        data = tiny_pipeline.compress(image)
    assert tiny_pipeline.decompress(data).images[0].mode == "RGB"


def test_call_is_compress_then_decompress(tiny_pipeline):
    image = random_image(48, 80)

    out = tiny_pipeline(image)

    data = tiny_pipeline.compress(image)
    assert out.data == [data]  # encoding is deterministic
    assert out.bpp == [8 * len(data) / (80 * 48)]
    np.testing.assert_array_equal(np.asarray(out.images[0]), np.asarray(tiny_pipeline.decompress(data).images[0]))


def test_call_takes_a_list_of_images_of_different_sizes(tiny_pipeline):
    small, wide = random_image(16, 24, seed=1), random_image(40, 100, seed=2)

    out = tiny_pipeline([small, wide], refine=False, output_type="np")

    assert [a.shape for a in out.images] == [(16, 24, 3), (40, 100, 3)]  # one array per image
    assert out.bpp == [8 * len(d) / n for d, n in zip(out.data, (16 * 24, 40 * 100), strict=True)]


def test_fast_and_refined_decodes_differ_and_refined_is_deterministic(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(48, 80))

    fast = decode_np(tiny_pipeline, data, refine=False)
    refined = decode_np(tiny_pipeline, data)

    assert not np.array_equal(fast, refined)
    np.testing.assert_array_equal(decode_np(tiny_pipeline, data), refined)  # same file, same pixels
    np.testing.assert_array_equal(decode_np(tiny_pipeline, data, refine=False), fast)


def test_a_reloaded_pipeline_decodes_old_files_bit_exactly(tiny_pipeline, tiny_model_dir):
    """A file written before save_pretrained decodes to the same pixels after from_pretrained, fast and refined.

    (The unet is loaded into freshly allocated parameters: with diffusers' zero-copy loading, the weights'
    memory alignment differed and the refined output drifted by ~3e-6.)
    """
    data = tiny_pipeline.compress(random_image(48, 80))  # written by the in-memory pipeline

    reloaded = load_pipeline(tiny_model_dir)

    np.testing.assert_array_equal(decode_np(reloaded, data, refine=False), decode_np(tiny_pipeline, data, refine=False))
    np.testing.assert_array_equal(decode_np(reloaded, data), decode_np(tiny_pipeline, data))


DECODE_SCRIPT = """
import sys
import numpy as np
import torch
from rdc_diffusers import RDCPipeline

model_dir, rdc_path, out_path, threads = sys.argv[1:]
torch.set_num_threads(int(threads))
pipe = RDCPipeline.from_pretrained(model_dir)
pipe.set_progress_bar_config(disable=True)
data = open(rdc_path, "rb").read()
fast = pipe.decompress(data, refine=False, output_type="np").images
refined = pipe.decompress(data, output_type="np").images
np.save(out_path, np.stack([fast, refined]))
"""


def decode_in_subprocess(model_dir: Path, rdc_path: Path, out_path: Path, threads: int) -> tuple[np.ndarray, ...]:
    env = python_env(OMP_NUM_THREADS=str(threads))
    args = [PYTHON, "-c", DECODE_SCRIPT, str(model_dir), str(rdc_path), str(out_path), str(threads)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    fast, refined = np.load(out_path)
    return fast, refined


def test_decoding_is_identical_in_another_process(tiny_model_dir, tmp_path):
    """Same model folder, same thread count: the fast and the refined pixels are bit-identical.

    With another thread count, torch sums the convolutions in another order: the entropy-decoded latent
    is still exact (its indexes come from integer tables), so the fast output differs by float rounding
    only (measured: at most 1.5e-8, and 8-bit images identical), and the refined output by a little more
    (measured: at most 6e-6, a handful of 8-bit values off by one). Bit-exact pixels across processes are
    only promised for the same thread count.
    """
    pipe = load_pipeline(tiny_model_dir)
    rdc_path = tmp_path / "image.rdc"
    rdc_path.write_bytes(pipe.compress(random_image(150, 260)))
    here = torch.get_num_threads()

    fast, refined = decode_in_subprocess(tiny_model_dir, rdc_path, tmp_path / "same.npy", threads=here)

    data = rdc_path.read_bytes()
    np.testing.assert_array_equal(fast, decode_np(pipe, data, refine=False))
    np.testing.assert_array_equal(refined, decode_np(pipe, data))

    other = 2 if here == 1 else 1
    fast_other, refined_other = decode_in_subprocess(tiny_model_dir, rdc_path, tmp_path / "other.npy", threads=other)
    np.testing.assert_allclose(fast_other, fast, rtol=0, atol=1e-6)
    np.testing.assert_allclose(refined_other, refined, rtol=0, atol=1e-4)


# --- quality -------------------------------------------------------------------------------------------------------


def test_the_quality_is_stored_in_the_file_and_decoded_with(tiny_pipeline):
    image = random_image(48, 80)

    data = tiny_pipeline.compress(image, quality=37.12)

    assert decode_file(data).header.quality == 37.12
    # The fast decode is exactly the codec's decode at that quality: the decoder took it from the header.
    x = pad_to_multiple(to_tensor(image)[0], tiny_pipeline.codec.alignment)
    coded = tiny_pipeline.codec.compress(x, 37.12)
    expected = crop_to(tiny_pipeline.codec.decompress(coded["strings"], coded["shape"], 37.12)["x_init"], 48, 80)
    np.testing.assert_array_equal(tiny_pipeline.decompress(data, refine=False, output_type="pt").images, expected)


def test_qualities_are_rounded_to_hundredths_before_they_are_stored(tiny_pipeline):
    image = random_image(48, 80)
    data = tiny_pipeline.compress(image, quality=37.123)
    assert decode_file(data).header.quality == 37.12
    assert data == tiny_pipeline.compress(image, quality=37.12)


def test_the_default_quality_comes_from_the_config(tiny_pipeline, tmp_path):
    image = random_image(48, 80)
    assert tiny_pipeline.config.default_quality == 50

    data = tiny_pipeline.compress(image)

    assert decode_file(data).header.quality == 50
    assert data == tiny_pipeline.compress(image, quality=50)

    # Another default travels with the saved pipeline (model_index.json).
    pipe = RDCPipeline(codec=tiny_pipeline.codec, unet=tiny_pipeline.unet, scheduler=tiny_pipeline.scheduler,
                       default_quality=80)
    pipe.save_pretrained(tmp_path / "q80")
    reloaded = load_pipeline(tmp_path / "q80")
    assert reloaded.config.default_quality == 80
    assert decode_file(reloaded.compress(image)).header.quality == 80


@pytest.mark.parametrize("default_quality, error", [(101, ValueError), (-5, ValueError), ("high", TypeError)])
def test_a_default_quality_outside_0_to_100_is_refused(tiny_pipeline, default_quality, error):
    with pytest.raises(error, match="quality"):
        RDCPipeline(codec=tiny_pipeline.codec, unet=tiny_pipeline.unet, scheduler=tiny_pipeline.scheduler,
                    default_quality=default_quality)


@pytest.mark.parametrize("quality, error", [(-1, ValueError), (100.5, ValueError), (float("nan"), ValueError),
                                            ("50", TypeError), (True, TypeError)])
def test_compress_refuses_a_bad_quality(tiny_pipeline, quality, error):
    with pytest.raises(error, match="quality"):
        tiny_pipeline.compress(random_image(16, 16), quality=quality)


def test_quality_and_target_bpp_together_are_refused(tiny_pipeline):
    with pytest.raises(ValueError, match="either quality or target_bpp"):
        tiny_pipeline.compress(random_image(16, 16), quality=50, target_bpp=0.5)
    with pytest.raises(ValueError, match="either quality or target_bpp"):
        tiny_pipeline(random_image(16, 16), quality=50, target_bpp=0.5)


@pytest.mark.parametrize("target_bpp", [0, -1.0, True, "0.5", float("nan")])
def test_a_bad_target_bpp_is_refused(tiny_pipeline, target_bpp):
    with pytest.raises(ValueError, match="target_bpp"):
        tiny_pipeline.compress(random_image(16, 16), target_bpp=target_bpp)


def test_refined_decodes_work_at_every_quality(fresh_pipeline):
    """One unet for every rate: it is told each file's quality."""
    told = []
    fresh_pipeline.unet.register_forward_pre_hook(lambda unet, args, kwargs: told.append(kwargs["quality"]),
                                                  with_kwargs=True)
    image = random_image(48, 80)
    for quality in (0, 33.33, 100):
        data = fresh_pipeline.compress(image, quality=quality, num_inference_steps=2)
        told.clear()

        refined = decode_np(fresh_pipeline, data)

        assert told == [quality, quality]  # each of the 2 steps
        assert refined.shape == (1, 48, 80, 3) and np.isfinite(refined).all()
        assert refined.min() >= 0 and refined.max() <= 1
        assert not np.array_equal(refined, decode_np(fresh_pipeline, data, refine=False))
        np.testing.assert_array_equal(refined, decode_np(fresh_pipeline, data))


def test_call_takes_a_quality(tiny_pipeline):
    image = random_image(48, 80)
    out = tiny_pipeline(image, quality=12.5, refine=False)
    assert out.data == [tiny_pipeline.compress(image, quality=12.5)]
    assert decode_file(out.data[0]).header.quality == 12.5


# --- schedulers -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler])
def test_any_scheduler_built_from_the_config_decodes(fresh_pipeline, scheduler_class):
    data = fresh_pipeline.compress(random_image(48, 80))
    fresh_pipeline.scheduler = scheduler_class.from_config(fresh_pipeline.scheduler.config)

    first = decode_np(fresh_pipeline, data, num_inference_steps=3)
    second = decode_np(fresh_pipeline, data, num_inference_steps=3)

    assert first.shape == (1, 48, 80, 3) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, decode_np(fresh_pipeline, data, refine=False))


# --- what goes in, what comes out -----------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(33, 47), (1, 1), (65, 64), (64, 130)])
def test_any_size_round_trips(tiny_pipeline, height, width):
    out = tiny_pipeline(random_image(height, width), num_inference_steps=1)
    assert out.images[0].size == (width, height)
    assert out.bpp == [8 * len(out.data[0]) / (width * height)]


def sixteen_bit_image(height: int, width: int) -> PIL.Image.Image:
    gray = np.asarray(random_image(height, width, mode="L"), dtype=np.uint16) * 257
    image = PIL.Image.fromarray(gray)
    assert image.mode == "I;16"
    return image


@pytest.mark.parametrize(
    "mode, decoded_mode",
    [("L", "L"), ("LA", "RGB"), ("RGBA", "RGB"), ("P", "RGB"), ("I;16", "L"), ("1", "L"), ("CMYK", "RGB")],
)
def test_each_pil_mode_round_trips(tiny_pipeline, mode, decoded_mode):
    image = sixteen_bit_image(24, 40) if mode == "I;16" else random_image(24, 40, mode=mode)
    assert image.mode == mode

    data = tiny_pipeline.compress(image)
    decoded = tiny_pipeline.decompress(data, num_inference_steps=1).images[0]

    assert decoded.size == (40, 24)
    assert decoded.mode == decoded_mode


def test_numpy_and_torch_inputs_code_the_same_pixels_as_pil(tiny_pipeline):
    image = random_image(24, 40)
    pixels = np.asarray(image)  # uint8 H x W x 3
    tensor = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)  # float [3, H, W] in [0, 1]

    data = tiny_pipeline.compress(image)

    assert tiny_pipeline.compress(pixels) == data
    assert tiny_pipeline.compress(tensor) == data


def test_output_types_and_tuple_return(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(24, 40))

    as_np = tiny_pipeline.decompress(data, output_type="np").images
    as_pt = tiny_pipeline.decompress(data, output_type="pt").images
    images, bpp, files = tiny_pipeline.decompress(data, return_dict=False)

    assert as_np.shape == (1, 24, 40, 3) and as_np.dtype == np.float32
    assert isinstance(as_pt, torch.Tensor) and as_pt.shape == (1, 3, 24, 40)
    np.testing.assert_array_equal(as_pt.permute(0, 2, 3, 1).numpy(), as_np)
    assert images[0].size == (40, 24)
    assert bpp == [8 * len(data) / (24 * 40)] and files == [data]
    np.testing.assert_array_equal(np.asarray(images[0]), np.round(as_np[0] * 255).astype(np.uint8))
    call_images, call_bpp, call_data = tiny_pipeline(random_image(24, 40), return_dict=False)
    assert call_data == [data] and call_bpp == bpp


def test_output_type_is_checked(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(8, 8))
    with pytest.raises(ValueError, match="output_type"):
        tiny_pipeline.decompress(data, output_type="latent")


# --- seeds, steps and callbacks -------------------------------------------------------------------------------------


def test_a_generator_overrides_the_seed_stored_in_the_file(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(48, 80))  # seed 0 stored

    stored = decode_np(tiny_pipeline, data)
    with_generator = decode_np(tiny_pipeline, data, generator=torch.Generator().manual_seed(123))
    with_seed_0 = decode_np(tiny_pipeline, data, generator=torch.Generator().manual_seed(0))

    assert not np.array_equal(stored, with_generator)
    np.testing.assert_array_equal(stored, with_seed_0)  # the file's seed drives a CPU generator


def test_the_seed_given_at_compress_changes_only_the_refined_output(tiny_pipeline):
    image = random_image(48, 80)

    seed_0, seed_7 = tiny_pipeline.compress(image, seed=0), tiny_pipeline.compress(image, seed=7)

    np.testing.assert_array_equal(decode_np(tiny_pipeline, seed_0, refine=False),
                                  decode_np(tiny_pipeline, seed_7, refine=False))
    assert not np.array_equal(decode_np(tiny_pipeline, seed_0), decode_np(tiny_pipeline, seed_7))


def count_steps(pipe: RDCPipeline, data: bytes, **kwargs) -> int:
    calls = []

    def callback(pipe, i, t, tensors):
        calls.append(i)
        return tensors

    pipe.decompress(data, callback_on_step_end=callback, **kwargs)
    return len(calls)


def test_the_step_count_stored_in_the_file_is_the_default(tiny_pipeline):
    image = random_image(16, 16)

    assert count_steps(tiny_pipeline, tiny_pipeline.compress(image)) == tiny_pipeline.config.default_num_inference_steps
    three_steps = tiny_pipeline.compress(image, num_inference_steps=3)
    assert count_steps(tiny_pipeline, three_steps) == 3
    assert count_steps(tiny_pipeline, three_steps, num_inference_steps=2) == 2
    assert count_steps(tiny_pipeline, three_steps, refine=False) == 0
    no_steps = tiny_pipeline.compress(image, num_inference_steps=0)  # a file that asks for the fast decode
    np.testing.assert_array_equal(decode_np(tiny_pipeline, no_steps), decode_np(tiny_pipeline, no_steps, refine=False))


# --- strength: the decode-time fidelity <-> realism knob ---------------------------------------------------------


@pytest.mark.parametrize(("steps", "error", "message"), [
    (2000, ValueError, r"must be in 0\.\.1000 \(the scheduler's num_train_timesteps\), got 2000"),
    (-1, ValueError, r"must be in 0\.\.1000"),
    (101, ValueError, "above the 100 steps decoders accept from a file by default"),
    (2.0, TypeError, "must be an integer"),
])
def test_compress_refuses_steps_its_decoders_would_refuse(tiny_pipeline, steps, error, message):
    """A file whose stored steps its own default decode refuses must not be written (diffusers' set_timesteps would
    fail at decode time: "2000 cannot be larger than ... 1000")."""
    with pytest.raises(error, match=message):
        tiny_pipeline.compress(random_image(16, 16), num_inference_steps=steps)
    with pytest.raises(error, match=message):
        tiny_pipeline(random_image(16, 16), num_inference_steps=steps)
    data = tiny_pipeline.compress(random_image(16, 16), num_inference_steps=100)  # the most a file may ask for
    assert count_steps(tiny_pipeline, data) == 100


def test_strength_scales_the_sampled_residual(tiny_pipeline):
    """x̂ = x_init + s·(refined − x_init): 0 is the fast decode, 1 the full sample, in between on the line."""
    data = tiny_pipeline.compress(random_image(32, 48, seed=4), num_inference_steps=2)
    fast = tiny_pipeline.decompress(data, refine=False, output_type="pt").images
    full = tiny_pipeline.decompress(data, output_type="pt").images
    assert not torch.equal(fast, full)

    assert torch.equal(tiny_pipeline.decompress(data, strength=0, output_type="pt").images, fast)
    assert torch.equal(tiny_pipeline.decompress(data, strength=1, output_type="pt").images, full)
    for s in (0.25, 0.7):
        out = tiny_pipeline.decompress(data, strength=s, output_type="pt").images
        inside = (full > 0) & (full < 1)  # where the full decode was not clamped
        torch.testing.assert_close(out[inside], (fast + s * (full - fast))[inside], atol=1e-5, rtol=0)
    distances = [(tiny_pipeline.decompress(data, strength=s, output_type="pt").images - fast).abs().mean()
                 for s in (0.25, 0.5, 1.0)]
    assert distances[0] < distances[1] < distances[2]


def test_the_strength_stored_in_the_file_is_the_default(tiny_pipeline, tmp_path):
    image = random_image(32, 48, seed=5)
    assert tiny_pipeline.config.default_strength == 1.0
    assert decode_file(tiny_pipeline.compress(image)).header.strength == 1.0

    data = tiny_pipeline.compress(image, strength=0.35)
    assert decode_file(data).header.strength == 0.35
    np.testing.assert_array_equal(decode_np(tiny_pipeline, data), decode_np(tiny_pipeline, data, strength=0.35))
    assert not np.array_equal(decode_np(tiny_pipeline, data), decode_np(tiny_pipeline, data, strength=1))
    assert decode_file(tiny_pipeline(image, strength=0.5).data[0]).header.strength == 0.5

    pipe = RDCPipeline(codec=tiny_pipeline.codec, unet=tiny_pipeline.unet, scheduler=tiny_pipeline.scheduler,
                       default_strength=0.8)
    pipe.save_pretrained(tmp_path / "s08")
    assert decode_file(load_pipeline(tmp_path / "s08").compress(image)).header.strength == 0.8


@pytest.mark.parametrize("strength, error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                             ("1", TypeError), (True, TypeError)])
def test_a_bad_strength_is_refused(tiny_pipeline, strength, error):
    data = tiny_pipeline.compress(random_image(16, 16))
    with pytest.raises(error, match="strength"):
        tiny_pipeline.compress(random_image(16, 16), strength=strength)
    with pytest.raises(error, match="strength"):
        tiny_pipeline.decompress(data, strength=strength)
    with pytest.raises(error, match="strength"):
        RDCPipeline(codec=tiny_pipeline.codec, unet=tiny_pipeline.unet, scheduler=tiny_pipeline.scheduler,
                    default_strength=strength)


def test_a_callback_can_replace_the_residual(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(48, 80), num_inference_steps=3)

    def zero_residual_at_the_end(pipe, i, t, tensors):
        residual = tensors["residual"]
        assert residual.shape == (1, 3, 64, 128)  # the padded size
        return {"residual": torch.zeros_like(residual)} if i == 2 else tensors

    zeroed = decode_np(tiny_pipeline, data, callback_on_step_end=zero_residual_at_the_end)

    # x̂ = x_init + residual: with a zero residual the refined decode is the fast one.
    np.testing.assert_array_equal(zeroed, decode_np(tiny_pipeline, data, refine=False))
    assert not np.array_equal(zeroed, decode_np(tiny_pipeline, data))


# --- bad files ------------------------------------------------------------------------------------------------------


def test_every_truncation_is_a_format_error(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(8, 8))

    for length in range(len(data)):
        with pytest.raises(RDCFormatError) as info:
            tiny_pipeline.decompress(data[:length])
        assert not isinstance(info.value, RDCModelMismatchError), length


def test_every_single_bit_flip_is_a_format_error(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(8, 8))
    assert len(data) * 8 >= 300  # every bit of the file is flipped once

    for bit in range(len(data) * 8):
        corrupted = bytearray(data)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RDCFormatError) as info:
            tiny_pipeline.decompress(bytes(corrupted))
        assert not isinstance(info.value, RDCModelMismatchError), bit


def test_a_file_from_another_model_is_refused_naming_both(tiny_model_dir, other_model_dir):
    pipe, other = load_pipeline(tiny_model_dir), load_pipeline(other_model_dir)
    data = other.compress(random_image(16, 16))

    with pytest.raises(RDCModelMismatchError) as info:
        pipe.decompress(data, refine=False)

    message = str(info.value)
    assert "'other-tiny-rdc'" in message and "'tiny-rdc'" in message
    assert pipe.codec.fingerprint().hex() in message and other.codec.fingerprint().hex() in message
    assert isinstance(info.value, RDCFormatError)  # one except clause catches every bad file


def test_foreign_bytes_are_a_format_error(tiny_pipeline):
    png = io.BytesIO()
    random_image(8, 8).save(png, format="PNG")
    noise = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()

    for data in (png.getvalue(), noise, b"", b"\x89RDC"):
        with pytest.raises(RDCFormatError):
            tiny_pipeline.decompress(data)


# --- loading and saving ---------------------------------------------------------------------------------------------


def test_pickle_weights_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="safetensors"):
        RDCPipeline.from_pretrained(tiny_model_dir, use_safetensors=False)


def test_a_folder_with_bin_weights_does_not_load(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "pickled"
    for path in tiny_model_dir.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(tiny_model_dir)).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.relative_to(tiny_model_dir)).write_bytes(path.read_bytes())
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    unpickled = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a) or real_load(*a, **k))

    with pytest.raises(Exception):  # noqa: B017 (any error will do, as long as nothing is unpickled)
        RDCPipeline.from_pretrained(folder)
    assert unpickled == []


def test_saved_pipeline_holds_safetensors_only(tiny_model_dir):
    files = sorted(str(p.relative_to(tiny_model_dir)) for p in tiny_model_dir.rglob("*") if p.is_file())
    assert files == [
        "README.md", "codec/config.json", "codec/diffusion_pytorch_model.safetensors", "model_index.json",
        "pipeline.py", "scheduler/scheduler_config.json", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]  # fmt: skip  (README.md: the model card; pipeline.py: for custom_pipeline loading, see docs/hub.md)


def test_diffusion_pipeline_from_pretrained_finds_the_class(tiny_model_dir, tiny_pipeline):
    """diffusers looks "_class_name" up on its own module; importing rdc_diffusers registers RDCPipeline there."""
    pipe = DiffusionPipeline.from_pretrained(tiny_model_dir)
    assert type(pipe) is RDCPipeline
    data = tiny_pipeline.compress(random_image(16, 16))
    assert np.array_equal(pipe.decompress(data, output_type="np").images,
                          tiny_pipeline.decompress(data, output_type="np").images)


def test_the_unet_must_fit_the_codec_alignment(tiny_pipeline):
    coarse_unet = ResidualUNet(latent_channels=24, cond_channels=4, downscale=16,
                               block_out_channels=(8, 8, 8, 8), norm_num_groups=4)  # needs multiples of 128
    with pytest.raises(ValueError, match="128"):
        RDCPipeline(codec=tiny_pipeline.codec, unet=coarse_unet, scheduler=tiny_pipeline.scheduler)


# --- devices and dtypes ---------------------------------------------------------------------------------------------


def test_to_cpu(fresh_pipeline):
    data = fresh_pipeline.compress(random_image(16, 16))
    assert fresh_pipeline.to("cpu") is fresh_pipeline
    assert fresh_pipeline.decompress(data).images[0].size == (16, 16)


@pytest.mark.filterwarnings("ignore:the UNet runs in float16")  # on purpose: the next test checks that warning
def test_half_precision_unet_keeps_a_float32_codec(tiny_pipeline, fresh_pipeline):
    data = fresh_pipeline.compress(random_image(48, 80))

    fresh_pipeline.to(torch.float16)

    assert fresh_pipeline.codec.dtype == torch.float32  # the entropy coder's indexes need float32
    assert fresh_pipeline.unet.dtype == torch.float16
    assert fresh_pipeline.compress(random_image(48, 80)) == data  # same bytes as in float32
    np.testing.assert_array_equal(decode_np(fresh_pipeline, data, refine=False),
                                  decode_np(tiny_pipeline, data, refine=False))
    # Refinement in float16 runs on the CPU too (torch >= 2.x has half kernels for these ops); it is
    # close to, not equal to, the float32 result.
    refined = decode_np(fresh_pipeline, data)
    assert refined.dtype == np.float32 and np.isfinite(refined).all()
    np.testing.assert_allclose(refined, decode_np(tiny_pipeline, data), rtol=0, atol=0.05)


@pytest.mark.parametrize(("dtype", "probe"), [(torch.float16, "_is_mkldnn_fp16_supported"),
                                              (torch.bfloat16, "_is_mkldnn_bf16_supported")])
def test_half_precision_on_a_cpu_without_its_kernels_warns(fresh_pipeline, monkeypatch, dtype, probe):
    """float16 refinement on a CPU without FP16 instructions took 25.7 s instead of 0.33 s (rdc-bsds, 256²): say so
    rather than look hung; where the CPU has the instructions (the probe), and in float32, say nothing."""
    data = fresh_pipeline.compress(random_image(16, 16))
    fresh_pipeline.to(dtype)
    monkeypatch.setattr(torch.ops.mkldnn, probe, lambda: False)
    with pytest.warns(UserWarning, match=f"UNet runs in {str(dtype)[6:]} on a CPU without fast kernels.*float32"):
        fresh_pipeline.decompress(data)

    monkeypatch.setattr(torch.ops.mkldnn, probe, lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh_pipeline.decompress(data)
        fresh_pipeline.to(torch.float32).decompress(data)


def test_loading_in_half_precision_keeps_a_float32_codec(tiny_pipeline, tiny_model_dir):
    data = tiny_pipeline.compress(random_image(48, 80))

    pipe = RDCPipeline.from_pretrained(tiny_model_dir, dtype=torch.float16)

    assert pipe.codec.dtype == torch.float32 and pipe.unet.dtype == torch.float16
    np.testing.assert_array_equal(decode_np(pipe, data, refine=False), decode_np(tiny_pipeline, data, refine=False))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="enable_model_cpu_offload needs an accelerator (accelerate refuses on CPU-only machines)")
def test_model_cpu_offload(tiny_pipeline, fresh_pipeline):
    data = tiny_pipeline.compress(random_image(48, 80))

    fresh_pipeline.enable_model_cpu_offload()

    fast = decode_np(fresh_pipeline, data, refine=False)
    refined = decode_np(fresh_pipeline, data)
    assert fast.shape == refined.shape == (1, 48, 80, 3)
    # Same latent (a desynchronised entropy decoder would give garbage), GPU float rounding aside.
    np.testing.assert_allclose(fast, decode_np(tiny_pipeline, data, refine=False), rtol=0, atol=1e-3)
    assert np.isfinite(refined).all()
    assert fresh_pipeline.decompress(fresh_pipeline.compress(random_image(16, 16))).images[0].size == (16, 16)


def test_two_tiny_models_differ(tmp_path):
    """Sanity check of the fixtures the mismatch tests rely on."""
    assert build_tiny_pipeline(0).codec.fingerprint() != build_tiny_pipeline(1).codec.fingerprint()
