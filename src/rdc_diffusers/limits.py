"""How many pixels the codec agrees to code or decode per image (or video frame): a decompression-bomb guard.

A forged ``.rdc`` file of a few bytes can claim 65535×65535 pixels; decoding it would take hours and far more
memory than a machine has, since every layer of the synthesis transform and the UNet runs at the claimed size.
As with Pillow's ``Image.MAX_IMAGE_PIXELS``, the claimed size is checked from the header before any entropy
decoding or allocation, against a limit that is global (this module's :data:`MAX_IMAGE_PIXELS`) and overridable
per call (``max_pixels=``; ``math.inf`` for no limit).
"""

from __future__ import annotations

import math

from .errors import DecompressionBombError, UnsupportedImageError

__all__ = ["MAX_FILE_STEPS", "MAX_IMAGE_PIXELS", "check_decode_size", "check_encode_size", "check_file_steps",
           "check_steps", "check_stored_steps"]

MAX_IMAGE_PIXELS: int | None = 7680 * 4320
"""Default limit, 33.2 megapixels (8K UHD). Decoding a 3840×2160 image whole peaks at ~5 GiB, so this is about
20 GiB; set it to ``None`` (or pass ``max_pixels=math.inf``) to lift the limit."""


MAX_FILE_STEPS: int | None = 100
"""The most refinement steps a file may ask for by default (its header stores up to 65535): a forged header would
otherwise buy minutes of UNet evaluations per file. A caller who passes ``num_inference_steps`` chooses for itself;
``None`` lifts the limit."""


def check_file_steps(steps: int) -> None:
    """Refuse a file whose default refinement asks for more than :data:`MAX_FILE_STEPS` steps."""
    if MAX_FILE_STEPS is not None and steps > MAX_FILE_STEPS:
        raise DecompressionBombError(
            f"the file asks for {steps} refinement steps, above the limit of {MAX_FILE_STEPS} "
            "(rdc_diffusers.limits.MAX_FILE_STEPS); pass num_inference_steps (rdc: --steps) to choose how many")


def check_steps(steps: int, num_train_timesteps: int) -> int:
    """``steps`` if a scheduler trained on ``num_train_timesteps`` can take it, else ``ValueError`` (``TypeError`` if
    not an integer): diffusers would refuse it only inside ``set_timesteps``, after the entropy decoding."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"num_inference_steps must be an integer, got {steps!r}")
    if not 0 <= steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps must be in 0..{num_train_timesteps} (the scheduler's "
                         f"num_train_timesteps), got {steps}")
    return steps


def check_stored_steps(steps: int, num_train_timesteps: int) -> int:
    """:func:`check_steps` for the default a file stores, which must also be within :data:`MAX_FILE_STEPS`: checked
    at compress time, so no file is written whose default decode its decoders refuse."""
    check_steps(steps, num_train_timesteps)
    if MAX_FILE_STEPS is not None and steps > MAX_FILE_STEPS:
        raise ValueError(f"num_inference_steps={steps} is above the {MAX_FILE_STEPS} steps decoders accept from a "
                         "file by default (rdc_diffusers.limits.MAX_FILE_STEPS)")
    return steps


def pixel_limit(max_pixels: float | None) -> float:
    """The limit in force: ``max_pixels`` when given, else the module's :data:`MAX_IMAGE_PIXELS` (None: none)."""
    if max_pixels is None:
        return math.inf if MAX_IMAGE_PIXELS is None else MAX_IMAGE_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, float)) or not max_pixels >= 1:
        raise ValueError(f"max_pixels must be a positive number of pixels (math.inf: no limit), got {max_pixels!r}")
    return max_pixels


def _describe(width: int, height: int, limit: float) -> str:
    return (f"{width}x{height} = {width * height:,} pixels, above the limit of {limit:,.0f} "
            "(rdc_diffusers.limits.MAX_IMAGE_PIXELS, max_pixels= for one call, rdc --max-pixels)")


def check_decode_size(width: int, height: int, max_pixels: float | None = None, what: str = "the file") -> None:
    """Refuse a header whose size is above the limit, with :class:`DecompressionBombError`."""
    limit = pixel_limit(max_pixels)
    if width * height > limit:
        raise DecompressionBombError(f"{what} claims {_describe(width, height, limit)}; not decoded")


def check_encode_size(width: int, height: int, max_pixels: float | None = None) -> None:
    """Refuse an input image above the limit, with :class:`UnsupportedImageError`."""
    limit = pixel_limit(max_pixels)
    if width * height > limit:
        raise UnsupportedImageError(f"the image is {_describe(width, height, limit)}; not coded")
