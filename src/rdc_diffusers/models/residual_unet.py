"""The residual denoiser: a diffusers UNet2DModel that predicts r = x − x_init, conditioned on ŷ and x_init."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DModel, UNet2DOutput
from torch import Tensor, nn

from .complete_weights import CompleteWeightsMixin

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _to_weight_dtype(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: cast the input to the module's dtype. UNet2DModel casts the sinusoidal embedding of the
    timestep to its dtype but not that of ``class_labels`` (always float32), so a float16 UNet would fail."""
    return tuple(a.to(module.linear_1.weight.dtype) for a in args)


class ResidualUNet(CompleteWeightsMixin, ModelMixin, ConfigMixin):
    r"""Denoiser of the residual ``r = x − x_init`` in the second stage of the RDC decoder.

    .. code-block:: none

        ŷ (M, H/16) ─conv3×3─SiLU─conv1×1─PixelShuffle(16/s)─► c_ŷ (cond_channels, H/s)
        x_init      ─·2−1─PixelUnshuffle(s)────────────────► (3s², H/s)
        r_t         ─PixelUnshuffle(s)─────────────────────► (3s², H/s)
                          concat ─► UNet2DModel(t, quality) ─► (3s², H/s) ─PixelShuffle(s)─► r̂

    Why this shape:

    * **Conditioning at the input, at 1/s resolution.** ``x_init = g_s(ŷ)`` already carries ŷ's
      content at pixel resolution; what the raw latent adds is where quantisation threw detail away.
      A 1×1 convolution followed by a sub-pixel shuffle is a learned upsampler that runs at 1/16
      resolution and costs almost nothing, unlike CDC's full multi-scale feature pyramid.
    * **Pixel-unshuffle by ``s``** (default 2): every UNet layer runs on s² fewer positions while no
      pixel is thrown away; full-resolution processing is what makes a pixel-space UNet slow on a CPU.
    * **No attention** (``DownBlock2D``/``UpBlock2D``, ``add_attention=False``): attention dominated
      the CPU cost in measurements and the residual is a local signal.
    * **The quality as a second timestep.** One UNet serves every rate of the variable-rate codec, and how
      much detail quantisation removed depends on the rate; the quality (0–100, ×10 to span the timestep
      range) goes through the same sinusoidal embedding as t (diffusers' ``class_embed_type="timestep"``)
      and is added to the time embedding. Its last layer starts at zero, so a UNet trained without it
      warm-starts unchanged.

    ``residual=False`` builds the CDC-style baseline of the ablation (Yang & Mandt 2023): the same UNet
    generates the image itself from ŷ alone — no ``x_init`` input — as ``r = (x − ½)·residual_scale``
    around a constant grey base. It exists to measure what the residual formulation buys.

    The UNet sees the residual multiplied by ``residual_scale`` (≈ 1/std of r on training data), so
    the scheduler's unit-variance noise matches its scale. ``prediction_type`` must equal the
    scheduler's; the pipeline checks it.
    """

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 192,
        cond_channels: int = 16,
        downscale: int = 2,
        block_out_channels: tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        prediction_type: str = "sample",
        residual_scale: float = 1.0,
        residual: bool = True,
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if 16 % downscale:
            raise ValueError(f"downscale must divide 16 (the latent's stride), got {downscale}")
        upscale = 16 // downscale
        self.cond = nn.Sequential(
            nn.Conv2d(latent_channels, 64, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(64, cond_channels * upscale**2, 1),
            nn.PixelShuffle(upscale),
        )
        self.unshuffle = nn.PixelUnshuffle(downscale)
        self.shuffle = nn.PixelShuffle(downscale)
        depth = len(block_out_channels)
        self.unet = UNet2DModel(
            in_channels=(2 if residual else 1) * 3 * downscale**2 + cond_channels,
            out_channels=3 * downscale**2,
            block_out_channels=block_out_channels,
            down_block_types=("DownBlock2D",) * depth,
            up_block_types=("UpBlock2D",) * depth,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            add_attention=False,
            class_embed_type="timestep",
        )
        nn.init.zeros_(self.unet.class_embedding.linear_2.weight)
        nn.init.zeros_(self.unet.class_embedding.linear_2.bias)
        self.unet.class_embedding.register_forward_pre_hook(_to_weight_dtype)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load, then move every tensor into freshly allocated memory.

        diffusers hands over the weights where safetensors put them, at other memory alignments than
        freshly built parameters, and the CPU convolution kernels then sum in another order: the refined
        pixels of a model and of its reloaded copy would differ by ~3e-6. Copying makes them bit-identical.
        Folders missing some weights are refused (:class:`~.complete_weights.CompleteWeightsMixin`).
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
        return loaded

    @property
    def alignment(self) -> int:
        """Height and width must be multiples of this (unshuffle, then one halving per extra level)."""
        return self.config.downscale * 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | int,
        x_init: Tensor,
        y_hat: Tensor,
        quality: Tensor | float,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple:
        """Predict (per ``prediction_type``) from the noisy scaled residual ``sample`` at ``timestep``.

        ``x_init`` is in [0, 1] at the resolution of ``sample`` (unused when ``residual=False``);
        ``y_hat`` is the decoded latent and ``quality`` (one per image, or one for all) the rate it was coded at.
        """
        pixels = [self.unshuffle(sample)] + ([self.unshuffle(x_init * 2 - 1)] if self.config.residual else [])
        inputs = torch.cat([*pixels, self.cond(y_hat)], dim=1)
        quality = torch.as_tensor(quality, dtype=torch.float32, device=sample.device).reshape(-1)
        out = self.shuffle(self.unet(inputs, timestep, class_labels=10 * quality.expand(sample.shape[0])).sample)
        return UNet2DOutput(sample=out) if return_dict else (out,)

    def base(self, x_init: Tensor) -> Tensor:
        """What the sampled ``r / residual_scale`` is added to: ``x_init``, or mid-grey for the CDC-style model."""
        return x_init if self.config.residual else torch.full_like(x_init, 0.5)
