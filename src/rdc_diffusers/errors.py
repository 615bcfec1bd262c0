"""Typed exceptions, so callers can tell a bad file or a bad image from a bug in rdc-diffusers."""

from __future__ import annotations

__all__ = [
    "DecompressionBombError", "RDCError", "RDCFormatError", "RDCModelMismatchError", "RateTargetError",
    "UnsupportedImageError", "UnsupportedSchedulerError", "UnsupportedVideoError",
]


class RDCError(Exception):
    """Base of every error rdc-diffusers raises on purpose."""


class RDCFormatError(RDCError, ValueError):
    """The bytes are not a valid .rdc file (truncated, corrupted, foreign, unsupported version)."""


class DecompressionBombError(RDCFormatError):
    """A file whose header claims more pixels than the limit (``rdc_diffusers.limits``): refused before decoding."""


class RDCModelMismatchError(RDCFormatError):
    """A valid file written by another model than the one decoding it."""


class UnsupportedImageError(RDCError, ValueError):
    """An input image this codec cannot take (mode, shape, dtype, size)."""


class UnsupportedVideoError(RDCError, ValueError):
    """A video or frame folder this codec cannot read or write (missing, empty, undecodable, mixed sizes)."""


class RateTargetError(RDCError, ValueError):
    """A rate target (``target_bpp``, ``--bpp``, ``--size``) that no quality of the model can meet."""


class UnsupportedSchedulerError(RDCError, ValueError):
    """A diffusers scheduler that cannot sample the residual UNet (``rdc_diffusers.schedulers`` lists those
    that can)."""
