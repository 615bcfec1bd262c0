"""The P-frame codec: scale-space flow motion compensation plus a coded residual (Agustsson et al. 2020)."""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():  # compressai 1.2.8 scripts a function at import; torch 2.14 calls that deprecated
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.models import MeanScaleHyperprior
    from compressai.models.utils import conv, deconv
    from compressai.models.video import ScaleSpaceFlow
from diffusers.configuration_utils import register_to_config

# model_index.json names this module as the component's library; diffusers then looks up the loader's base class here.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import Tensor

from .entropy_coded import EntropyCodedModel, hyperprior_compress, hyperprior_decompress, hyperprior_forward


class RDCInterCodec(EntropyCodedModel):
    r"""Inter-frame (P-frame) codec with compressai's ScaleSpaceFlow design at a width a CPU can train.

    E. Agustsson, D. Minnen, N. Johnston, J. Ballé, S. J. Hwang, G. Toderici, "Scale-Space Flow for
    End-to-End Optimized Video Compression", CVPR 2020 (compressai's ``ssf2020``). The motion and residual
    autoencoders are compressai's ``MeanScaleHyperprior`` layouts and the warp is ``ScaleSpaceFlow``'s own
    Gaussian scale-space volume and trilinear ``grid_sample``; only the widths differ. compressai's
    ``ScaleSpaceFlow`` fixes them at 128/192 with 8.3 M-parameter hyperpriors (23 M parameters for the
    P-frame part alone, ~47 MB in float16), which neither trains on two CPU cores nor fits the weight budget.

    .. code-block:: none

        (x, x_ref) ─motion.g_a─► m ─hyperprior─► m̂ ─motion.g_s─► (flow, scale) ─warp(x_ref)─► x_pred
        x − x_pred ─residual.g_a─► r ─hyperprior─► r̂ ─residual.g_s([r̂, m̂])─► x_res
        x̂ = x_pred + x_res

    I-frames are coded by [`RDCCodec`]; this model only ever sees a decoded previous frame as ``x_ref``.
    Frames enter in [0, 1] with height and width multiples of 64 (:attr:`alignment`).

    Args:
        N: channels of the hidden layers of both autoencoders.
        M: channels of each latent.
        sigma0: blur of the first scale-space level.
        num_levels: levels of the scale-space volume.
        quality: the quality of the image codec ([`RDCCodec`]) whose I-frames this model was trained to
            continue from; a clip's I-frames are coded at it (this P-frame codec itself has a single rate).
    """

    @register_to_config
    def __init__(self, N: int = 64, M: int = 96, sigma0: float = 1.5, num_levels: int = 5, quality: float = 50.0):
        super().__init__()
        self.motion = MeanScaleHyperprior(N, M)
        self.motion.g_a[0] = conv(6, N)  # input: the frame and its reference
        self.motion.g_s[-1] = deconv(N, 3)  # output: 2-d flow and the scale field
        # Start from "copy the reference": zero flow, scale near the sharpest level (-1).
        torch.nn.init.zeros_(self.motion.g_s[-1].weight)
        with torch.no_grad():
            self.motion.g_s[-1].bias.copy_(torch.tensor([0.0, 0.0, -0.8]))
        self.residual = MeanScaleHyperprior(N, M)
        self.residual.g_s[0] = deconv(2 * M, N)  # SSF decodes the residual from [r̂, m̂]
        self.sigma0 = sigma0
        self.num_levels = num_levels
        self.register_entropy_hooks()

    # ScaleSpaceFlow's warp, borrowed: it reads only sigma0 and num_levels from self.
    gaussian_volume = staticmethod(ScaleSpaceFlow.gaussian_volume)
    warp_volume = ScaleSpaceFlow.warp_volume
    forward_prediction = ScaleSpaceFlow.forward_prediction

    def forward(self, x: Tensor, x_ref: Tensor) -> dict:
        """Training pass: ``x_hat`` and the likelihoods of both latents and their side information."""
        if self.training:
            self._tables_stale = True
        m_hat, motion_likelihoods = hyperprior_forward(self.motion, self.motion.g_a(torch.cat([x, x_ref], 1)))
        x_pred = self.forward_prediction(x_ref, self.motion.g_s(m_hat))
        r_hat, residual_likelihoods = hyperprior_forward(self.residual, self.residual.g_a(x - x_pred))
        x_hat = x_pred + self.residual.g_s(torch.cat([r_hat, m_hat], 1))
        likelihoods = {f"motion_{k}": v for k, v in motion_likelihoods.items()}
        likelihoods |= {f"residual_{k}": v for k, v in residual_likelihoods.items()}
        return {"x_hat": x_hat, "x_pred": x_pred, "likelihoods": likelihoods}

    @torch.no_grad()
    def compress(self, x: Tensor, x_ref: Tensor, image_size: tuple[int, int] | None = None) -> dict:
        """rANS-code ``x`` given the decoded reference: ``{"strings": [m_y, m_z, r_y, r_z], "shape": ẑ size}``.

        The residual is taken against the prediction the decoder will make from the decoded motion, so
        encoder and decoder stay in step; the caller gets the next reference from :meth:`decompress`.
        ``image_size``: the frame's (height, width) inside the padded ``x``: the motion's and the residual's latents
        of padding alone are coded as their predicted mean (:func:`~.entropy_coded.settle_padding`).
        """
        self.ensure_entropy_tables()
        motion = self.motion.g_a(torch.cat([x, x_ref], 1))
        settle = {"image_size": image_size, "stride": x.shape[-1] // motion.shape[-1]}  # the residual's: the same
        motion_strings, shape = hyperprior_compress(self.motion, motion, **settle)
        m_hat = hyperprior_decompress(self.motion, motion_strings, shape)
        x_pred = self.forward_prediction(x_ref, self.motion.g_s(m_hat))
        residual_strings, _ = hyperprior_compress(self.residual, self.residual.g_a(x - x_pred), **settle)
        return {"strings": [*motion_strings, *residual_strings], "shape": shape}

    @torch.no_grad()
    def decompress(self, strings: list, shape, x_ref: Tensor) -> dict:
        """Inverse of :meth:`compress`: ``{"x_hat": the decoded frame, clamped to [0, 1]}``."""
        self.ensure_entropy_tables()
        m_hat = hyperprior_decompress(self.motion, strings[:2], shape)
        x_pred = self.forward_prediction(x_ref, self.motion.g_s(m_hat))
        r_hat = hyperprior_decompress(self.residual, strings[2:], shape)
        x_hat = x_pred + self.residual.g_s(torch.cat([r_hat, m_hat], 1))
        return {"x_hat": x_hat.clamp_(0, 1)}
