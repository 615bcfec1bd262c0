"""Full-reference quality metrics as the evaluation protocol (docs/METHOD.md) defines them.

* :func:`psnr`: PSNR in dB on **8-bit** RGB: both images are clamped to [0, 1], scaled by 255 and rounded
  before the squared error is taken, so it is the PSNR of the PNGs a user would actually save.
* :func:`ms_ssim`: MS-SSIM (``pytorch_msssim``, 5 scales, 11-px Gaussian window, ``data_range=1``).
  MS-SSIM downsamples four times and needs the smaller side to be at least :data:`MS_SSIM_MIN_SIDE`
  (161) pixels; for smaller images there is no MS-SSIM to compute, so it returns ``NaN`` instead of raising
  (and :func:`rdc_diffusers.evaluation.results.summarize` leaves NaN out of its means and says how many it used).
* :func:`lpips`: re-exported from :mod:`rdc_diffusers.metrics.lpips` (AlexNet, v0.1, offline weights;
  needs the ``metrics`` extra). It returns a ``[B]`` tensor, not a float.

Inputs are float tensors ``[1, 3, H, W]`` in [0, 1] (a batch ``[B, 3, H, W]`` also works: PSNR then pools the
squared error over the whole batch, MS-SSIM averages the per-image values).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .lpips import lpips

MS_SSIM_MIN_SIDE = 161
"""Smallest side (px) MS-SSIM accepts: ``pytorch_msssim`` needs ``min(H, W) > (win_size - 1) * 2**4 = 160``."""

__all__ = ["MS_SSIM_MIN_SIDE", "lpips", "ms_ssim", "psnr"]


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.ndim != 4 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(f"expected two [B,3,H,W] tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images in [0, 1] after clamping and rounding both to 8 bits; ``inf`` if they are equal.

    The squared error is accumulated in float64, so a uniform error of one grey level gives exactly
    ``20·log10(255) = 48.13`` dB.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    a8, b8 = (t.detach().to(torch.float64).clamp(0, 1).mul(255).round() for t in (a, b.to(a.device)))
    mse = (a8 - b8).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def ms_ssim(a: Tensor, b: Tensor) -> float:
    """MS-SSIM of two RGB images in [0, 1] (``data_range=1``); ``NaN`` when a side is below 161 px (see module doc).

    Computed on the values given (no 8-bit rounding here: round the inputs first if that is what is compared).
    """
    _check_pair(a, b)
    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    from pytorch_msssim import ms_ssim as _ms_ssim  # not a core dependency: imported only when needed

    with torch.no_grad():
        values = _ms_ssim(a.detach().float(), b.detach().float().to(a.device), data_range=1.0, size_average=False)
    return float(values.mean())
