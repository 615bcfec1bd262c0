"""A standard codec as the fidelity layer: Pillow's JPEG, WebP or AVIF decode is x_init, and a learned analysis
transform computes at the decoder the latent the residual UNet is conditioned on (DIRAC, Ghouse et al. 2023:
residual diffusion on top of a standard codec)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

with warnings.catch_warnings():  # compressai 1.2.8 scripts a function at import; torch 2.14 calls that deprecated
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.layers import GDN
    from compressai.models.utils import conv
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

from ..media import standard_codecs
from .channels_last import ChannelsLastSequential
from .complete_weights import CompleteWeightsMixin

RATE_ANCHORS = ((0.092, 0.0), (0.241, 25.0), (0.499, 50.0), (0.826, 75.0), (1.222, 100.0))
"""(bpp, quality) of ``rdc-bsds`` on Kodak (benchmarks/results): a file's rate becomes the quality the residual
UNet is conditioned on, the quality at which our own codec spends as many bits."""


class BaseCodec(CompleteWeightsMixin, ModelMixin, ConfigMixin):
    r"""JPEG, WebP or AVIF through Pillow, plus the analysis transform ``g_a`` of [`RDCCodec`]'s shape.

    .. code-block:: none

        encode:  x ─Pillow (format, quality 0..100)─► a standard file, decodable everywhere
        decode:  file ─Pillow─► x_init;  ŷ = g_a(x_init) (not coded: computed from what the decoder has)

    ``g_a`` starts as the image codec's own analysis transform and is trained with the UNet on base-codec
    decodes. The file carries no quality, so the UNet's quality input is derived from the rate of its coded pixels
    (:meth:`file_quality`: headers and metadata left out, so a 128² training crop and a
    whole photo, with EXIF or without, are judged by their pixels alone).

    Args:
        N, M: ``g_a``'s channels (M: the latent's, as the UNet expects).
    """

    alignment = 64
    """x_init is padded to a multiple of this before ``g_a`` (as the image codec pads its input)."""

    @register_to_config
    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.g_a = ChannelsLastSequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))

    encode = staticmethod(standard_codecs.encode)
    probe = staticmethod(standard_codecs.probe)
    viewing = staticmethod(standard_codecs.viewing)
    payload_bytes = staticmethod(standard_codecs.payload_bytes)
    lossless = staticmethod(standard_codecs.lossless)

    @staticmethod
    def decode(data: bytes) -> tuple[Tensor, str, Tensor | None]:
        """``(x_init [1, 3, H, W] in [0, 1] as stored, mode, uint8 alpha [1, 1, H, W] or None)`` of a file
        :meth:`probe` accepted (see :func:`~rdc_diffusers.media.standard_codecs.decode`; :meth:`viewing` says how
        viewers show it); a broken file raises :class:`RDCFormatError`."""
        pixels, mode, alpha = standard_codecs.decode(data)
        alpha = None if alpha is None else torch.from_numpy(alpha)[None, None]
        return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, mode, alpha

    def forward(self, x_init: Tensor) -> Tensor:
        """ŷ for an ``x_init`` whose sides are multiples of :attr:`alignment`."""
        return self.g_a(x_init)

    @staticmethod
    def rate_quality(bpp: float | Tensor) -> Tensor:
        """The UNet's quality input for a file whose coded pixels take ``bpp`` bits per pixel (see
        :meth:`payload_bytes`): :data:`RATE_ANCHORS` interpolated in log-rate, clamped to [0, 100]."""
        log_rates = [math.log(b) for b, _ in RATE_ANCHORS]
        qualities = [q for _, q in RATE_ANCHORS]
        values = np.log(np.clip(np.asarray(bpp, dtype=np.float64), 1e-6, None))
        return torch.as_tensor(np.interp(values, log_rates, qualities), dtype=torch.float32)

    @classmethod
    def payload_bpp(cls, data: bytes, width: int, height: int) -> float:
        """Bits per pixel of a ``width`` × ``height`` file's coded pixels (:meth:`payload_bytes`)."""
        return 8 * cls.payload_bytes(data) / (width * height)

    @classmethod
    def file_quality(cls, data: bytes, width: int, height: int) -> float:
        """The UNet's quality input for a file of ``width`` × ``height`` pixels: :meth:`rate_quality` of its coded
        pixels' rate. Training and decoding both ask this, so the two cannot drift apart."""
        return cls.rate_quality(cls.payload_bpp(data, width, height)).item()
