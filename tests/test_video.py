"""The video codec: the .rdcv container, the inter codec, RDCVideoPipeline and its temporal noise, on tiny models."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline, random_image, shown_progress
from PIL import Image

from rdc_diffusers import (
    RDCFormatError,
    RDCInterCodec,
    RDCModelMismatchError,
    RDCVideoPipeline,
    UnsupportedImageError,
    UnsupportedVideoError,
)
from rdc_diffusers.bitstream.rdcv import RDCVFile, RDCVHeader, decode_video_file, encode_video_file
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, DEFAULT_MODEL
from rdc_diffusers.media.image_io import pad_to_multiple, to_tensor
from rdc_diffusers.media.video_io import read_video
from rdc_diffusers.models.entropy_coded import hyperprior_decompress, hyperprior_params

EXAMPLE_IMAGE = Path(__file__).parents[1] / "examples" / "images" / "kodim23.png"


def moving_clip(count: int = 5, height: int = 48, width: int = 80, seed: int = 0) -> list:
    """A random picture panning right by 2 px per frame (the first frames of a wider image)."""
    wide = np.asarray(random_image(height, width + 2 * count, seed=seed))
    return [Image.fromarray(np.ascontiguousarray(wide[:, 2 * k : 2 * k + width])) for k in range(count)]


def build_tiny_video_pipeline(seed: int = 0) -> RDCVideoPipeline:
    image = build_tiny_pipeline(seed)
    torch.manual_seed(seed)
    pipe = RDCVideoPipeline(codec=image.codec, inter_codec=RDCInterCodec(N=8, M=8), unet=image.unet,
                            scheduler=image.scheduler, default_num_inference_steps=1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def video_pipe() -> RDCVideoPipeline:
    return build_tiny_video_pipeline()


@pytest.fixture(scope="module")
def clip_bytes(video_pipe) -> bytes:
    return video_pipe.compress(moving_clip(), fps=Fraction(50), gop_size=3, seed=7)


def header(**overrides) -> RDCVHeader:
    fields = dict(width=80, height=48, fps=Fraction(30000, 1001), gop_size=3, codec_id=b"A" * 8,
                  inter_codec_id=b"B" * 8, model_name="tiny", seed=3, num_inference_steps=1)
    return RDCVHeader(**(fields | overrides))


# --- the container ---------------------------------------------------------------------------------------------


def test_container_round_trip_keeps_every_field():
    file = RDCVFile(header=header(), frame_types=("I", "P", "P", "I"),
                    sections=((b"y", b"z"), (b"1", b"22", b"333", b""), (b"a", b"b", b"c", b"d"), (b"", b"zz")))
    assert decode_video_file(encode_video_file(file)) == file


@pytest.mark.parametrize("bad, message", [
    (dict(frame_types=("P",), sections=((b"", b"", b"", b""),)), "first frame must be an I-frame"),
    (dict(frame_types=("I",), sections=((b"y",),)), "has 2 sections"),
    (dict(frame_types=("I", "B"), sections=((b"", b""), (b"", b""))), "type must be 'I' or 'P'"),
])
def test_container_refuses_to_write_an_inconsistent_clip(bad, message):
    with pytest.raises(ValueError, match=message):
        encode_video_file(RDCVFile(header=header(), **bad))


def test_every_corruption_is_a_format_error(clip_bytes):
    for i in range(0, len(clip_bytes), 7):
        flipped = bytearray(clip_bytes)
        flipped[i] ^= 0x10
        with pytest.raises(RDCFormatError):
            decode_video_file(bytes(flipped))
    for n in (0, 3, 20, len(clip_bytes) - 1):
        with pytest.raises(RDCFormatError):
            decode_video_file(clip_bytes[:n])


def test_an_image_file_is_named_as_such(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(32, 32))
    with pytest.raises(RDCFormatError, match="an .rdc image file"):
        decode_video_file(data)


# --- the inter codec -------------------------------------------------------------------------------------------


def test_inter_codec_reloads_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = RDCInterCodec(N=8, M=8).eval()
    x, x_ref = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    coded = model.compress(x, x_ref)
    model.save_pretrained(tmp_path)
    loaded = RDCInterCodec.from_pretrained(tmp_path)
    assert loaded.fingerprint() == model.fingerprint()
    expected = model.decompress(coded["strings"], coded["shape"], x_ref)["x_hat"]
    assert torch.equal(loaded.decompress(coded["strings"], coded["shape"], x_ref)["x_hat"], expected)


def test_the_inter_codec_codes_the_latents_of_padding_alone_as_their_predicted_mean():
    """A 40 × 90 frame padded to 64 × 128: latent rows 3 and columns 7 draw padding only (8 px beyond the frame);
    told the frame's size, the bundled inter codec codes them as symbol 0 in the motion and the residual."""
    model = RDCInterCodec.from_pretrained(BUNDLED_DIR / DEFAULT_MODEL / "inter_codec")
    with Image.open(EXAMPLE_IMAGE) as image:
        frames = [to_tensor(image.crop((300 + d, 150, 390 + d, 190)))[0] for d in (0, 3)]
    x_ref, x = (pad_to_multiple(frame, model.alignment) for frame in frames)
    coded = model.compress(x, x_ref, image_size=(40, 90))
    for part, strings in ((model.motion, coded["strings"][:2]), (model.residual, coded["strings"][2:])):
        latent = hyperprior_decompress(part, strings, coded["shape"])
        _, means = hyperprior_params(part, strings[1], coded["shape"])
        assert torch.allclose(latent[..., 3:, :], means[..., 3:, :]) and torch.allclose(latent[..., 7:], means[..., 7:])
    assert not torch.allclose(latent[..., :3, :7], means[..., :3, :7])  # the frame's own residual, coded as it is
    assert model.decompress(coded["strings"], coded["shape"], x_ref)["x_hat"].shape == x.shape


def test_untrained_inter_codec_starts_from_copying_the_reference():
    """Zero-initialised motion: the prediction is the (nearly sharp) reference, so training starts from a copy."""
    model = RDCInterCodec(N=8, M=8).eval()
    x_ref = torch.rand(1, 3, 64, 64)
    motion = model.motion.g_s(torch.randn(1, 8, 4, 4))
    assert torch.equal(motion[:, :2], torch.zeros_like(motion[:, :2]))
    prediction = model.forward_prediction(x_ref, motion)
    assert (prediction - x_ref).abs().mean() < (x_ref - x_ref.mean()).abs().mean() / 2


# --- the pipeline ----------------------------------------------------------------------------------------------


def test_clip_round_trip_sizes_types_and_bits(video_pipe, clip_bytes):
    out = video_pipe.decompress(clip_bytes, refine=False)
    assert out.frame_types == ["I", "P", "P", "I", "P"]
    assert len(out.frames) == 5 and all(f.size == (80, 48) for f in out.frames)
    assert out.fps == 50
    assert out.bpp == pytest.approx(8 * len(clip_bytes) / (80 * 48 * 5))
    assert sum(out.frame_bpp) * 80 * 48 / 8 < len(clip_bytes)  # sections only: the header is on top


def test_decoding_is_deterministic_and_refinement_changes_the_frames(video_pipe, clip_bytes):
    fast = video_pipe.decompress(clip_bytes, refine=False, output_type="np").frames
    first = video_pipe.decompress(clip_bytes, output_type="np").frames
    again = video_pipe.decompress(clip_bytes, output_type="np").frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, fast)
    independent = video_pipe.decompress(clip_bytes, temporal_noise="independent", output_type="np").frames
    assert np.array_equal(independent[0], first[0])  # same seed, same first noise
    assert not np.array_equal(independent[1:], first[1:])


def test_a_callback_sees_every_step_of_every_frame_and_can_replace_the_residual(video_pipe, clip_bytes):
    """The video pipeline runs the image pipeline's refinement loop, callback included."""
    calls = []

    def zero_residual_at_the_end(pipe, i, t, tensors):
        calls.append(i)
        assert pipe is video_pipe and tensors["residual"].shape == (1, 3, 64, 128)  # the padded frame
        return {"residual": torch.zeros_like(tensors["residual"])} if i == 1 else tensors

    zeroed = video_pipe.decompress(clip_bytes, num_inference_steps=2, output_type="np",
                                   callback_on_step_end=zero_residual_at_the_end).frames
    assert calls == [0, 1] * 5
    np.testing.assert_array_equal(zeroed, video_pipe.decompress(clip_bytes, refine=False, output_type="np").frames)


def test_clips_stream_in_and_out_one_frame_at_a_time(video_pipe, clip_bytes):
    """compress takes any iterable (read once, in order); decode_frames yields what decompress returns."""
    read = []

    def frames():
        for frame in moving_clip():
            read.append(frame)
            yield frame

    assert video_pipe.compress(frames(), fps=Fraction(50), gop_size=3, seed=7) == clip_bytes
    assert len(read) == 5
    whole = video_pipe.decompress(clip_bytes, output_type="np").frames
    stream = video_pipe.decode_frames(clip_bytes)
    first = next(stream)
    assert isinstance(first, Image.Image) and first.size == (80, 48)
    streamed = [np.asarray(first)] + [np.asarray(f) for f in stream]
    assert len(streamed) == 5
    for a, b in zip(streamed, whole, strict=True):
        np.testing.assert_array_equal(a, np.round(b * 255).astype(np.uint8))
    with pytest.raises(RDCFormatError):  # a bad file is refused when asked for the iterator, not later
        video_pipe.decode_frames(clip_bytes[:-1])
    with pytest.raises(UnsupportedVideoError, match="at least one frame"):
        video_pipe.compress(iter([]))


def test_fast_decode_matches_the_encoders_reconstruction(video_pipe):
    """The encoder predicts each P-frame from the frame the decoder will have: decoding twice agrees."""
    frames = moving_clip(4)
    data = video_pipe.compress(frames, gop_size=4)
    decoded = video_pipe.decompress(data, refine=False, output_type="pt").frames
    assert decoded.shape == (4, 3, 48, 80)
    redecoded = video_pipe.decompress(data, refine=False, output_type="pt").frames
    assert torch.equal(decoded, redecoded)


def test_shared_noise_keeps_a_still_clip_still(video_pipe):
    """Identical frames coded as I-frames: shared noise refines them identically, independent noise does not."""
    data = video_pipe.compress([random_image(48, 80)] * 3, gop_size=1)
    shared = video_pipe.decompress(data, output_type="np").frames
    assert np.array_equal(shared[0], shared[1]) and np.array_equal(shared[1], shared[2])
    independent = video_pipe.decompress(data, temporal_noise="independent", output_type="np").frames
    assert not np.array_equal(independent[0], independent[1])
    with pytest.raises(ValueError, match="temporal_noise must be one of"):
        video_pipe.decompress(data, temporal_noise="warped")


def test_other_models_refuse_the_clip(clip_bytes):
    other = build_tiny_video_pipeline(seed=1)
    with pytest.raises(RDCModelMismatchError, match="clip was written by model"):
        other.decompress(clip_bytes)


def test_clips_are_coded_at_the_quality_the_inter_codec_was_trained_for(video_pipe):
    """The P-frame codec has a single rate: the I-frames use the image codec at its ``quality``, and no other."""
    assert video_pipe.quality == video_pipe.inter_codec.config.quality == 50
    frames = moving_clip(3)

    data = video_pipe.compress(frames, gop_size=2)

    assert video_pipe.compress(frames, gop_size=2, quality=50) == data
    assert video_pipe.compress(frames, gop_size=2, quality=50.001) == data  # rounded to hundredths, like images
    for quality in (10, 49.99, 100):
        with pytest.raises(ValueError, match="quality 50 only"):
            video_pipe.compress(frames, quality=quality)
    with pytest.raises(ValueError, match="quality 50 only"):
        video_pipe(frames, quality=80)
    with pytest.raises(ValueError):
        video_pipe.compress(frames, quality=150)


def test_a_video_model_trained_at_another_quality_codes_its_i_frames_there():
    image = build_tiny_pipeline()
    torch.manual_seed(0)
    pipe = RDCVideoPipeline(codec=image.codec, inter_codec=RDCInterCodec(N=8, M=8, quality=20), unet=image.unet,
                            scheduler=image.scheduler, default_num_inference_steps=1)
    pipe.set_progress_bar_config(disable=True)
    frames = moving_clip(3)

    file = decode_video_file(pipe.compress(frames, gop_size=2))

    x = to_tensor(frames[0])[0]
    coded = pipe.codec.compress(pad_to_multiple(x, pipe.codec.alignment), 20, image_size=x.shape[-2:])
    assert list(file.sections[0]) == [s[0] for s in coded["strings"]]
    assert pipe.image_pipeline().config.default_quality == 20
    out = pipe.decompress(pipe.compress(frames, gop_size=2, quality=20), refine=False)
    assert out.frame_types == ["I", "P", "I"]
    with pytest.raises(ValueError, match="quality 20 only"):
        pipe.compress(frames, quality=50)


def test_compress_refuses_steps_the_scheduler_cannot_take(video_pipe):
    with pytest.raises(ValueError, match=r"must be in 0\.\.1000 \(the scheduler's num_train_timesteps\), got 2000"):
        video_pipe.compress(moving_clip(2), num_inference_steps=2000)


def test_frames_of_different_sizes_are_refused(video_pipe):
    with pytest.raises(UnsupportedImageError, match="frame 1 is 64x48"):
        video_pipe.compress([random_image(48, 80), random_image(48, 64)])


def test_from_pretrained_finds_the_inter_codec_beside_an_image_model(tmp_path, video_pipe):
    image_dir = tmp_path / "tiny-rdc"
    video_pipe.image_pipeline().save_pretrained(image_dir)
    with pytest.raises(ValueError, match="image-only model"):
        RDCVideoPipeline.from_pretrained(image_dir)
    video_pipe.inter_codec.save_pretrained(image_dir / "inter_codec")
    loaded = RDCVideoPipeline.from_pretrained(image_dir)
    assert loaded.inter_codec.fingerprint() == video_pipe.inter_codec.fingerprint()
    data = video_pipe.compress(moving_clip(3), gop_size=2)
    np.testing.assert_array_equal(loaded.decompress(data, output_type="np").frames,
                                  video_pipe.decompress(data, output_type="np").frames)

    saved = tmp_path / "tiny-video"
    loaded.save_pretrained(saved)
    reloaded = RDCVideoPipeline.from_pretrained(saved)
    assert reloaded.inter_codec.fingerprint() == video_pipe.inter_codec.fingerprint()


# --- the command line ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_video_dir(video_pipe, tmp_path_factory) -> Path:
    """An image model folder with its inter codec in inter_codec/, the layout of the bundled models."""
    path = tmp_path_factory.mktemp("models") / "tiny-rdc"
    video_pipe.image_pipeline().save_pretrained(path)
    video_pipe.inter_codec.save_pretrained(path / "inter_codec")
    return path


@pytest.fixture
def frame_folder(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(moving_clip(5)):
        frame.save(folder / f"f{i + 1:03d}.png")
    return folder


def test_compress_video_then_decompress_video(rdc, frame_folder, tiny_video_dir, tmp_path):
    clip = tmp_path / "clip.rdcv"
    run = rdc("compress-video", frame_folder, "-o", clip, "--model", tiny_video_dir, "--gop", "4", "--fps", "50")
    assert run.code == 0, run.err
    assert "5 frames of 80x48 at 50 fps" in run.out

    run = rdc("info", clip)
    assert run.code == 0, run.err
    assert "IPPPI" in run.out and "GOP 4" in run.out and "tiny-rdc" in run.out

    run = rdc("decompress-video", clip, "-o", tmp_path / "clip.mp4", "--frames-dir", tmp_path / "out",
              "--model", tiny_video_dir)
    assert run.code == 0, run.err
    assert "refined" in run.out and "shared noise" in run.out
    decoded = read_video(tmp_path / "clip.mp4")
    assert len(decoded.frames) == 5 and decoded.frames[0].size == (80, 48) and decoded.fps == 50
    pngs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in pngs] == [f"f{i:03d}.png" for i in range(1, 6)]
    expected = RDCVideoPipeline.from_pretrained(tiny_video_dir).decompress(clip.read_bytes(), output_type="np")
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[2])), np.round(expected.frames[2] * 255).astype(np.uint8))

    run = rdc("decompress-video", clip, "-o", tmp_path / "clip.mp4", "--model", tiny_video_dir, "--fast")
    assert run.code == 2 and "already exists" in run.err


def test_decompress_video_refuses_bad_files_before_loading_a_model(rdc, tmp_path, tiny_pipeline):
    image_file = tmp_path / "image.rdc"
    image_file.write_bytes(tiny_pipeline.compress(random_image(32, 32)))
    run = rdc("decompress-video", image_file, "-o", tmp_path / "x.mp4", "--model", tmp_path / "no-such-model")
    assert run.code == 1 and "image file" in run.err and "Traceback" not in run.err
    garbage = tmp_path / "garbage.rdcv"
    garbage.write_bytes(b"\x89RDV" + bytes(100))
    run = rdc("decompress-video", garbage, "-o", tmp_path / "x.mp4", "--model", tmp_path / "no-such-model")
    assert run.code == 1 and ("checksum" in run.err or "version" in run.err)
    assert not (tmp_path / "x.mp4").exists()


def test_odd_sized_clips_fail_before_decoding(rdc, video_pipe, tiny_video_dir, tmp_path):
    clip = tmp_path / "odd.rdcv"
    clip.write_bytes(video_pipe.compress([random_image(33, 40)] * 2))
    run = rdc("decompress-video", clip, "-o", tmp_path / "odd.mp4", "--model", tiny_video_dir)
    assert run.code == 1 and "even width and height" in run.err


def test_compress_video_refuses_an_image_only_model(rdc, frame_folder, tiny_model_dir, tmp_path):
    run = rdc("compress-video", frame_folder, "-o", tmp_path / "clip.rdcv", "--model", tiny_model_dir)
    assert run.code == 2 and "image-only model" in run.err
    assert not (tmp_path / "clip.rdcv").exists()


def test_compress_and_decode_show_one_bar_step_per_frame(video_pipe):
    """Long clips are not silent: a tqdm bar counts frames (the caller's bar settings apply)."""
    try:
        shown = shown_progress(video_pipe)
        data = video_pipe.compress(moving_clip(4), gop_size=2)
        assert "4/4" in shown.getvalue()
        shown = shown_progress(video_pipe)
        frames = video_pipe.decode_frames(data)
        next(frames), next(frames)  # tqdm counts a frame done when the next one is asked for
        assert "1/4" in shown.getvalue() and "2/4" not in shown.getvalue()  # it advances as frames are taken
        list(frames)
        assert "4/4" in shown.getvalue()
    finally:
        video_pipe.set_progress_bar_config(disable=True)
