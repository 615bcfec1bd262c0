"""The learned codec: analysis/synthesis transforms and a mean-scale hyperprior (Minnen et al. 2018)."""

from __future__ import annotations

import hashlib
import json
import warnings

import torch

with warnings.catch_warnings():  # compressai 1.2.8 scripts a function at import; torch 2.14 calls that deprecated
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.layers import GDN
    from compressai.models import CompressionModel
    from compressai.models.utils import conv, deconv, update_registered_buffers
    from compressai.ops import quantize_ste
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

# Buffers holding the entropy coder's tables; they are empty until `update()` and change size with it.
_ENTROPY_BUFFERS = {
    EntropyBottleneck: ["_quantized_cdf", "_offset", "_cdf_length"],
    GaussianConditional: ["_quantized_cdf", "_offset", "_cdf_length", "scale_table"],
}


def _resize_entropy_buffers(module, state_dict, prefix, *args) -> None:
    """Load-time pre-hook: give the table buffers the incoming shape so a strict load can copy them."""
    names = [n for n in _ENTROPY_BUFFERS[type(module)] if prefix + n in state_dict]
    update_registered_buffers(module, prefix[:-1], names, state_dict, policy="resize")


class RDCCodec(ModelMixin, ConfigMixin):
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
        for module in (self.entropy_bottleneck, self.gaussian_conditional):
            module.register_load_state_dict_pre_hook(_resize_entropy_buffers)
        # Set by training-mode forward passes: the tables no longer match the weights.
        self._tables_stale = False

    # compressai's table builder and aux loss, borrowed rather than inherited: CompressionModel as a
    # base would put nn.Module behind ConfigMixin in the MRO and break attribute lookup.
    update = CompressionModel.update
    aux_loss = CompressionModel.aux_loss

    alignment = 64
    """Height and width of the input must be multiples of this (g_a and h_a downsample 16x and 4x)."""

    def forward(self, x: Tensor) -> dict:
        """Training pass: ``x_init``, ``ŷ`` and the likelihoods of ``y`` and ``z`` (noise-relaxed)."""
        if self.training:
            self._tables_stale = True
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        # Straight-through rounding: g_s sees the same ŷ in training as at decode time.
        y_hat = quantize_ste(y - means_hat) + means_hat
        x_init = self.g_s(y_hat)
        return {"x_init": x_init, "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Entropy-code ``x`` with compressai's rANS coder: ``{"strings": [y, z], "shape": ẑ size}``."""
        self.ensure_entropy_tables()
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means_hat)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    @torch.no_grad()
    def decompress(self, strings: list, shape) -> dict:
        """Inverse of :meth:`compress`: ``{"x_init": g_s(ŷ) clamped to [0, 1], "y_hat": ŷ}``."""
        self.ensure_entropy_tables()
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)
        x_init = self.g_s(y_hat).clamp_(0, 1)
        return {"x_init": x_init, "y_hat": y_hat}

    def ensure_entropy_tables(self) -> None:
        """Build the CDF tables when they are missing or training has changed the weights since."""
        empty = self.entropy_bottleneck._offset.numel() == 0 or self.gaussian_conditional.scale_table.numel() == 0
        if empty or self._tables_stale:
            self.update(force=True)
            self._tables_stale = False

    def fingerprint(self) -> bytes:
        """8 bytes identifying this codec exactly: its config and every weight and table, bit for bit.

        Files record it, so bytes are never decoded by a codec whose tables or transforms differ
        from the writer's (which would desynchronise the entropy decoder into garbage).
        """
        self.ensure_entropy_tables()
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}  # not name/version
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.digest()[:8]

    def to(self, *args, **kwargs):
        """Move between devices but never change dtype: the codec runs in float32 (see ``from_pretrained``)."""
        device, _, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        return super().to(device=device, non_blocking=non_blocking) if device is not None else self

    def save_pretrained(self, *args, **kwargs):
        """Save weights and entropy tables together (the tables are built first if needed)."""
        self.ensure_entropy_tables()
        return super().save_pretrained(*args, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load on the CPU in float32, whatever ``dtype`` is asked for.

        compressai's entropy models assign ``.data`` in ``__init__``, which fails on the meta device
        (so no ``low_cpu_mem_usage``), and the scale indexes that drive the entropy coder must be
        computed identically by encoder and decoder, which half precision does not guarantee.
        """
        kwargs["low_cpu_mem_usage"] = False
        kwargs.pop("torch_dtype", None)
        kwargs.pop("dtype", None)
        return super().from_pretrained(*args, **kwargs)
