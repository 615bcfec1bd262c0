"""Typed exceptions, so callers can tell a bad file or a bad image from a bug in rdc-diffusers."""

from __future__ import annotations

__all__ = [
    "CLIError", "DecompressionBombError", "IncompatibleModelError", "MissingResultsError", "RDCError", "RDCFormatError",
    "RDCModelMismatchError", "RateTargetError", "ResultsFileError", "UnsupportedImageError",
    "UnsupportedSchedulerError", "UnsupportedVideoError",
]


class RDCError(Exception):
    """Base of every error rdc-diffusers raises on purpose."""


class RDCFormatError(RDCError, ValueError):
    """The bytes are not a valid .rdc file (truncated, corrupted, foreign, unsupported version)."""


class DecompressionBombError(RDCFormatError):
    """A file whose header claims more pixels than the limit (``rdc_diffusers.limits``): refused before decoding."""


class RDCModelMismatchError(RDCFormatError):
    """A valid file written by another model than the one decoding it."""


class IncompatibleModelError(RDCError, ValueError):
    """A model folder that lacks weights its class has: saved by an older release, before a layer existed."""


class UnsupportedImageError(RDCError, ValueError):
    """An input image this codec cannot take (mode, shape, dtype, size)."""


class UnsupportedVideoError(RDCError, ValueError):
    """A video or frame folder this codec cannot read or write (missing, empty, undecodable, mixed sizes)."""


class RateTargetError(RDCError, ValueError):
    """A rate target (``target_bpp``, ``--bpp``, ``--size``) that no quality of the model can meet."""


class UnsupportedSchedulerError(RDCError, ValueError):
    """A diffusers scheduler that cannot sample the residual UNet (``rdc_diffusers.schedulers`` lists those
    that can)."""


class ResultsFileError(RDCError, ValueError):
    """A file that is not a result file of this package (unreadable, not JSON, no ``summary``)."""


class MissingResultsError(RDCError, LookupError):
    """A model has no (or an ambiguous) benchmark entry: its card would have no measured numbers, so it is not
    written."""


class CLIError(Exception):
    """A problem with what an ``rdc`` command was asked (exists, missing, bad option): one line, exit code 2. Not an
    ``RDCError``: the library never raises it."""
