"""The learned codec: analysis/synthesis transforms and a mean-scale hyperprior (Minnen et al. 2018)."""

from __future__ import annotations

import warnings

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

from .entropy_coded import EntropyCodedModel, hyperprior_compress, hyperprior_decompress, hyperprior_forward


class RDCCodec(EntropyCodedModel):
    r"""Mean-scale hyperprior codec whose synthesis transform is the fidelity decoder of RDC.

    D. Minnen, J. Ballé, G. Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image
    Compression", NeurIPS 2018 (the mean-scale hyperprior without the context model, so decoding
    stays parallel). The layers are compressai's ``MeanScaleHyperprior``; this class adds what the
    two-stage decoder needs: ``ŷ`` is returned beside ``x_init``, and the entropy tables live in
    the weights, so a file written before ``save_pretrained`` decodes bit-exactly after
    ``from_pretrained``.

    .. code-block:: none

        x ─g_a─► y ─h_a─► z ─Q─► ẑ ─h_s─► (μ, σ)                  ẑ: EntropyBottleneck
                 │                         │
                 └──────► ŷ = Q(y − μ) + μ ◄┘                  ŷ: GaussianConditional(σ)
                          │
                          └─g_s─► x_init                       fidelity decoder (MSE-trained)

    Args:
        N: channels of the hidden layers.
        M: channels of the latent ``y`` (the conditioning signal of the residual UNet).

    Images enter in [0, 1] with height and width multiples of 64 (:attr:`alignment`).
    """

    @register_to_config
    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        self.g_s = nn.Sequential(
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
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_entropy_hooks()

    alignment = 64
    """Height and width of the input must be multiples of this (g_a and h_a downsample 16x and 4x)."""

    def forward(self, x: Tensor) -> dict:
        """Training pass: ``x_init``, ``ŷ`` and the likelihoods of ``y`` and ``z`` (noise-relaxed)."""
        if self.training:
            self._tables_stale = True
        y_hat, likelihoods = hyperprior_forward(self, self.g_a(x))
        return {"x_init": self.g_s(y_hat), "y_hat": y_hat, "likelihoods": likelihoods}

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Entropy-code ``x`` with compressai's rANS coder: ``{"strings": [y, z], "shape": ẑ size}``."""
        self.ensure_entropy_tables()
        strings, shape = hyperprior_compress(self, self.g_a(x))
        return {"strings": strings, "shape": shape}

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """Inverse of :meth:`compress`: ``{"x_init": g_s(ŷ) clamped to [0, 1], "y_hat": ŷ}``."""
        self.ensure_entropy_tables()
        y_hat = hyperprior_decompress(self, strings, shape)
        return {"x_init": self.g_s(y_hat).clamp_(0, 1), "y_hat": y_hat}

    @torch.no_grad()
    def latent(self, x: Tensor) -> Tensor:
        """The ``ŷ`` that coding ``x`` would give, without coding it (rounding, in any module mode).

        The video pipeline conditions the unet of a P-frame on the image codec's latent of that frame.
        """
        y = self.g_a(x)
        z_hat = self.entropy_bottleneck.quantize(self.h_a(y), "dequantize", self.entropy_bottleneck._get_medians())
        _, means_hat = self.h_s(z_hat).chunk(2, 1)
        return torch.round(y - means_hat) + means_hat
