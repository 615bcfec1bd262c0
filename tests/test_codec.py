"""RDCCodec: shapes, real rANS round trips, entropy tables that look after themselves, and save/load."""

from __future__ import annotations

import copy

import pytest
import torch

from rdc_diffusers import RDCCodec


def tiny_codec(seed: int = 0) -> RDCCodec:
    torch.manual_seed(seed)
    return RDCCodec(N=16, M=24).eval()


def images(height: int = 64, width: int = 128, seed: int = 0) -> torch.Tensor:
    """A [1, 3, H, W] batch in [0, 1] (sizes are multiples of RDCCodec.alignment)."""
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_forward_returns_reconstruction_latent_and_likelihoods():
    codec = tiny_codec()
    x = images(64, 128)

    out = codec(x)

    assert out["x_init"].shape == (1, 3, 64, 128)
    assert out["y_hat"].shape == (1, 24, 4, 8)  # M channels at 1/16
    assert out["likelihoods"]["y"].shape == (1, 24, 4, 8)
    assert out["likelihoods"]["z"].shape == (1, 16, 1, 2)  # N channels at 1/64
    for likelihoods in out["likelihoods"].values():
        assert torch.all((likelihoods > 0) & (likelihoods <= 1))
    # ŷ is rounded around the predicted means (straight-through), so gradients still reach g_a.
    codec.train()
    x.requires_grad_(True)
    codec(x)["x_init"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_compress_decompress_round_trip_through_real_strings():
    codec = tiny_codec()  # no codec.update(): the tables are built on first use
    x = images(64, 128)

    encoded = codec.compress(x)
    y_string, z_string = (strings[0] for strings in encoded["strings"])
    assert isinstance(y_string, bytes) and isinstance(z_string, bytes)
    assert tuple(encoded["shape"]) == (1, 2)

    # Decode from copies of the bytes only: nothing else is shared with the encoder.
    decoded = tiny_codec().decompress([[bytes(y_string)], [bytes(z_string)]], (1, 2))

    assert decoded["x_init"].shape == (1, 3, 64, 128)
    assert decoded["x_init"].min() >= 0 and decoded["x_init"].max() <= 1
    # The decoded latent is exactly the encoder's quantised latent (eval forward computes the same ŷ).
    torch.testing.assert_close(decoded["y_hat"], codec(x)["y_hat"], rtol=0, atol=1e-5)


def test_tables_are_rebuilt_after_training_changes_the_weights():
    codec = tiny_codec()
    x = images(64, 64)
    before = codec.compress(x)["strings"]
    fingerprint_before = codec.fingerprint()

    # One training step on the rate changes the entropy bottleneck's density model.
    codec.train()
    optimizer = torch.optim.SGD(codec.parameters(), lr=0.5)
    out = codec(x)
    rate = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    (rate + codec.aux_loss()).backward()
    optimizer.step()
    codec.eval()

    after = codec.compress(x)  # no update() by the user
    reference = copy.deepcopy(codec)
    reference.update(force=True)  # what a careful compressai user would do by hand
    assert after["strings"] == reference.compress(x)["strings"]
    assert after["strings"] != before
    assert codec.fingerprint() != fingerprint_before
    decoded = codec.decompress(after["strings"], after["shape"])
    torch.testing.assert_close(decoded["y_hat"], codec(x)["y_hat"], rtol=0, atol=1e-5)


def test_files_written_before_save_decode_bit_exactly_after_load(tmp_path):
    codec = tiny_codec()
    encoded = codec.compress(images(128, 64))
    expected = codec.decompress(encoded["strings"], encoded["shape"])

    codec.save_pretrained(tmp_path / "codec")
    loaded = RDCCodec.from_pretrained(tmp_path / "codec")
    decoded = loaded.decompress(encoded["strings"], encoded["shape"])

    assert torch.equal(decoded["y_hat"], expected["y_hat"])
    assert torch.equal(decoded["x_init"], expected["x_init"])
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
    codec.compress(images(64, 64))  # still works


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


def test_latent_is_the_y_hat_that_coding_gives():
    torch.manual_seed(0)
    codec = RDCCodec(N=16, M=24)  # training mode: the module's own forward would add noise
    x = torch.rand(1, 3, 64, 128)
    coded = codec.compress(x)
    decoded = codec.decompress(coded["strings"], coded["shape"])["y_hat"]
    assert torch.allclose(codec.latent(x), decoded, atol=1e-5)
    assert torch.equal(codec.latent(x), codec.latent(x))
