"""Encoder-side latent optimisation: search, for one image, the latent that codes it best with the codec as it is.

The analysis transform ``g_a`` is amortised: one network guesses a good latent for every image, and the guess
leaves rate and distortion on the table (the amortisation gap, most of it at high rates here). Optimising the
latent of one image for the training objective ``bpp + λ·255²·MSE`` with the decoder fixed closes part of it
(J. Campos, S. Meierhans, A. Djelouah, C. Schroers, "Content Adaptive Optimization for Neural Image Compression",
CVPRW 2019). Rounding has no gradient, so the latent is rounded softly with stochastic Gumbel annealing, which
becomes hard rounding as its temperature falls (Y. Yang, R. Bamler, S. Mandt, "Improving Inference for Neural Image
Compression", NeurIPS 2020). Only ``y`` moves; the hyper-latent, hence ``(μ, σ)``, stays the encoder's, so the
file is coded and decoded exactly as without optimisation: any decoder of the model reads it.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

LEARNING_RATE = 5e-3
"""Adam's step on ``y``, cosine-decayed to 0 over the run (5e-3 beat 1e-3 and 1e-2 on a Kodak crop,
benchmarks/results/encoder_side)."""

TEMPERATURE = (0.5, 6.0, 0.01)
"""Gumbel annealing: ``τ = max(τ0 · exp(−rate · step / steps), τ_min)``, from soft to practically hard rounding."""


def soft_round(v: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Stochastic Gumbel annealing: ``floor(v)`` plus a relaxed choice between rounding down and up, each weighted
    by how close ``v`` is to it (``−atanh(distance) / τ`` logits plus Gumbel noise); hard rounding as ``τ → 0``."""
    down = torch.floor(v)
    fraction = (v - down).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(fraction), -torch.atanh(1 - fraction)], dim=-1) / temperature
    uniform = torch.rand(logits.shape, generator=generator, device=v.device).clamp_(1e-10, 1 - 1e-10)
    weights = torch.softmax(logits - torch.log(-torch.log(uniform)), dim=-1)
    return down + weights[..., 1]


def rate_distortion(codec, x: Tensor, y: Tensor, scales: Tensor, means: Tensor, quality: float,
                    rounding=torch.round, pixels: Tensor | None = None) -> Tensor:
    """``bits(y) / pixels + λ·255²·MSE(g_s(ŷ), x)`` at ``quality``, with ``rounding`` (hard by default) of the
    centred, gained latent; ẑ's bits are the same for every ``y`` here and left out. ``pixels``: 1 where ``x``
    is the image, 0 on its padding (cropped by the decoder, so neither counted nor scored); default all image."""
    gain, inverse_gain = codec.gains(quality)
    symbols = rounding((y - means) * gain)
    gaussian = codec.gaussian_conditional
    scales = gaussian.lower_bound_scale(scales * gain)
    likelihoods = gaussian.likelihood_lower_bound(gaussian._likelihood(symbols, scales))
    if pixels is None:
        pixels = torch.ones_like(x[:, :1])
    count = pixels.sum().clamp(min=1)
    bpp = -likelihoods.log2().sum() / count
    mse = ((codec.g_s(symbols * inverse_gain + means) - x) ** 2 * pixels).sum() / (count * x.shape[1])
    return bpp + codec.lmbda(torch.tensor(quality)) * 255**2 * mse


def optimise_latent(codec, x: Tensor, y: Tensor, scales: Tensor, means: Tensor, quality: float, steps: int,
                    seed: int = 0, pixels: Tensor | None = None) -> Tensor:
    """``y`` after ``steps`` Adam steps on :func:`rate_distortion` with soft rounding, or ``y`` itself when that
    codes ``x`` better (the cost with hard rounding decides), so the result is never worse by the objective.
    Deterministic for a given ``seed``: the same image gives the same file. ``pixels`` as in
    :func:`rate_distortion`."""
    generator = torch.Generator(device=y.device).manual_seed(seed)
    start, tau0, decay, tau_min = y, *TEMPERATURE
    y = y.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=LEARNING_RATE)
    with torch.enable_grad():
        for step in range(steps):
            temperature = max(tau0 * math.exp(-decay * step / steps), tau_min)
            for group in optimizer.param_groups:
                group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * step / steps))
            rounding = functools.partial(soft_round, temperature=temperature, generator=generator)
            loss = rate_distortion(codec, x, y, scales, means, quality, rounding=rounding, pixels=pixels)
            (y.grad,) = torch.autograd.grad(loss, y)  # the codec's own weights collect no gradients
            optimizer.step()
    with torch.no_grad():
        costs = [rate_distortion(codec, x, candidate, scales, means, quality, pixels=pixels)
                 for candidate in (start, y)]
    return y.detach() if costs[1] < costs[0] else start
