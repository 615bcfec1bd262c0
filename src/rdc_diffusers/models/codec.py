"""The learned codec: a mean-scale hyperprior (Minnen et al. 2018), variable-rate by gain units (Cui et al. 2021)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

with warnings.catch_warnings():  # compressai 1.2.8 scripts a function at import; torch 2.14 calls that deprecated
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.layers import GDN
    from compressai.models.utils import conv, deconv
from diffusers.configuration_utils import register_to_config

# model_index.json names this module as the codec's library; diffusers then looks up the loader's base class here.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import Tensor, nn

from ..tiling import OVERLAP, tiled
from .channels_last import ChannelsLastSequential
from .entropy_coded import (
    EntropyCodedModel,
    code_y,
    hyperprior_decompress,
    hyperprior_forward,
    settle_padding,
)
from .latent_optimisation import optimise_latent

MIN_QUALITY, MAX_QUALITY = 0.0, 100.0
QUALITY_DECIMALS = 2
"""Qualities are rounded to hundredths before use: files store them as u16 hundredths, and encoder and
decoder must derive the same gains from the same number."""

REFERENCE_LMBDA = 0.0067
"""The λ at which the gains start at 1: the rate the transforms were first trained at (the retired
single-rate ``rdc-bsds-q3``), so a warm start from those weights reproduces that codec there."""


def check_quality(quality: float) -> float:
    """``quality`` rounded to hundredths; ``ValueError`` outside [0, 100], ``TypeError`` if not a number."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float)):
        raise TypeError(f"quality must be a number in [{MIN_QUALITY:g}, {MAX_QUALITY:g}], got {quality!r}")
    if not MIN_QUALITY <= quality <= MAX_QUALITY:  # also refuses NaN
        raise ValueError(f"quality must be in [{MIN_QUALITY:g}, {MAX_QUALITY:g}], got {quality!r}")
    return round(float(quality), QUALITY_DECIMALS)


class RDCCodec(EntropyCodedModel):
    r"""Variable-rate mean-scale hyperprior codec whose synthesis transform is the fidelity decoder of RDC.

    Transforms: D. Minnen, J. Ballé, G. Toderici, "Joint Autoregressive and Hierarchical Priors for Learned
    Image Compression", NeurIPS 2018 (the mean-scale hyperprior without the context model, so decoding stays
    parallel); the layers are compressai's ``MeanScaleHyperprior``.

    Rate: Z. Cui, J. Wang, S. Gao, T. Guo, Y. Feng, B. Bai, "Asymmetric Gained Deep Image Compression With
    Continuous Rate Adaptation", CVPR 2021. A gain vector ``g`` (one value per latent channel) scales the
    centred latent before rounding and an inverse gain ``g'`` scales it back, so the quantisation step of
    channel c is ``1/g_c``: one set of transforms serves every rate. Gains are learned at ``gain_levels``
    anchor qualities, each trained at its own λ, and interpolated in the log domain between them, which
    gives a continuous quality. Why gain units rather than compressai's ``MeanScaleHyperpriorVbr``
    (Kamisli et al. 2024, one scalar step per level plus a learned quantisation-offset network): a gain
    per *channel* lets each rate allocate bits across channels, it costs 2·levels·M numbers and no extra
    network at decode time, and with all gains at 1 the model *is* the single-rate codec, so it warm-starts
    exactly from one (QVRF, Tong et al. 2023, is the scalar special case). Training samples a continuous
    quality per image, so the interpolated rates are trained, not only the anchors. The hyper-latent ẑ is
    coded at the same step at every rate; it costs a few percent of the bits.

    .. code-block:: none

        x ─g_a─► y ─h_a─► z ─Q─► ẑ ─h_s─► (μ, σ)                         ẑ: EntropyBottleneck
                 │                         │
                 └──► q = Q((y − μ)·g) ◄───┘ σ·g                         q: GaussianConditional(σ·g)
                          │
                          └──► ŷ = q·g' + μ ─g_s─► x_init              fidelity decoder (MSE-trained)

        g, g' = exp(lerp(log_gain, quality)), exp(lerp(log_inverse_gain, quality))

    Args:
        N: channels of the hidden layers.
        M: channels of the latent ``y`` (the conditioning signal of the residual UNet).
        lmbda_min, lmbda_max: the rate–distortion trade-offs (compressai's λ, on 255²·MSE) trained at
            quality 0 and 100; λ is log-linear in the quality in between.
        gain_levels: anchor qualities with learned gains, evenly spaced over [0, 100].

    Images enter in [0, 1] with height and width multiples of 64 (:attr:`alignment`); ``quality`` is a
    number in [0, 100] (higher: more bits, higher fidelity).
    """

    @register_to_config
    def __init__(self, N: int = 128, M: int = 192, lmbda_min: float = 0.0004, lmbda_max: float = 0.08,
                 gain_levels: int = 6):
        super().__init__()
        self.g_a = ChannelsLastSequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        self.g_s = ChannelsLastSequential(
            deconv(M, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True),
            deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
            conv(N, N), nn.LeakyReLU(inplace=True),
            conv(N, N),
        )
        self.h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )
        # High-rate theory: MSE ∝ step², and the optimum step satisfies step² ∝ 1/λ, so g ∝ √λ.
        anchors = torch.linspace(0, 1, gain_levels)
        log_lmbda = math.log(lmbda_min) + anchors * (math.log(lmbda_max) - math.log(lmbda_min))
        log_gain = 0.5 * (log_lmbda - math.log(REFERENCE_LMBDA))
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, M))
        self.log_inverse_gain = nn.Parameter(-log_gain[:, None].repeat(1, M))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_entropy_hooks()

    def lmbda(self, quality: Tensor) -> Tensor:
        """The λ that ``quality`` (a tensor of values in [0, 100]) is trained at: log-linear in the quality."""
        lo, hi = math.log(self.config.lmbda_min), math.log(self.config.lmbda_max)
        return torch.exp(lo + quality / MAX_QUALITY * (hi - lo))

    def gains(self, quality: Tensor | float) -> tuple[Tensor, Tensor]:
        """``(g, g')`` for each quality, shaped ``(B, M, 1, 1)``: log-linear between the two nearest anchors."""
        quality = torch.as_tensor(quality, dtype=torch.float32, device=self.log_gain.device).reshape(-1)
        position = quality.clamp(MIN_QUALITY, MAX_QUALITY) / MAX_QUALITY * (self.config.gain_levels - 1)
        low = position.floor().long().clamp(max=self.config.gain_levels - 2)
        weight = (position - low)[:, None]

        def lerp(table: Tensor) -> Tensor:
            return ((1 - weight) * table[low] + weight * table[low + 1]).exp()[..., None, None]

        return lerp(self.log_gain), lerp(self.log_inverse_gain)

    def forward(self, x: Tensor, quality: Tensor | float) -> dict:
        """Training pass at ``quality`` (one per image or one for all): ``x_init``, ``ŷ`` and the likelihoods.

        Under mixed precision the transforms run in the autocast dtype; the entropy models, the rounding and the
        outputs stay float32 (:func:`~rdc_diffusers.models.entropy_coded.hyperprior_forward`)."""
        if self.training:
            self._tables_stale = True
        y_hat, likelihoods = hyperprior_forward(self, self.g_a(x), *self.gains(quality))
        return {"x_init": self.g_s(y_hat).float(), "y_hat": y_hat, "likelihoods": likelihoods}

    @torch.no_grad()
    def analyse(self, x: Tensor, tile_size: int | None = None, progress: Callable | None = None,
                image_size: tuple[int, int] | None = None) -> dict:
        """Everything of the encoder that does not depend on the quality: ``y``, ẑ's string and ``(μ, σ)``.

        Rate control codes the same image at several qualities; it runs this once and
        :meth:`code_latent` per quality. ``tile_size`` (pixels, a multiple of 64): run ``g_a`` over tiles of
        that size (see :mod:`rdc_diffusers.tiling`), bounding its memory; ``progress`` wraps the loop over them.
        ``image_size``: the (height, width) of the image in ``x`` when ``x`` is padded at the bottom and right
        (:func:`~rdc_diffusers.media.image_io.pad_to_multiple`): the latents of padding alone are then coded as
        their predicted mean (:func:`~rdc_diffusers.models.entropy_coded.settle_padding`), and latent optimisation
        scores the image's pixels only.
        """
        self.ensure_entropy_tables()
        if tile_size is None:
            y = self.g_a(x)
        else:
            y = tiled(self.g_a, [x], scales=[1], out_scale=16, progress=progress, **self.tiles(tile_size))
        y, (z_strings, shape, scales_hat, means_hat) = settle_padding(self, y, image_size,
                                                                      stride=x.shape[-1] // y.shape[-1])
        return {"x": x, "y": y, "z_strings": z_strings, "shape": shape, "scales": scales_hat, "means": means_hat,
                "tile_size": tile_size, "image_size": image_size}

    @torch.no_grad()
    def code_latent(self, analysis: dict, quality: float, encoder_steps: int = 0) -> dict:
        """rANS-code the latent of an :meth:`analyse` result at ``quality``: ``{"strings": [y, z], "shape"}``.

        ``encoder_steps``: first optimise the latent for this image and quality over that many steps
        (:mod:`~rdc_diffusers.models.latent_optimisation`; the decoder is unchanged), tile by tile when the analysis
        was tiled. 0: the analysis transform's latent as it is.
        """
        quality = check_quality(quality)
        gain, _ = self.gains(quality)
        y, scales, means = analysis["y"], analysis["scales"], analysis["means"]
        if encoder_steps:
            def optimise(x: Tensor, pixels: Tensor, y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
                return optimise_latent(self, x, y, scales, means, quality, encoder_steps, pixels=pixels)

            x = analysis["x"]
            pixels = torch.zeros_like(x[:, :1])  # 1 on the image, 0 on its padding
            height, width = analysis["image_size"] or x.shape[-2:]
            pixels[..., :height, :width] = 1
            inputs = [x, pixels, y, scales, means]
            tile_size = analysis["tile_size"]
            y = optimise(*inputs) if tile_size is None else tiled(optimise, inputs, scales=[1, 1, 16, 16, 16],
                                                                  out_scale=16, **self.tiles(tile_size))
        y_strings = code_y(self, y, scales, means, gain)
        return {"strings": [y_strings, analysis["z_strings"]], "shape": analysis["shape"]}

    @torch.no_grad()
    def compress(self, x: Tensor, quality: float, encoder_steps: int = 0,
                 image_size: tuple[int, int] | None = None) -> dict:
        """Entropy-code ``x`` at ``quality`` with compressai's rANS coder: ``{"strings": [y, z], "shape": ẑ size}``;
        ``encoder_steps`` as in :meth:`code_latent`, ``image_size`` as in :meth:`analyse`."""
        return self.code_latent(self.analyse(x, image_size=image_size), quality, encoder_steps)

    @torch.no_grad()
    def decompress(self, strings: list, shape, quality: float, tile_size: int | None = None) -> dict:
        """Inverse of :meth:`compress`: ``{"x_init": g_s(ŷ) clamped to [0, 1], "y_hat": ŷ}``; ``tile_size`` as in
        :meth:`analyse`, for ``g_s``."""
        y_hat = self.decode_latent(strings, shape, quality)
        if tile_size is None:
            x_init = self.g_s(y_hat)
        else:
            x_init = tiled(self.g_s, [y_hat], scales=[16], out_scale=1, **self.tiles(tile_size))
        return {"x_init": x_init.clamp_(0, 1), "y_hat": y_hat}

    @torch.no_grad()
    def decode_latent(self, strings: list, shape, quality: float) -> Tensor:
        """Entropy-decode ``ŷ`` (small: 1/16 of the image per side) from the strings of :meth:`compress`."""
        self.ensure_entropy_tables()
        return hyperprior_decompress(self, strings, shape, *self.gains(check_quality(quality)))

    def tiles(self, tile_size: int) -> dict:
        """Tiling of the transforms: ``tile_size`` pixels seeing 128 more on each side (the 64 dropped exceed the
        reach of ``g_a`` and ``g_s``, so the tiles agree up to float rounding)."""
        return {"tile": tile_size, "overlap": min(OVERLAP, tile_size), "align": self.alignment}

    @torch.no_grad()
    def latent(self, x: Tensor, quality: float) -> Tensor:
        """The ``ŷ`` that coding ``x`` at ``quality`` would give, without coding it (rounding, in any module mode).

        The video pipeline conditions the unet of a P-frame on the image codec's latent of that frame.
        """
        gain, inverse_gain = self.gains(check_quality(quality))
        y = self.g_a(x)
        z_hat = self.entropy_bottleneck.quantize(self.h_a(y), "dequantize", self.entropy_bottleneck._get_medians())
        _, means_hat = self.h_s(z_hat).chunk(2, 1)
        return torch.round((y - means_hat) * gain) * inverse_gain + means_hat
