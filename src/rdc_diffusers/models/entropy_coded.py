"""What every model that writes bytes shares: entropy tables kept in the weights, and a fingerprint of them."""

from __future__ import annotations

import hashlib
import json
import warnings

import torch

with warnings.catch_warnings():  # compressai 1.2.8 scripts a function at import; torch 2.14 calls that deprecated
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.models import CompressionModel
    from compressai.models.utils import update_registered_buffers
    from compressai.ops import quantize_ste
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from .complete_weights import CompleteWeightsMixin

__all__ = ["EntropyCodedModel", "code_y", "full_precision", "hyperprior_compress", "hyperprior_decompress",
           "hyperprior_forward", "hyperprior_side", "settle_padding"]

# Buffers holding the entropy coder's tables; they are empty until `update()` and change size with it.
_ENTROPY_BUFFERS = {
    EntropyBottleneck: ["_quantized_cdf", "_offset", "_cdf_length"],
    GaussianConditional: ["_quantized_cdf", "_offset", "_cdf_length", "scale_table"],
}


def _resize_entropy_buffers(module, state_dict, prefix, *args) -> None:
    """Load-time pre-hook: give the table buffers the incoming shape so a strict load can copy them."""
    names = [n for n in _ENTROPY_BUFFERS[type(module)] if prefix + n in state_dict]
    update_registered_buffers(module, prefix[:-1], names, state_dict, policy="resize")


class EntropyCodedModel(CompleteWeightsMixin, ModelMixin, ConfigMixin):
    """Base of the codecs: compressai entropy models inside a diffusers ``ModelMixin``.

    The CDF tables are saved with the weights, so bytes written before ``save_pretrained`` decode
    bit-exactly after ``from_pretrained``; :meth:`fingerprint` names the exact model a file needs.
    Subclasses call :meth:`register_entropy_hooks` at the end of ``__init__``.
    """

    # compressai's table builder and aux loss, borrowed rather than inherited: CompressionModel as a
    # base would put nn.Module behind ConfigMixin in the MRO and break attribute lookup.
    update = CompressionModel.update
    aux_loss = CompressionModel.aux_loss

    alignment = 64
    """Height and width of an input must be multiples of this: the hyperprior's total downsampling (ẑ is 1/64)."""

    def z_shape(self, height: int, width: int) -> list[int]:
        """ẑ's size for an image of ``height`` x ``width`` (before padding): the ``shape`` decompression takes."""
        return [-(-height // self.alignment), -(-width // self.alignment)]

    @staticmethod
    def to_sections(strings: list) -> tuple[bytes, ...]:
        """One image's payloads as a file stores them, from compressai's per-batch string lists."""
        return tuple(s[0] for s in strings)

    @staticmethod
    def from_sections(sections) -> list[list[bytes]]:
        """Inverse of :meth:`to_sections`: compressai's string lists for a batch of one."""
        return [[s] for s in sections]

    def register_entropy_hooks(self) -> None:
        for module in self.modules():
            if type(module) in _ENTROPY_BUFFERS:
                module.register_load_state_dict_pre_hook(_resize_entropy_buffers)
        # Subclasses set this in training-mode forward passes: the tables no longer match the weights.
        self._tables_stale = False

    def ensure_entropy_tables(self) -> None:
        """Build the CDF tables when they are missing or training has changed the weights since."""
        empty = any(
            (isinstance(m, EntropyBottleneck) and m._offset.numel() == 0)
            or (isinstance(m, GaussianConditional) and m.scale_table.numel() == 0)
            for m in self.modules()
        )
        if empty or self._tables_stale:
            self.update(force=True)
            self._tables_stale = False

    def fingerprint(self) -> bytes:
        """8 bytes identifying this model exactly: its config and every weight and table, bit for bit.

        Files record it, so bytes are never decoded by a model whose tables or transforms differ
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
        """Move between devices but never change dtype: codecs run in float32 (see ``from_pretrained``)."""
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

        Folders missing some weights are refused (:class:`~.complete_weights.CompleteWeightsMixin`).
        """
        kwargs["low_cpu_mem_usage"] = False
        kwargs.pop("torch_dtype", None)
        kwargs.pop("dtype", None)
        return super().from_pretrained(*args, **kwargs)


# The mean-scale hyperprior (Minnen et al. 2018) on a latent y, for any module holding compressai's layout:
# h_a, h_s (giving scales and means), entropy_bottleneck (ẑ) and gaussian_conditional (ŷ).


def full_precision(x: Tensor) -> torch.autocast:
    """A block that runs in float32 under mixed precision (``torch.autocast``, e.g. accelerate's ``bf16``): the
    entropy models and the rounding. bfloat16 keeps about three digits: too few for a rate or for where a latent
    falls between two quantization steps. Outside autocast it changes nothing."""
    return torch.autocast(x.device.type, enabled=False)


def hyperprior_forward(m: nn.Module, y: Tensor, gain: Tensor | float = 1.0,
                       inverse_gain: Tensor | float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Training pass: ``ŷ`` (straight-through rounding, as at decode time) and the likelihoods of y and z, those in
    float32 under mixed precision (:func:`full_precision`). ``gain``/``inverse_gain``: a variable-rate codec's
    quantization step, ``(y − μ)·g`` is what gets rounded and coded."""
    z = m.h_a(y)
    with full_precision(y):
        z_hat, z_likelihoods = m.entropy_bottleneck(z.float())
    params = m.h_s(z_hat)
    with full_precision(y):
        y, (scales_hat, means_hat) = y.float(), params.float().chunk(2, 1)
        _, y_likelihoods = m.gaussian_conditional((y - means_hat) * gain, scales_hat * gain)
        y_hat = quantize_ste((y - means_hat) * gain) * inverse_gain + means_hat  # what the decoder will see
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}


def hyperprior_side(m: nn.Module, y: Tensor) -> tuple[list, torch.Size, Tensor, Tensor]:
    """Encoder half of the side information: z's strings, ẑ's size, and the ``(σ, μ)`` of y the decoder will see."""
    z = m.h_a(y)
    z_strings = m.entropy_bottleneck.compress(z)
    return (z_strings, z.size()[-2:], *hyperprior_params(m, z_strings, z.size()[-2:]))


PADDING_PASSES = 3
"""Passes of :func:`settle_padding`, each deriving z from the settled latent: 3 save about twice what 1 does (-7.9
vs -4.1 % bits at equal PSNR on 8 BSDS photos), 6 no more than 3 (benchmarks/results/padding)."""

PADDING_MARGIN = 8
"""Pixels between the image and the first latent :func:`settle_padding` settles: a latent drawing right next to the
image still shapes its last rows through ``g_s``. On Kodak images cut to leave 2-13 pixels between image and latent
grid, settling from 0 pixels on loses 0.044 dB at equal quality, from 8 on 0.003 dB, for nearly the same savings
(-2.4 vs -2.2 % bits at equal PSNR; benchmarks/results/padding)."""


def settle_padding(m: nn.Module, y: Tensor, image_size: tuple[int, int] | None, stride: int,
                   margin: int = PADDING_MARGIN, passes: int = PADDING_PASSES) -> tuple[Tensor, tuple]:
    """``y`` (one latent every ``stride`` pixels) of an image of ``image_size`` = (height, width) padded at the
    bottom and right, with the latents that draw padding alone set to the mean the hyperprior predicts for them,
    and the :func:`hyperprior_side` that goes with it.

    Coded as they come, padding's latents take as many bits as the image's (10 % of y's on 481 × 321 photos)
    for pixels the decoder crops away. At the predicted mean each is symbol 0 at any gain, the cheapest; each pass
    derives z from the settled latent, so the predicted scales there shrink too. Latents closer than
    ``margin`` pixels to the image are kept. The decoder is unchanged: it reads such a file like any other.
    ``image_size`` None: ``x`` is not padded, ``y`` is kept as it is."""
    if image_size is None:
        return y, hyperprior_side(m, y)
    outside = torch.ones(y.shape[-2:], dtype=torch.bool, device=y.device)
    outside[: -(-(image_size[0] + margin) // stride), : -(-(image_size[1] + margin) // stride)] = False
    if not outside.any():
        return y, hyperprior_side(m, y)
    for _ in range(max(passes, 1)):
        side = hyperprior_side(m, y)
        y = torch.where(outside, side[3], y)
    return y, side


def hyperprior_params(m: nn.Module, z_strings: list, shape) -> tuple[Tensor, Tensor]:
    """Decode ẑ and predict the scales and means of y from it (what encoder and decoder both compute)."""
    z_hat = m.entropy_bottleneck.decompress(z_strings, shape)
    scales_hat, means_hat = m.h_s(z_hat).chunk(2, 1)
    return scales_hat, means_hat


def hyperprior_compress(m: nn.Module, y: Tensor, gain: Tensor | float = 1.0, image_size: tuple[int, int] | None = None,
                        stride: int = 16) -> tuple[list, torch.Size]:
    """rANS-code ``y`` (and its side information z): ``([y_strings, z_strings], ẑ size)``.

    ``gain`` scales the centred latent before rounding (a quantisation step of ``1/gain``, the variable-rate
    codec's gain units); at 1 it is the plain mean-scale hyperprior. ``image_size``, ``stride``: as in
    :func:`settle_padding`, for a padded image.
    """
    y, (z_strings, shape, scales_hat, means_hat) = settle_padding(m, y, image_size, stride)
    return [code_y(m, y, scales_hat, means_hat, gain), z_strings], shape


def code_y(m: nn.Module, y: Tensor, scales_hat: Tensor, means_hat: Tensor, gain: Tensor | float = 1.0) -> list:
    """rANS-code ``(y − μ)·gain`` with the Gaussian of scale ``σ·gain``."""
    indexes = m.gaussian_conditional.build_indexes(scales_hat * gain)
    return m.gaussian_conditional.compress((y - means_hat) * gain, indexes)


def hyperprior_decompress(m: nn.Module, strings: list, shape, gain: Tensor | float = 1.0,
                          inverse_gain: Tensor | float = 1.0) -> Tensor:
    """Inverse of :func:`hyperprior_compress`: ``ŷ = symbols · inverse_gain + μ``."""
    scales_hat, means_hat = hyperprior_params(m, strings[1], shape)
    indexes = m.gaussian_conditional.build_indexes(scales_hat * gain)
    return m.gaussian_conditional.decompress(strings[0], indexes) * inverse_gain + means_hat
