"""image_io: every kind of input the codec takes, what comes back out, and every refusal."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from conftest import wide_gamut_profile
from PIL import Image, ImageCms

from rdc_diffusers.errors import UnsupportedImageError
from rdc_diffusers.media.image_io import (
    crop_to,
    icc_profile,
    in_srgb,
    open_image,
    pad_to_multiple,
    to_output,
    to_tensor,
    transparent_share,
)

H, W = 33, 47  # odd on purpose: nothing may assume even or multiple-of-16 sizes
RNG = np.random.default_rng(0)


def random_rgb(h: int = H, w: int = W) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def assert_codec_tensor(x: torch.Tensor, h: int = H, w: int = W) -> None:
    assert x.shape == (1, 3, h, w) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


# ---- PIL inputs ---------------------------------------------------------------------------------------------------

def make_image(mode: str) -> Image.Image:
    """A 33x47 random image in ``mode``, built the way Pillow users usually get one."""
    rgb = Image.fromarray(random_rgb())
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    if mode in ("I;16", "I;16B", "I;16L"):
        image = Image.new(mode, (W, H))
        image.putdata(RNG.integers(0, 65536, size=H * W).tolist())
        return image
    if mode == "F":
        return Image.fromarray(RNG.random((H, W), dtype=np.float32), "F")
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX", "LAB", "HSV", "LA", "PA", "RGBA",
                                  "I;16", "I;16B", "I;16L", "I", "F"])
def test_every_supported_pil_mode_gives_a_codec_tensor(mode: str) -> None:
    image = make_image(mode)
    assert image.mode == mode
    x, original_mode = to_tensor(image)
    assert_codec_tensor(x)
    assert original_mode == mode
    (out,) = to_output(x, "pil", original_mode)
    assert out.size == (W, H)
    assert out.mode == ("L" if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F") else "RGB")


def test_rgb_round_trip_is_exact() -> None:
    pixels = random_rgb()
    x, mode = to_tensor(Image.fromarray(pixels))
    (out,) = to_output(x, "pil", mode)
    assert out.mode == "RGB" and out.size == (W, H)
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_grayscale_in_grayscale_out() -> None:
    pixels = RNG.integers(0, 256, size=(H, W), dtype=np.uint8)
    x, mode = to_tensor(Image.fromarray(pixels))
    assert mode == "L"
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # replicated to three channels
    (out,) = to_output(x, "pil", mode)
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_rgba_drops_alpha_and_keeps_colour_exactly() -> None:
    rgba = np.concatenate([random_rgb(), RNG.integers(0, 256, size=(H, W, 1), dtype=np.uint8)], axis=2)
    rgba[0, 0, 3] = 0  # colour under a fully transparent pixel is kept too
    x, mode = to_tensor(Image.fromarray(rgba, "RGBA"))
    assert mode == "RGBA"
    (out,) = to_output(x, "pil", mode)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), rgba[:, :, :3])


def test_the_transparent_share_counts_pixels_that_are_not_opaque() -> None:
    rgba = np.concatenate([random_rgb(), np.full((H, W, 1), 255, np.uint8)], axis=2)
    assert transparent_share(rgba) == 0 and transparent_share(Image.fromarray(rgba, "RGBA")) == 0
    rgba[:11, :, 3] = 128  # a third of the rows half transparent
    assert transparent_share(rgba) == transparent_share(Image.fromarray(rgba, "RGBA")) == pytest.approx(11 / H)
    assert transparent_share(rgba.astype(np.uint16) * 257) == pytest.approx(11 / H)  # opaque is 65535 there
    assert transparent_share(rgba.astype(np.float32) / 255) == pytest.approx(11 / H)
    assert transparent_share(Image.fromarray(rgba, "RGBA").convert("LA")) == pytest.approx(11 / H)
    palette = Image.new("P", (W, H), 0)
    palette.putpalette([255, 0, 0, 0, 128, 255])
    palette.paste(1, (0, 0, W, 3))
    palette.info["transparency"] = 1  # palette entry 1 is clear
    assert transparent_share(palette) == pytest.approx(3 / H)
    assert transparent_share(random_rgb()) == transparent_share(Image.fromarray(random_rgb())) == 0
    assert transparent_share(torch.rand(3, H, W)) == 0  # tensors have colour only


def test_palette_with_transparency_keeps_palette_colours() -> None:
    image = Image.new("P", (W, H), 1)
    image.putpalette([255, 0, 0, 0, 128, 255])
    image.info["transparency"] = 1
    x, mode = to_tensor(image)
    assert mode == "P"
    np.testing.assert_array_equal(np.asarray(to_output(x, "pil", mode)[0])[0, 0], [0, 128, 255])


def test_bilevel_comes_back_as_black_and_white_l() -> None:
    image = Image.new("1", (W, H), 0)
    image.putpixel((3, 2), 1)
    (out,) = to_output(to_tensor(image)[0], "pil", "1")
    assert out.mode == "L" and out.getpixel((3, 2)) == 255 and out.getpixel((0, 0)) == 0


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_grayscale_scales_by_the_full_range(mode: str) -> None:
    image = Image.new(mode, (3, 1))
    for column, value in enumerate([0, 32896, 65535]):
        image.putpixel((column, 0), value)
    x, original_mode = to_tensor(image)
    (out,) = to_output(x, "pil", original_mode)
    assert out.mode == "L"
    assert list(np.asarray(out)[0]) == [0, 128, 255]


def test_32_bit_integer_grayscale_is_clipped_to_16_bits() -> None:
    image = Image.fromarray(np.array([[-5, 0, 32896, 65535, 1_000_000]], dtype=np.int32), "I")
    (out,) = to_output(to_tensor(image)[0], "pil", "I")
    assert list(np.asarray(out)[0]) == [0, 0, 128, 255, 255]


def test_float_image_within_unit_range_is_taken_as_is() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    x, _ = to_tensor(image)
    assert x[0, :, 0].tolist() == [[0.0, 0.5, 1.0]] * 3


# ---- numpy inputs -------------------------------------------------------------------------------------------------

def test_numpy_uint8_rgb() -> None:
    pixels = random_rgb()
    x, mode = to_tensor(pixels)
    assert_codec_tensor(x)
    assert mode == "RGB"
    np.testing.assert_array_equal(np.asarray(to_output(x, "pil", mode)[0]), pixels)


def test_numpy_uint16_scales_by_65535() -> None:
    x, mode = to_tensor(np.full((H, W, 3), 65535, dtype=np.uint16))
    assert mode == "RGB" and torch.all(x == 1.0)


def test_numpy_float_in_unit_range() -> None:
    arr = RNG.random((H, W, 3))  # float64 is fine; it becomes float32
    x, mode = to_tensor(arr)
    assert_codec_tensor(x)
    assert mode == "RGB"
    torch.testing.assert_close(x[0].permute(1, 2, 0), torch.from_numpy(arr).float())


@pytest.mark.parametrize("shape", [(H, W), (H, W, 1)])
def test_numpy_grayscale(shape: tuple[int, ...]) -> None:
    x, mode = to_tensor(np.full(shape, 255, dtype=np.uint8))
    assert_codec_tensor(x)
    assert mode == "L" and torch.all(x == 1.0)


def test_numpy_bool_is_bilevel() -> None:
    arr = np.zeros((H, W), dtype=bool)
    arr[1, 2] = True
    x, mode = to_tensor(arr)
    assert mode == "1"
    assert x[0, :, 1, 2].tolist() == [1.0, 1.0, 1.0] and x.sum() == 3


def test_numpy_four_channels_drop_alpha() -> None:
    rgba = np.concatenate([random_rgb(), np.zeros((H, W, 1), dtype=np.uint8)], axis=2)
    x, mode = to_tensor(rgba)
    assert mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(to_output(x, "pil", mode)[0]), rgba[:, :, :3])


def test_numpy_views_and_big_endian_are_fine() -> None:
    pixels = random_rgb()
    x, _ = to_tensor(pixels[::-1, ::2])  # negative and non-unit strides
    np.testing.assert_array_equal(np.asarray(to_output(x, "pil", "RGB")[0]), pixels[::-1, ::2])
    x, _ = to_tensor(np.full((2, 2), 65535, dtype=">u2"))
    assert torch.all(x == 1.0)


# ---- torch inputs -------------------------------------------------------------------------------------------------

def test_torch_3d_and_4d_float() -> None:
    t = torch.rand(3, H, W)
    for given in (t, t.unsqueeze(0)):
        x, mode = to_tensor(given)
        assert mode == "RGB" and torch.equal(x, t.unsqueeze(0))
    x, _ = to_tensor(t)
    x[0, 0, 0, 0] = 5.0
    assert t[0, 0, 0] != 5.0  # the codec tensor never aliases the caller's


def test_torch_one_channel_is_grayscale() -> None:
    for given in (torch.rand(1, H, W), torch.rand(1, 1, H, W)):
        x, mode = to_tensor(given)
        assert_codec_tensor(x)
        assert mode == "L"


def test_torch_uint8() -> None:
    t = torch.from_numpy(random_rgb()).permute(2, 0, 1)
    x, mode = to_tensor(t)
    assert mode == "RGB" and torch.equal((x[0] * 255).round().to(torch.uint8), t)


def test_torch_half_precision_becomes_float32() -> None:
    x, _ = to_tensor(torch.rand(3, H, W, dtype=torch.bfloat16))
    assert x.dtype == torch.float32


# ---- refusals -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image, message", [
    (Image.new("RGBa", (W, H)), "mode 'RGBa'"),  # premultiplied alpha
    (Image.new("La", (W, H)), "mode 'La'"),
    (Image.new("RGB", (0, H)), "size"),
    (Image.fromarray(np.array([[0.0, 1.5]], dtype=np.float32), "F"), r"found \[0, 1.5\]"),
    (Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32), "F"), "NaN"),
    (np.zeros((H, W, 5), dtype=np.uint8), r"shape \(33, 47, 5\)"),
    (np.zeros((2, H, W, 3), dtype=np.uint8), "shape"),
    (np.zeros((H, W, 3), dtype=np.int64), "dtype int64"),
    (np.zeros((H, W, 3), dtype=np.uint32), "dtype uint32"),
    (np.full((H, W), -0.25), r"found \[-0.25, -0.25\]"),
    (np.array([[0.5, np.nan]]), "NaN"),
    (np.array([[0.5, np.inf]], dtype=np.float32), "infinite"),
    (np.zeros((0, W, 3), dtype=np.uint8), "size"),
    (np.zeros((0,), dtype=np.uint8), "shape"),
    (np.zeros((1, 65536), dtype=np.uint8), "65535"),
    (torch.rand(2, 3, H, W), "one image at a time"),
    (torch.rand(4, H, W), "shape"),
    (torch.rand(H, W, 3), "channels first"),
    (torch.full((3, H, W), 1.01), "within"),
    (torch.tensor([[[0.5, float("nan")]]]), "NaN"),
    (torch.zeros(3, H, W, dtype=torch.int64), "dtype torch.int64"),
    (torch.zeros(3, 0, W), "size"),
    ("photo.png", "str"),
    ([[0, 1], [1, 0]], "list"),
])
def test_refusals_are_unsupported_image_errors(image: object, message: str) -> None:
    with pytest.raises(UnsupportedImageError, match=message):
        to_tensor(image)


def test_unsupported_image_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        to_tensor(np.zeros((H, W, 2), dtype=np.uint8))


# ---- padding and cropping -----------------------------------------------------------------------------------------

def test_pad_replicates_the_last_row_and_column_and_crop_undoes_it() -> None:
    x = torch.rand(1, 3, H, W)
    padded = pad_to_multiple(x, 16)
    assert padded.shape == (1, 3, 48, 48)
    assert torch.equal(padded[..., H:, :W], x[..., -1:, :].expand(-1, -1, 48 - H, -1))
    assert torch.equal(padded[..., :H, W:], x[..., :, -1:].expand(-1, -1, -1, 48 - W))
    assert torch.all(padded[..., H:, W:] == x[..., -1, -1].view(1, 3, 1, 1))
    assert torch.equal(crop_to(padded, H, W), x)


def test_pad_is_a_no_op_on_multiples() -> None:
    x = torch.rand(1, 3, 32, 48)
    assert pad_to_multiple(x, 16) is x
    assert pad_to_multiple(torch.rand(1, 3, 1, 1), 64).shape == (1, 3, 64, 64)


def test_bad_pad_and_crop_arguments() -> None:
    with pytest.raises(ValueError):
        pad_to_multiple(torch.rand(1, 3, 4, 4), 0)
    with pytest.raises(ValueError):
        crop_to(torch.rand(1, 3, 4, 4), 5, 4)


# ---- outputs ------------------------------------------------------------------------------------------------------

def test_output_types_shapes_and_clamping() -> None:
    x = torch.rand(2, 3, H, W) * 1.4 - 0.2  # a decoder can overshoot [0, 1]
    pt = to_output(x, "pt", "RGB")
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 3, H, W) and pt.min() == 0 and pt.max() == 1
    arr = to_output(x, "np", "RGB")
    assert isinstance(arr, np.ndarray) and arr.shape == (2, H, W, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, pt.permute(0, 2, 3, 1).numpy())
    images = to_output(x, "pil", "RGB")
    assert isinstance(images, list) and len(images) == 2
    assert all(im.mode == "RGB" and im.size == (W, H) for im in images)
    gray = to_output(x, "pil", "I;16")
    assert all(im.mode == "L" and im.size == (W, H) for im in gray)


def test_unknown_output_type_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="'pil', 'np', 'pt'"):
        to_output(torch.rand(1, 3, 2, 2), "latent", "RGB")


# ---- opening files ------------------------------------------------------------------------------------------------

def test_open_image_reads_a_png(tmp_path) -> None:
    pixels = random_rgb()
    Image.fromarray(pixels).save(tmp_path / "ok.png")
    image = open_image(tmp_path / "ok.png")
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_open_image_applies_exif_orientation(tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(random_rgb()).save(tmp_path / "rotated.png", exif=exif)
    assert open_image(tmp_path / "rotated.png").size == (H, W)


def test_open_image_truncated_png(tmp_path) -> None:
    Image.fromarray(random_rgb()).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedImageError, match="cannot read image .*truncated.png"):
        open_image(tmp_path / "truncated.png")


def test_open_image_garbage(tmp_path) -> None:
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UnsupportedImageError, match="cannot read image"):
        open_image(tmp_path / "garbage.png")


def test_open_image_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.png")


def test_open_image_says_a_text_file_is_not_an_image(tmp_path) -> None:
    """Pillow's own message is the repr of a file object (``<_io.BufferedReader ...>``): name the file instead."""
    (tmp_path / "x.png").write_text("hello, not pixels")
    with pytest.raises(UnsupportedImageError) as caught:
        open_image(tmp_path / "x.png")
    message = str(caught.value)
    assert message.startswith(f"cannot read image {tmp_path / 'x.png'}: not an image file") and "PNG, JPEG" in message
    assert "BufferedReader" not in message and "\n" not in message


def frames(count: int, size: tuple[int, int] = (W, H)) -> list[Image.Image]:
    return [Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)) for i in range(count)]


@pytest.mark.parametrize("suffix", [".gif", ".tiff", ".webp"])
def test_a_multi_frame_image_warns_that_one_frame_is_coded(tmp_path, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    first, *rest = frames(3)
    first.save(path, save_all=True, append_images=rest)

    with pytest.warns(UserWarning, match=rf"clip\{suffix} has 3 frames; only frame 1 is coded .*rdc compress-video"):
        x, _ = to_tensor(open_image(path))
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), 0.0)  # the first frame's pixels
    with pytest.warns(UserWarning, match="has 3 frames"):  # a PIL image the caller opened warns too
        with Image.open(path) as image:
            to_tensor(image)


def test_a_single_frame_image_does_not_warn(tmp_path) -> None:
    frames(1)[0].save(tmp_path / "still.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_tensor(open_image(tmp_path / "still.gif"))


def test_only_a_profile_of_the_pixels_given_back_is_kept():
    """sRGB is what untagged means (no bits for it); a CMYK or Lab profile does not describe the RGB pixels coded
    (a CMYK photo is converted), nor an RGB one grayscale pixels; an unreadable one is no profile."""
    def tagged(mode: str, profile: bytes) -> Image.Image:
        image = Image.new(mode, (4, 4))
        image.info["icc_profile"] = profile
        return image

    wide = wide_gamut_profile()
    assert icc_profile(tagged("RGB", wide)) == wide and icc_profile(tagged("RGBA", wide)) == wide
    for name in ("sRGB", "LAB"):
        assert icc_profile(tagged("RGB", ImageCms.ImageCmsProfile(ImageCms.createProfile(name)).tobytes())) is None
    assert icc_profile(tagged("L", wide)) is None and icc_profile(tagged("RGB", b"not a profile" * 20)) is None
    assert icc_profile(Image.new("RGB", (4, 4))) is None and icc_profile(np.zeros((4, 4, 3))) is None


def test_in_srgb_converts_a_kept_profile_and_keeps_transparency():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), "RGBA")
    image.info["icc_profile"] = wide_gamut_profile()
    shown = in_srgb(image)
    expected = ImageCms.profileToProfile(image.convert("RGB"), ImageCms.ImageCmsProfile(
        io.BytesIO(image.info["icc_profile"])), ImageCms.createProfile("sRGB"))
    assert shown.mode == "RGBA" and icc_profile(shown) is None  # sRGB at most
    assert np.array_equal(np.asarray(shown)[..., :3], np.asarray(expected))
    assert not np.array_equal(np.asarray(shown)[..., :3], np.asarray(image)[..., :3])
    assert np.array_equal(np.asarray(shown)[..., 3], np.asarray(image)[..., 3])
    untagged = Image.new("RGB", (4, 4))
    assert in_srgb(untagged) is untagged
