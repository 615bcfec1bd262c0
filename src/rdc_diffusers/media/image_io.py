"""Turning whatever image a user hands in into the codec's tensor, and the decoded tensor back into images.

The codec works on float32 ``[1, 3, H, W]`` tensors in ``[0, 1]``. ``to_tensor`` accepts PIL images, numpy
arrays and torch tensors and refuses (with ``UnsupportedImageError``) anything it would have to guess about,
rather than silently coding something other than what the user meant:

* Alpha is **not stored**. For ``RGBA``, ``LA``, ``PA`` (and ``P`` images with a transparency entry, which
  go through ``RGBA``) the colour channels are coded exactly as they are and the alpha channel is dropped,
  so the decoded image is opaque. Colour under fully transparent pixels is kept, not composited on a
  background. The pipelines that code into colour-only files (``.rdc``, JPEG) say so with
  ``warn_if_transparent`` when some pixel is not opaque.
* Grayscale images are replicated to three channels; ``to_output`` turns them back into 8-bit ``L`` images.
* 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``) is scaled by the full range of the type, value / 65535.
  32-bit ``I`` images are clipped to ``[0, 65535]`` first (values outside the 16-bit range are lost), then
  scaled the same way. Precision beyond 8 bits reaches the encoder but the decoded output is 8-bit.
* ``F`` (32-bit float) images are taken as ``[0, 1]`` intensities; any value outside that range (or NaN/inf)
  is refused, because there is no range to rescale by that we could know.
* Premultiplied modes (``RGBa``, ``La``), ``I;16N`` and any other mode are refused, naming the mode.
* Multi-frame images (GIF, TIFF, WebP): only the current frame is used, with a ``UserWarning`` naming the frame
  count (a clip belongs in ``RDCVideoPipeline`` / ``rdc compress-video``).
"""

from __future__ import annotations

import io
import os
import struct
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UnsupportedImageError

MAX_SIDE = 65535
GRAYSCALE_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")
_CONVERT_TO_RGB = ("RGB", "L", "1", "CMYK", "YCbCr", "RGBX", "LAB", "HSV")
_ALPHA_MODES = ("LA", "PA", "RGBA")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L")
SUPPORTED_MODES = _CONVERT_TO_RGB + ("P",) + _ALPHA_MODES + _SIXTEEN_BIT + ("I", "F")
OUTPUT_TYPES = ("pil", "np", "pt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""File suffixes taken as images when a folder is read (training data, evaluation sets, video frames)."""
READ_FORMATS = "PNG, JPEG, WebP, TIFF, BMP, GIF"
"""The common formats ``open_image`` reads, for messages (it reads whatever Pillow reads)."""
# Pillow raises these for undecodable, truncated or hostile files (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, so broken files fail here with a clear error, not mid-encode.

    OS errors about the file itself (missing, no permission, a directory) propagate unchanged; anything
    Pillow cannot decode becomes ``UnsupportedImageError``. The EXIF orientation is applied, so the coded
    pixels are the image as viewers show it (the reconstruction carries no EXIF tag to rotate it later).
    """
    with open(path, "rb") as fh:
        try:
            image = Image.open(fh)
            getattr(image, "n_frames", 1)  # GIF counts its frames lazily: count while the file is open (to_tensor)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no second copy of a large photo
        except UnidentifiedImageError as exc:  # its message is the repr of our file object: say it plainly
            raise UnsupportedImageError(f"cannot read image {path}: not an image file, or not in a format Pillow "
                                        f"reads ({READ_FORMATS}, ...)") from exc
        except _DECODE_ERRORS as exc:
            raise UnsupportedImageError(f"cannot read image {path}: {exc}") from exc
    image.filename = os.fspath(path)  # as Image.open(path) would set it: to_tensor's warnings name the file
    return image


def to_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, str]:
    """PIL.Image / numpy / torch -> (float32 tensor [1, 3, H, W] in [0, 1], original PIL mode string).

    The mode is returned so ``to_output`` can hand grayscale back as grayscale. numpy and torch inputs get
    the mode PIL would give them: ``"L"`` for one channel, ``"1"`` for bool, ``"RGB"``, ``"RGBA"``.
    """
    if isinstance(image, Image.Image):
        x, mode = _from_pil(image), image.mode
    elif isinstance(image, np.ndarray):
        x, mode = _from_numpy(image)
    elif isinstance(image, torch.Tensor):
        x, mode = _from_torch(image)
    else:
        raise UnsupportedImageError(
            f"unsupported image type {type(image).__name__}: pass a PIL.Image.Image, numpy array or torch tensor"
            " (open files with rdc_diffusers.media.image_io.open_image first)")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(), mode


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right so H and W are multiples of `multiple` (replicate: costs fewer bits than zeros)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo ``pad_to_multiple``: keep the top-left ``height`` x ``width``."""
    if not (1 <= height <= x.shape[-2] and 1 <= width <= x.shape[-1]):
        raise ValueError(f"cannot crop a {x.shape[-2]}x{x.shape[-1]} tensor to {height}x{width}")
    return x[..., :height, :width]


def to_output(x: torch.Tensor, output_type: str, mode: str,
              icc_profile: bytes | None = None) -> list[Image.Image] | np.ndarray | torch.Tensor:
    """x: [B,3,H,W] in [0,1] (clamped here). output_type "pt" -> the clamped tensor; "np" -> float32 [B,H,W,3];
    "pil" -> list of PIL images: RGB, except that a grayscale original (modes "1","L","I;16","I;16B","I;16L","I","F")
    comes back as "L" (8-bit), tagged with ``icc_profile`` (the pixels' colour space) when given. Anything else ->
    ValueError naming the allowed values.

    Grayscale is the mean of the three decoded channels: each is an estimate of the same value.
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
    x = x.detach().clamp(0.0, 1.0)
    if output_type == "pt":
        return x
    if output_type == "np":
        return x.permute(0, 2, 3, 1).to("cpu", torch.float32).numpy()
    x = x.to("cpu", torch.float32)  # in place from here: an 8K image is 400 MB per float copy
    if mode in GRAYSCALE_MODES:
        pixels = x.mean(dim=1).mul_(255.0).round_().to(torch.uint8).numpy()  # [B, H, W]
    else:
        pixels = x.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [B, H, W, 3]
    images = [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]
    for image in images if icc_profile else ():
        image.info["icc_profile"] = icc_profile  # what Pillow's writers embed
    return images


def icc_profile(image: object) -> bytes | None:
    """The ICC profile of a PIL image, kept with its pixels: the colour space their values are in (a phone's
    Display P3, Adobe RGB, ...), which a file of them must carry to be shown right. None for arrays, untagged
    images and sRGB ones (an untagged image is sRGB to every viewer: an sRGB profile, 3 KB in 4 of the 8 CLIC
    photos, would be bits for nothing), and for a profile that does not describe the pixels given back (RGB, or
    gray for grayscale: a CMYK photo's pixels become RGB) or that littleCMS cannot read."""
    profile = image.info.get("icc_profile") if isinstance(image, Image.Image) else None
    if not profile:
        return None
    try:
        from PIL import ImageCms

        parsed = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile
        space = parsed.xcolor_space.strip()
    except (ImportError, OSError, TypeError, ValueError):  # ImageCms.PyCMSError is an OSError
        return None
    if space != ("GRAY" if image.mode in GRAYSCALE_MODES else "RGB") or _is_srgb(parsed):
        return None
    return profile


def in_srgb(image: Image.Image) -> Image.Image:
    """``image`` with its pixels converted to sRGB when it carries a profile :func:`icc_profile` keeps (else
    ``image`` itself), transparency untouched: for a display that drops profiles, as Gradio's does when it
    re-encodes an image for the page, a Display P3 photo would otherwise look washed out."""
    from PIL import ImageCms

    profile = icc_profile(image)
    if profile is None:
        return image
    colour = image.convert("L" if image.mode in GRAYSCALE_MODES else "RGB")
    shown = ImageCms.profileToProfile(colour, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                      ImageCms.createProfile("sRGB"), outputMode=colour.mode)
    if image.mode in ("RGBA", "LA"):
        shown.putalpha(image.getchannel("A"))
    return shown


_SRGB_COLORANTS = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
"""sRGB's red, green and blue in the ICC connection space (XYZ, D50-adapted)."""


def _is_srgb(parsed) -> bool:
    """An sRGB profile, by name and by primaries (a littleCMS profile object)."""
    colorants = [parsed.red_colorant, parsed.green_colorant, parsed.blue_colorant]
    return "srgb" in (parsed.profile_description or "").lower() and all(
        c is not None and np.allclose(c[0], expected, atol=2e-3)
        for c, expected in zip(colorants, _SRGB_COLORANTS, strict=True))


def _check_size(height: int, width: int) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise UnsupportedImageError(f"image size {height}x{width} (HxW): each side must be 1..{MAX_SIDE} pixels")


def _check_unit_range(values: np.ndarray | torch.Tensor, what: str) -> None:
    """Float input must already be in [0, 1]: rescaling by the observed range would change the image."""
    if isinstance(values, np.ndarray):
        finite, low, high = bool(np.isfinite(values).all()), values.min(), values.max()
    else:
        finite, low, high = bool(torch.isfinite(values).all()), values.min(), values.max()
    if not finite:
        raise UnsupportedImageError(f"{what} contains NaN or infinite values")
    if low < 0 or high > 1:
        raise UnsupportedImageError(f"{what} values must be within [0, 1], found [{float(low):g}, {float(high):g}]")


def _hwc_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """[H, W] or [H, W, C] float32 numpy -> [1, C, H, W] torch."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def _warn_if_multi_frame(image: Image.Image) -> None:
    """An animated GIF or a multi-page TIFF/WebP silently becoming one still would surprise: say so, once per file."""
    try:
        frames = getattr(image, "n_frames", 1)
    except (OSError, ValueError, EOFError):  # a lazily counted file that is closed by now: no count to give
        return
    if frames > 1:
        name = getattr(image, "filename", "") or f"this {image.format or 'multi-frame'} image"
        warnings.warn(f"{name} has {frames} frames; only frame {image.tell() + 1} is coded (a clip: "
                      "rdc compress-video, which reads GIFs, videos and frame folders; RDCVideoPipeline in Python)",
                      UserWarning, stacklevel=4)


def transparent_share(image: Image.Image | np.ndarray | torch.Tensor) -> float:
    """The share of the image's pixels that are not fully opaque: 0 without an alpha channel (tensors have none)."""
    if isinstance(image, Image.Image):
        if not image.has_transparency_data:
            return 0.0
        alpha, opaque = np.asarray(image.convert("RGBA").getchannel("A")), 255
    elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4:
        alpha = image[:, :, 3]
        opaque = True if alpha.dtype.kind == "b" else 1.0 if alpha.dtype.kind == "f" else np.iinfo(alpha.dtype).max
    else:
        return 0.0
    return float(np.mean(alpha != opaque))


def warn_if_transparent(image: Image.Image | np.ndarray | torch.Tensor, holder: str) -> None:
    """A transparent image coded into a format that holds colour only comes back opaque, the colour under its clear
    pixels showing (often black): say so rather than let it surprise. ``holder``: the format, for the message."""
    share = transparent_share(image)
    if share > 0:
        name = getattr(image, "filename", "") or "the image"
        warnings.warn(f"{name} is transparent ({share:.1%} of its pixels are not opaque) and {holder} holds colour "
                      "only: the decoded image is opaque", UserWarning, stacklevel=4)


def _from_pil(image: Image.Image) -> torch.Tensor:
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise UnsupportedImageError(f"unsupported PIL mode {mode!r}; supported: {', '.join(SUPPORTED_MODES)}")
    width, height = image.size
    _check_size(height, width)
    _warn_if_multi_frame(image)
    if mode in _SIXTEEN_BIT:
        return _hwc_to_tensor(np.asarray(image).astype(np.float32) / 65535.0)
    if mode == "I":
        return _hwc_to_tensor(np.clip(np.asarray(image), 0, 65535).astype(np.float32) / 65535.0)
    if mode == "F":
        arr = np.array(image, dtype=np.float32)  # a copy: np.asarray of a PIL image is read-only
        _check_unit_range(arr, "mode 'F' image")
        return _hwc_to_tensor(arr)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgb = np.asarray(image.convert("RGBA"))[:, :, :3]  # alpha is dropped, not stored
    else:
        rgb = np.asarray(image.convert("RGB"))
    return _hwc_to_tensor(rgb.astype(np.float32) / 255.0)


def _from_numpy(arr: np.ndarray) -> tuple[torch.Tensor, str]:
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    elif arr.ndim == 2:
        mode = "L"
    else:
        raise UnsupportedImageError(
            f"unsupported array shape {arr.shape}: expected HxW, HxWx1, HxWx3 or HxWx4 (alpha is dropped)")
    _check_size(arr.shape[0], arr.shape[1])
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "b":
        mode = "1" if mode == "L" else mode
        values = arr.astype(np.float32)
    elif kind == "u" and size == 1:
        values = arr.astype(np.float32) / 255.0
    elif kind == "u" and size == 2:
        values = arr.astype(np.float32) / 65535.0
    elif kind == "f":
        _check_unit_range(arr, "float array")
        values = arr.astype(np.float32)
    else:
        raise UnsupportedImageError(
            f"unsupported array dtype {arr.dtype} (shape {arr.shape}): use uint8, uint16, bool or float in [0, 1]")
    if mode == "RGBA":
        values = values[:, :, :3]  # alpha is dropped, not stored
    return _hwc_to_tensor(values), mode


def _from_torch(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise UnsupportedImageError(
                f"batch of {t.shape[0]} images (shape {tuple(t.shape)}): pass one image at a time")
        t = t[0]
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise UnsupportedImageError(
            f"unsupported tensor shape {tuple(t.shape)}: expected [3, H, W], [1, 3, H, W] or a 1-channel variant"
            " (channels first)")
    _check_size(t.shape[1], t.shape[2])
    t = t.detach()
    if t.dtype == torch.uint8:
        x = t.to(torch.float32) / 255.0
    elif t.is_floating_point():
        _check_unit_range(t, "float tensor")
        x = t.to(torch.float32, copy=True)  # copy: never alias the caller's tensor
    else:
        raise UnsupportedImageError(f"unsupported tensor dtype {t.dtype}: use a float tensor in [0, 1] or uint8")
    return x.unsqueeze(0), "L" if t.shape[0] == 1 else "RGB"
