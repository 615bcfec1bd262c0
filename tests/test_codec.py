"""RDCCodec: shapes, real rANS round trips at any quality, entropy tables that look after themselves, the rate
gains, and save/load."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from rdc_diffusers import IncompatibleModelError, RDCCodec
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, DEFAULT_MODEL
from rdc_diffusers.media.image_io import pad_to_multiple
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.models.codec import REFERENCE_LMBDA, check_quality
from rdc_diffusers.models.entropy_coded import hyperprior_params
from rdc_diffusers.training import warm_start

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "kodim23.png"


def tiny_codec(seed: int = 0) -> RDCCodec:
    torch.manual_seed(seed)
    return RDCCodec(N=16, M=24).eval()


def images(height: int = 64, width: int = 128, seed: int = 0) -> torch.Tensor:
    """A [1, 3, H, W] batch in [0, 1] (sizes are multiples of RDCCodec.alignment)."""
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_forward_returns_reconstruction_latent_and_likelihoods():
    codec = tiny_codec()
    x = images(64, 128)

    out = codec(x, quality=50)

    assert out["x_init"].shape == (1, 3, 64, 128)
    assert out["y_hat"].shape == (1, 24, 4, 8)  # M channels at 1/16
    assert out["likelihoods"]["y"].shape == (1, 24, 4, 8)
    assert out["likelihoods"]["z"].shape == (1, 16, 1, 2)  # N channels at 1/64
    for likelihoods in out["likelihoods"].values():
        assert torch.all((likelihoods > 0) & (likelihoods <= 1))
    # ŷ is rounded around the predicted means (straight-through), so gradients still reach g_a.
    codec.train()
    x.requires_grad_(True)
    codec(x, quality=50)["x_init"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_forward_takes_one_quality_per_image():
    """Training draws a quality per crop: a batch at qualities (10, 90) is two images at their own rates."""
    codec = tiny_codec()
    x = torch.cat([images(seed=1), images(seed=2)])

    batch = codec(x, torch.tensor([10.0, 90.0]))

    for i, quality in enumerate((10.0, 90.0)):
        alone = codec(x[i : i + 1], quality)
        torch.testing.assert_close(batch["y_hat"][i : i + 1], alone["y_hat"], rtol=0, atol=1e-5)
        torch.testing.assert_close(batch["likelihoods"]["y"][i : i + 1], alone["likelihoods"]["y"])


def test_compress_decompress_round_trip_through_real_strings():
    codec = tiny_codec()  # no codec.update(): the tables are built on first use
    x = images(64, 128)

    encoded = codec.compress(x, quality=37.5)
    y_string, z_string = (strings[0] for strings in encoded["strings"])
    assert isinstance(y_string, bytes) and isinstance(z_string, bytes)
    assert tuple(encoded["shape"]) == (1, 2)

    # Decode from copies of the bytes only: nothing else is shared with the encoder.
    decoded = tiny_codec().decompress([[bytes(y_string)], [bytes(z_string)]], (1, 2), quality=37.5)

    assert decoded["x_init"].shape == (1, 3, 64, 128)
    assert decoded["x_init"].min() >= 0 and decoded["x_init"].max() <= 1
    # The decoded latent is exactly the encoder's quantised latent (eval forward computes the same ŷ).
    torch.testing.assert_close(decoded["y_hat"], codec(x, 37.5)["y_hat"], rtol=0, atol=1e-5)


def test_decoding_at_the_encoders_quality_is_bit_exact():
    """The decoder derives the gains from the quality alone: the same number gives the encoder's ŷ and x_init."""
    codec = tiny_codec()
    x = images(64, 128)
    for quality in (0, 12.34, 50, 100):
        coded = codec.compress(x, quality)

        decoded = tiny_codec().decompress(coded["strings"], coded["shape"], quality)

        expected = codec.latent(x, quality)  # what the encoder quantised, without coding it
        assert torch.equal(decoded["y_hat"], expected)
        assert torch.equal(decoded["x_init"], codec.g_s(expected).clamp(0, 1))


def test_qualities_are_rounded_to_hundredths():
    """Files store hundredths, so 37.123 must code exactly like the 37.12 the file will say."""
    codec = tiny_codec()
    x = images(64, 64)
    assert codec.compress(x, 37.123)["strings"] == codec.compress(x, 37.12)["strings"]
    assert torch.equal(codec.latent(x, 37.123), codec.latent(x, 37.12))


@pytest.fixture(scope="module")
def bundled_codec() -> RDCCodec:
    return RDCCodec.from_pretrained(BUNDLED_DIR / DEFAULT_MODEL / "codec")


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 128 x 128 crop of a real photo (the parrots of Kodak 23), [1, 3, H, W] in [0, 1]."""
    crop = Image.open(EXAMPLE).convert("RGB").crop((256, 128, 384, 256))
    return torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_the_bundled_codec_spends_more_bits_at_higher_qualities(bundled_codec, photo):
    sizes, scores = [], []
    for quality in (0, 50, 100):
        coded = bundled_codec.compress(photo, quality)
        sizes.append(sum(len(s[0]) for s in coded["strings"]))
        scores.append(psnr(bundled_codec.decompress(coded["strings"], coded["shape"], quality)["x_init"], photo))

    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] > 3 * sizes[0]  # one model spans a wide range of rates
    assert scores[0] < scores[1] < scores[2]


def test_under_bfloat16_autocast_the_rates_and_outputs_stay_float32(bundled_codec, photo):
    """Mixed-precision training (``train_rdc.py --mixed-precision bf16``): the transforms run in bfloat16, the
    entropy models and the rounding in float32, so the estimated rate and distortion match float32 closely."""
    x = photo[..., :256, :256]
    with torch.no_grad():
        full = bundled_codec(x, 50)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = bundled_codec(x, 50)

    def bits(out):
        return sum(-torch.log2(likelihoods).sum() for likelihoods in out["likelihoods"].values())

    for key in ("x_init", "y_hat"):
        assert mixed[key].dtype == torch.float32
    assert all(likelihoods.dtype == torch.float32 for likelihoods in mixed["likelihoods"].values())
    assert abs(bits(mixed) / bits(full) - 1) < 0.01
    # bfloat16 keeps ~3 digits through the synthesis: its MSE was 1.6 % above float32's on this crop with the phase-8
    # weights (35.6 dB), 2.9 % with session 17's (36.0 dB; the nearer the reconstruction, the more its rounding shows).
    assert abs(torch.mean((mixed["x_init"] - x) ** 2) / torch.mean((full["x_init"] - x) ** 2) - 1) < 0.05


def test_the_bundled_codec_decodes_bit_exactly_at_the_coded_quality(bundled_codec, photo):
    coded = bundled_codec.compress(photo, 63.21)

    decoded = bundled_codec.decompress(coded["strings"], coded["shape"], 63.21)

    assert torch.equal(decoded["y_hat"], bundled_codec.latent(photo, 63.21))


def test_the_latents_of_padding_alone_are_coded_as_their_predicted_mean(bundled_codec):
    """A 130 × 150 crop padded to 192 × 192: latent rows 9-11 and columns 10-11 draw padding only (at least
    PADDING_MARGIN pixels beyond the image). Told the image's size, the encoder codes them as the mean the hyperprior
    predicts (symbol 0): far fewer bits, and the image's own pixels barely change (measured on 8 BSDS photos of
    481 × 321: -7.9 % bits at equal PSNR, benchmarks/results/padding)."""
    with Image.open(EXAMPLE) as image:
        crop = image.convert("RGB").crop((200, 100, 350, 230))
    x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    padded = pad_to_multiple(x, bundled_codec.alignment)
    for quality in (50, 80):
        plain = bundled_codec.compress(padded, quality)
        settled = bundled_codec.compress(padded, quality, image_size=(130, 150))
        assert settled["shape"] == plain["shape"]  # the same file layout: any decoder reads it
        sizes = [sum(len(s[0]) for s in coded["strings"]) for coded in (plain, settled)]
        assert sizes[1] < 0.85 * sizes[0], sizes  # measured: -27 % at both qualities
        decoded = [bundled_codec.decompress(c["strings"], c["shape"], quality) for c in (plain, settled)]
        scores = [psnr(d["x_init"][..., :130, :150], x) for d in decoded]
        assert abs(scores[1] - scores[0]) < 0.1, scores  # measured: -0.05 dB at both
        _, means = hyperprior_params(bundled_codec, settled["strings"][1], settled["shape"])
        y_hat = decoded[1]["y_hat"]
        assert torch.allclose(y_hat[..., 9:, :], means[..., 9:, :])
        assert torch.allclose(y_hat[..., 10:], means[..., 10:])
        assert not torch.allclose(y_hat[..., :9, :10], means[..., :9, :10])


def test_an_image_without_padding_is_coded_the_same_when_its_size_is_given(bundled_codec, photo):
    assert bundled_codec.compress(photo, 40, image_size=(128, 128)) == bundled_codec.compress(photo, 40)


@pytest.mark.parametrize("quality, rounded", [(0, 0.0), (100, 100.0), (37.123, 37.12), (49.999, 50.0),
                                              (np.float64(12.5), 12.5)])
def test_check_quality_rounds_to_hundredths(quality, rounded):
    assert check_quality(quality) == rounded


@pytest.mark.parametrize("quality", [-1, -0.01, 100.01, 1e9, math.nan, math.inf, -math.inf])
def test_check_quality_refuses_numbers_outside_0_to_100(quality):
    with pytest.raises(ValueError, match=r"quality must be in \[0, 100\]"):
        check_quality(quality)


@pytest.mark.parametrize("quality", ["50", None, True, torch.tensor(50.0), [50]])
def test_check_quality_refuses_what_is_not_a_number(quality):
    with pytest.raises(TypeError, match="quality must be a number"):
        check_quality(quality)


def test_compress_and_decompress_check_the_quality():
    codec = tiny_codec()
    coded = codec.compress(images(64, 64), 50)
    with pytest.raises(ValueError):
        codec.compress(images(64, 64), 101)
    with pytest.raises(ValueError):
        codec.decompress(coded["strings"], coded["shape"], -1)
    with pytest.raises(TypeError):
        codec.latent(images(64, 64), "50")


# --- the rate gains -------------------------------------------------------------------------------------------------


def test_gains_are_log_linear_between_the_anchor_qualities():
    codec = tiny_codec()  # 6 anchors: qualities 0, 20, 40, 60, 80, 100
    with torch.no_grad():  # learned gains are anything: give each anchor and channel its own
        codec.log_gain.copy_(torch.randn_like(codec.log_gain))
        codec.log_inverse_gain.copy_(torch.randn_like(codec.log_inverse_gain))
    log_gain, log_inverse_gain = codec.log_gain.detach(), codec.log_inverse_gain.detach()

    for level, quality in enumerate((0, 20, 40, 60, 80, 100)):  # at an anchor: exactly its learned gain
        gain, inverse_gain = codec.gains(quality)
        assert gain.shape == (1, 24, 1, 1)
        assert torch.equal(gain.flatten(), log_gain[level].exp())
        assert torch.equal(inverse_gain.flatten(), log_inverse_gain[level].exp())

    # In between: the logs are interpolated linearly (a geometric, not an arithmetic, mean of the gains).
    for quality, low, weight in ((10, 0, 0.5), (25, 1, 0.25), (95, 4, 0.75)):
        gain, inverse_gain = codec.gains(quality)
        expected = (1 - weight) * log_gain[low] + weight * log_gain[low + 1]
        torch.testing.assert_close(gain.flatten().log(), expected)
        expected = (1 - weight) * log_inverse_gain[low] + weight * log_inverse_gain[low + 1]
        torch.testing.assert_close(inverse_gain.flatten().log(), expected)

    # One quality per image: one row of gains per image.
    gain, _ = codec.gains(torch.tensor([0.0, 10.0, 100.0]))
    assert gain.shape == (3, 24, 1, 1)
    torch.testing.assert_close(gain[1], codec.gains(10)[0][0])


def test_a_new_codec_starts_with_gains_from_its_lambda():
    """Initial gains follow high-rate theory, g = √(λ(q) / λ_ref), and g' = 1/g: before any training,
    higher qualities quantise more finely."""
    codec = RDCCodec(N=16, M=24, lmbda_min=0.001, lmbda_max=0.05, gain_levels=3)
    qualities = torch.tensor([0.0, 30.0, 50.0, 100.0])

    gain, inverse_gain = codec.gains(qualities)

    torch.testing.assert_close(codec.lmbda(torch.tensor([0.0, 100.0])), torch.tensor([0.001, 0.05]))
    torch.testing.assert_close(gain[:, 0, 0, 0] ** 2 * REFERENCE_LMBDA, codec.lmbda(qualities))
    torch.testing.assert_close(gain * inverse_gain, torch.ones_like(gain))
    assert torch.all(gain[1:] > gain[:-1])


def test_gains_train_with_the_rest_of_the_model():
    codec = tiny_codec().train()
    x = images(64, 64)
    out = codec(x, torch.tensor([30.0]))
    rate = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    (rate + 0.01 * 255**2 * torch.mean((out["x_init"] - x) ** 2)).backward()
    # Quality 30 lies between the anchors 20 and 40: those two rows get gradients, the others none.
    used = codec.log_gain.grad.abs().sum(1) > 0
    assert used.tolist() == [False, True, True, False, False, False]


def test_a_codec_saved_without_gains_warm_starts_with_initialised_gains(tmp_path):
    """A single-rate codec (saved before the gains existed) warm-starts: its transforms, and fresh gains."""
    old = tiny_codec()
    old.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if not k.startswith("log_")}, weights, metadata={"format": "pt"})

    codec = warm_start(RDCCodec, tmp_path)

    assert codec.training  # ready to train
    fresh = RDCCodec(N=16, M=24)
    for name in ("log_gain", "log_inverse_gain"):
        assert torch.isfinite(getattr(codec, name)).all()
        assert torch.equal(getattr(codec, name), getattr(fresh, name))
    loaded = codec.state_dict()
    for name, tensor in old.state_dict().items():
        if not name.startswith("log_"):
            assert torch.equal(loaded[name], tensor), name


def test_from_pretrained_refuses_a_folder_without_some_weights(tmp_path):
    """diffusers only warns about missing weights and keeps them random: a codec that would decode garbage."""
    tiny_codec().save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("log_")}, weights,
              metadata={"format": "pt"})

    with pytest.raises(IncompatibleModelError, match="log_gain.*older rdc-diffusers.*--init"):
        RDCCodec.from_pretrained(tmp_path)
    assert warm_start(RDCCodec, tmp_path).training  # the way on


def test_warm_start_refuses_weights_the_model_does_not_have(tmp_path):
    tiny_codec().save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(load_file(weights) | {"context_prediction.weight": torch.zeros(2)}, weights, metadata={"format": "pt"})

    with pytest.raises(ValueError, match="context_prediction.weight"):
        warm_start(RDCCodec, tmp_path)


def test_tables_are_rebuilt_after_training_changes_the_weights():
    codec = tiny_codec()
    x = images(64, 64)
    before = codec.compress(x, 50)["strings"]
    fingerprint_before = codec.fingerprint()

    # One training step on the rate changes the entropy bottleneck's density model.
    codec.train()
    optimizer = torch.optim.SGD(codec.parameters(), lr=0.5)
    out = codec(x, 50)
    rate = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    (rate + codec.aux_loss()).backward()
    optimizer.step()
    codec.eval()

    after = codec.compress(x, 50)  # no update() by the user
    reference = copy.deepcopy(codec)
    reference.update(force=True)  # what a careful compressai user would do by hand
    assert after["strings"] == reference.compress(x, 50)["strings"]
    assert after["strings"] != before
    assert codec.fingerprint() != fingerprint_before
    decoded = codec.decompress(after["strings"], after["shape"], 50)
    torch.testing.assert_close(decoded["y_hat"], codec(x, 50)["y_hat"], rtol=0, atol=1e-5)


def test_files_written_before_save_decode_bit_exactly_after_load(tmp_path):
    codec = tiny_codec()
    encoded = {q: codec.compress(images(128, 64), q) for q in (0, 41.07, 100)}
    expected = {q: codec.decompress(e["strings"], e["shape"], q) for q, e in encoded.items()}

    codec.save_pretrained(tmp_path / "codec")
    loaded = RDCCodec.from_pretrained(tmp_path / "codec")

    assert loaded.config.gain_levels == codec.config.gain_levels
    assert torch.equal(loaded.log_gain, codec.log_gain)
    for quality, e in encoded.items():
        decoded = loaded.decompress(e["strings"], e["shape"], quality)
        assert torch.equal(decoded["y_hat"], expected[quality]["y_hat"])
        assert torch.equal(decoded["x_init"], expected[quality]["x_init"])
    assert loaded.fingerprint() == codec.fingerprint()


def test_saved_folder_holds_safetensors_only(tmp_path):
    tiny_codec().save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors"]


@pytest.mark.parametrize("dtype_kwarg", ["torch_dtype", "dtype"])
def test_from_pretrained_keeps_float32_whatever_dtype_is_asked(tmp_path, dtype_kwarg):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path)

    loaded = RDCCodec.from_pretrained(tmp_path, **{dtype_kwarg: torch.float16})

    assert loaded.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in loaded.parameters())
    assert loaded.fingerprint() == codec.fingerprint()


def test_to_moves_devices_but_never_changes_dtype():
    codec = tiny_codec()
    fingerprint = codec.fingerprint()

    assert codec.to(torch.float16) is codec
    codec.to("cpu", torch.float16)
    codec.to(dtype=torch.bfloat16)

    assert codec.dtype == torch.float32
    assert codec.fingerprint() == fingerprint
    codec.compress(images(64, 64), 50)  # still works


def test_fingerprint_is_stable_and_sees_every_weight(tmp_path):
    codec = tiny_codec()
    fingerprint = codec.fingerprint()
    assert isinstance(fingerprint, bytes) and len(fingerprint) == 8
    assert codec.fingerprint() == fingerprint
    assert tiny_codec().fingerprint() == fingerprint  # same seed, same weights
    assert tiny_codec(seed=1).fingerprint() != fingerprint

    codec.save_pretrained(tmp_path)
    assert RDCCodec.from_pretrained(tmp_path).fingerprint() == fingerprint

    with torch.no_grad():  # the smallest possible change to one weight of the synthesis transform
        weight = codec.g_s[-1].weight
        weight[0, 0, 0, 0] = torch.nextafter(weight[0, 0, 0, 0], torch.tensor(float("inf")))
    assert codec.fingerprint() != fingerprint


def test_fingerprint_depends_on_the_config():
    torch.manual_seed(0)
    a = RDCCodec(N=16, M=24)
    torch.manual_seed(0)
    b = RDCCodec(N=16, M=32)
    assert a.fingerprint() != b.fingerprint()
    torch.manual_seed(0)
    c = RDCCodec(N=16, M=24, lmbda_max=0.04)  # other initial gains, and another λ for each quality
    assert a.fingerprint() != c.fingerprint()


def test_latent_is_the_y_hat_that_coding_gives():
    torch.manual_seed(0)
    codec = RDCCodec(N=16, M=24)  # training mode: the module's own forward would add noise
    x = torch.rand(1, 3, 64, 128)
    coded = codec.compress(x, 20)
    decoded = codec.decompress(coded["strings"], coded["shape"], 20)["y_hat"]
    assert torch.allclose(codec.latent(x, 20), decoded, atol=1e-5)
    assert torch.equal(codec.latent(x, 20), codec.latent(x, 20))


def test_the_transforms_run_channels_last_and_give_the_plain_layers_values(bundled_codec, photo):
    """g_a and g_s compute on NHWC memory (faster CPU convolutions) but hand back contiguous tensors, so the
    hyperprior, whose means and scales encoder and decoder must compute alike, sees what it always saw."""
    y = bundled_codec.g_a(photo)
    x_hat = bundled_codec.g_s(y)
    assert y.is_contiguous() and x_hat.is_contiguous()
    assert torch.allclose(y, torch.nn.Sequential(*bundled_codec.g_a)(photo), atol=1e-4)
    assert torch.allclose(x_hat, torch.nn.Sequential(*bundled_codec.g_s)(y), atol=1e-5)
    assert set(bundled_codec.state_dict()) >= {"g_a.0.weight", "g_s.0.weight"}  # nn.Sequential's keys
