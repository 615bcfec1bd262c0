"""RDCPipeline: compress an image to bytes, decode them fast (x_init) or refined (x_init + sampled residual)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from ..bitstream.rdc import RDCFile, RDCHeader, check_model, decode_file, encode_file
from ..errors import RDCFormatError
from ..hub.pretrained import model_name, resolve_model, safetensors_only
from ..limits import check_decode_size, check_encode_size, check_file_steps, check_stored_steps
from ..media.image_io import crop_to, icc_profile, pad_to_multiple, to_output, to_tensor, warn_if_transparent
from ..models.codec import MAX_QUALITY, MIN_QUALITY, RDCCodec, check_quality
from ..models.residual_unet import ResidualUNet
from ..rate_control import byte_budget, search_quality
from ..tiling import choose_tile_size, tiled
from .refinement import ResidualRefinementMixin

DEFAULT_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "clip_sample": False,
    # "trailing" makes the first of few steps start at t = T, where training put pure noise.
    "timestep_spacing": "trailing",
}
"""Scheduler settings the bundled models were trained with; add the unet's ``prediction_type``."""

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from diffusers import DPMSolverMultistepScheduler
        >>> from PIL import Image
        >>> from rdc_diffusers import RDCPipeline

        >>> pipe = RDCPipeline.from_pretrained("rdc-bsds")
        >>> data = pipe.compress(Image.open("kodim23.png"), quality=50)  # real rANS bytes
        >>> small = pipe.compress(Image.open("kodim23.png"), target_bpp=0.2)  # the best quality that fits
        >>> fast = pipe.decompress(data, refine=False).images[0]         # fidelity decoder only
        >>> pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        >>> refined = pipe.decompress(data, num_inference_steps=4).images[0]
        >>> closer = pipe.decompress(data, strength=0.5).images[0]       # halfway between fast and refined
        ```
"""


def check_strength(strength: float) -> float:
    """``strength`` rounded to hundredths (as files store it); ``ValueError`` outside [0, 1], ``TypeError`` if not
    a number."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength must be a number in [0, 1], got {strength!r}")
    if not 0 <= strength <= 1:  # also refuses NaN
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    return round(float(strength), 2)


@dataclass
class RDCPipelineOutput(BaseOutput):
    """Decoded images, the bits per pixel of each file (counted from its bytes) and the files themselves."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    bpp: list[float]
    data: list[bytes]


class RDCPipeline(ResidualRefinementMixin, DiffusionPipeline):
    r"""Residual diffusion codec (arXiv 2505.13152): a learned codec plus a diffusion model of its error.

    .. code-block:: none

        compress:    x, quality ─codec.compress─► rANS bytes (.rdc file: header with the quality, ŷ and ẑ, CRC)
        decompress:  bytes ─codec.decompress─► ŷ, x_init
                     refine=False: x̂ = x_init
                     refine=True:  r_T ~ N(0, I) (seeded from the file) ─scheduler × unet(·, t, x_init, ŷ, q)─► r_0
                                   x̂ = clamp(x_init + s · r_0 / residual_scale, 0, 1), s = strength

    ``strength`` s ∈ [0, 1] is the decode-time fidelity ↔ realism knob: 0 is the fast decode, 1 the full sample.
    Why a scaled residual: x_init is the distortion-trained (≈ MMSE) estimate and x_init + r a sample of the
    posterior, and the estimators on the distortion-perception curve between those two ends are their convex
    combinations (Freirich, Michaeli, Meir, "A Theory of the Distortion-Perception Tradeoff in Wasserstein
    Space", NeurIPS 2021): (1 − s)·x_init + s·(x_init + r). It costs nothing at decode time, works at any step
    count (a late start, as diffusers' img2img ``strength``, would leave one step with nothing to vary), and
    the curve it traces is measured by ``benchmarks/perception.py``.

    Components:
        codec ([`RDCCodec`]): analysis/synthesis transforms and the entropy models; decides the bytes, at any
            quality in [0, 100] (``default_quality`` when none is asked for).
        unet ([`ResidualUNet`]): denoiser of the residual ``x − x_init``.
        scheduler ([`SchedulerMixin`]): a diffusers scheduler of ``rdc_diffusers.schedulers.SCHEDULERS`` (DDIM,
            DPM-Solver, Euler, UniPC, …); the unet's prediction is converted to the one the scheduler takes.

    The file records an 8-byte fingerprint of the codec, so a file is only decoded by the codec that
    wrote it; the unet and the scheduler may be swapped freely and change only the refinement.
    """

    model_cpu_offload_seq = "codec->unet"

    def __init__(
        self,
        codec: RDCCodec,
        unet: ResidualUNet,
        scheduler: SchedulerMixin,
        default_num_inference_steps: int = 4,
        default_quality: float = 50.0,
        default_strength: float = 1.0,
    ):
        super().__init__()
        if codec.alignment % unet.alignment:
            raise ValueError(f"the unet needs sizes in multiples of {unet.alignment}, which must divide "
                             f"the codec's {codec.alignment}")
        self.register_modules(codec=codec, unet=unet, scheduler=scheduler)
        self.register_to_config(default_num_inference_steps=default_num_inference_steps,
                                default_quality=check_quality(default_quality),
                                default_strength=check_strength(default_strength))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> RDCPipeline:
        """Load from a folder, a Hub repo id or the name of a bundled model; safetensors only."""
        return super().from_pretrained(resolve_model(pretrained_model_name_or_path), **safetensors_only(kwargs))

    def save_pretrained(self, save_directory: str | Path, *, push_to_hub: bool = False,
                        model_card: str | None = None, repo_id: str | None = None, **kwargs) -> None:
        """diffusers' save, plus README.md (the model card; ``model_card`` text, else rendered from the config)
        and ``pipeline.py`` for ``custom_pipeline`` loading; ``push_to_hub=True`` uploads the folder as saved."""
        from ..hub import upload as hub

        upload_kwargs = {k: kwargs.pop(k) for k in ("token", "private", "commit_message", "create_pr") if k in kwargs}
        super().save_pretrained(save_directory, **kwargs)
        repo_id = repo_id or (str(save_directory).split(os.path.sep)[-1] if push_to_hub else None)
        hub.write_model_files(self, save_directory, model_card=model_card, repo_id=repo_id)
        if push_to_hub:
            hub.upload(save_directory, repo_id, **upload_kwargs)

    def push_to_hub(self, repo_id: str, *, model_card: str | None = None, **kwargs):
        """Upload weights, configs, the model card and ``pipeline.py`` to ``repo_id`` (huggingface_hub)."""
        from ..hub import upload as hub

        return hub.push_to_hub(self, repo_id, model_card=model_card, **kwargs)

    @property
    def model_name(self) -> str:
        """A readable name for messages and file headers: the folder's name, or the Hub repo id."""
        return model_name(self.name_or_path)

    @torch.no_grad()
    def compress(
        self,
        image,
        *,
        quality: float | None = None,
        target_bpp: float | None = None,
        seed: int = 0,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        max_pixels: float | None = None,
        tile_size: int | None = None,
        encoder_steps: int = 0,
    ) -> bytes:
        """Encode one image (PIL, numpy or torch; any size, any common PIL mode) into ``.rdc`` bytes.

        Args:
            quality: the rate, a number in [0, 100] (higher: more bits and fidelity), rounded to hundredths
                and stored in the file; default ``pipe.config.default_quality``.
            target_bpp: rate control instead of a quality: the highest quality whose whole file is at most
                ``target_bpp`` bits per pixel (``8 · len(bytes) / pixels``), found in at most ~8 encodes of the
                latent (the transforms run once). Raises [`RateTargetError`] when even quality 0 is larger.
            seed, num_inference_steps, strength: stored as the file's refinement defaults, so every decoder of
                the file draws the same noise and produces the same pixels (defaults: 0 and the pipeline's
                ``default_num_inference_steps`` and ``default_strength``).
            max_pixels: refuse larger images with [`UnsupportedImageError`]; default
                ``rdc_diffusers.limits.MAX_IMAGE_PIXELS`` (33.2 MP), ``math.inf`` for no limit.
            tile_size: run the analysis transform over tiles of this many pixels (a multiple of 64), bounding
                its memory; default: 512 above 4.2 MP (``rdc_diffusers.tiling``), 0: never.
            encoder_steps: optimise the latent for this image over that many steps before coding it
                (``rdc_diffusers.models.latent_optimisation``): fewer bits for the same PSNR at about 1.6 s a
                step for a 768×512 image on one CPU core (measured: benchmarks/results/encoder_steps). The file and
                its decoding are the same as without. With ``target_bpp`` the quality is searched with the plain
                encoder and the optimised file kept only if it still fits. 0 (default): no optimisation.
        """
        if quality is not None and target_bpp is not None:
            raise ValueError("give either quality or target_bpp, not both")
        if isinstance(encoder_steps, bool) or not isinstance(encoder_steps, int) or encoder_steps < 0:
            raise ValueError(f"encoder_steps must be a whole number >= 0, got {encoder_steps!r}")
        check_stored_steps(self.config.default_num_inference_steps if num_inference_steps is None
                           else num_inference_steps, self.scheduler.config.num_train_timesteps)
        x, mode = to_tensor(image)
        warn_if_transparent(image, "an .rdc file")
        profile = icc_profile(image)  # stored, so the decode is shown in the image's colour space
        height, width = x.shape[-2:]
        check_encode_size(width, height, max_pixels)
        # The codec's own device, not _execution_device: under enable_model_cpu_offload the codec stays on the
        # CPU (its compress/decompress are not forward, so the offload hooks never move it).
        x = pad_to_multiple(x, self.codec.alignment)
        tile = choose_tile_size(tile_size, *x.shape[-2:], self.codec.alignment)
        analysis = self.codec.analyse(x.to(self.codec.device), tile_size=tile, progress=self.progress_bar,
                                      image_size=(height, width))
        header = RDCHeader(
            width=width,
            height=height,
            mode=mode,
            model_id=self.codec.fingerprint(),
            model_name=self.model_name,
            seed=seed,
            num_inference_steps=self.config.default_num_inference_steps if num_inference_steps is None
            else num_inference_steps,
            quality=0.0,
            strength=self.config.default_strength if strength is None else check_strength(strength),
        )

        def encode(q: float, steps: int = 0) -> bytes:
            out = self.codec.code_latent(analysis, q, encoder_steps=steps)
            return encode_file(RDCFile(header=replace(header, quality=check_quality(q)),
                                       sections=self.codec.to_sections(out["strings"]), icc_profile=profile))

        if target_bpp is None:
            return encode(self.config.default_quality if quality is None else quality, encoder_steps)
        max_bytes = byte_budget(target_bpp, width, height)
        search = search_quality(encode, max_bytes, lowest=MIN_QUALITY, highest=MAX_QUALITY,
                                start=self.config.default_quality)
        optimised = encode(search.quality, encoder_steps) if encoder_steps else search.data
        return optimised if len(optimised) <= max_bytes else search.data

    @torch.no_grad()
    def decompress(
        self,
        data: bytes,
        *,
        refine: bool = True,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["residual"],  # noqa: B006 (diffusers' signature)
        max_pixels: float | None = None,
        tile_size: int | None = None,
    ) -> RDCPipelineOutput | tuple:
        r"""Decode ``.rdc`` bytes.

        Args:
            data: the file's bytes.
            refine: sample the residual with the diffusion model; ``False`` returns ``x_init`` (fast).
            num_inference_steps: sampling steps; default: the value stored in the file.
            strength: how much of the sampled residual to add, in [0, 1] (0: the fast decode, 1: the full
                sample; see the class docstring); default: the value stored in the file.
            generator: overrides the seed stored in the file (then the output is no longer the one
                every other decoder of the file sees).
            eta: DDIM's η (ignored by other schedulers).
            output_type: ``"pil"``, ``"np"`` (float32 NHWC in [0, 1]) or ``"pt"`` (NCHW in [0, 1]).
            return_dict: return an [`RDCPipelineOutput`] instead of a tuple.
            callback_on_step_end: called as ``callback(pipe, i, t, {"residual": r_t})`` after each step;
                may return a dict replacing ``residual``.
            max_pixels: refuse files whose header claims more pixels, before decoding anything; default
                ``rdc_diffusers.limits.MAX_IMAGE_PIXELS`` (33.2 MP), ``math.inf`` for no limit.
            tile_size: decode tile by tile: the synthesis transform and the whole refinement of each overlapping
                tile of this many pixels (a multiple of 64; seen with 128 more on each side, blended into one
                output), so memory is bounded by the tile; default: 512 above 4.2 MP, 0: never. Tiled, the
                callback is called for each tile's steps.

        Raises:
            RDCFormatError: the bytes are truncated, corrupted, not an ``.rdc`` file, or written by
                another codec (then [`RDCModelMismatchError`], naming both models), or claim a size above
                ``max_pixels`` ([`DecompressionBombError`]).
        """
        # 1. Parse the container and check that this codec wrote it.
        file = decode_file(data)
        header = file.header
        check_decode_size(header.width, header.height, max_pixels)
        check_model(header, self.codec.fingerprint(), self.model_name)

        # 2. Entropy-decode ŷ (small: 1/16 of the image per side).
        shape = self.codec.z_shape(header.height, header.width)
        try:
            y_hat = self.codec.decode_latent(self.codec.from_sections(file.sections), shape, header.quality)
        except (RuntimeError, ValueError, IndexError) as err:
            raise RDCFormatError(f"entropy decoding failed: {err}") from err

        # 3. The fidelity decoder and the sampled residual, on the whole image or tile by tile.
        steps = header.num_inference_steps if num_inference_steps is None else num_inference_steps
        if refine and num_inference_steps is None:
            check_file_steps(steps)
        strength = header.strength if strength is None else check_strength(strength)
        padded = [side * self.codec.alignment for side in shape]
        noise = None
        if refine and steps > 0 and strength > 0:
            if generator is None:
                generator = torch.Generator("cpu").manual_seed(header.seed)
            noise = randn_tensor([y_hat.shape[0], 3, *padded], generator=generator, device=self._execution_device,
                                 dtype=self.unet.dtype)

        def decode(y_hat: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
            x_init = self.codec.g_s(y_hat).clamp_(0, 1)
            if noise is None:
                return x_init
            x_hat = self.denoise(x_init, y_hat, header.quality, num_inference_steps=steps, generator=generator,
                                noise=noise, eta=eta, progress=tile is None, callback_on_step_end=callback_on_step_end,
                                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
            if strength == 1:
                return x_hat
            x_init = x_init.to(x_hat.device)
            return x_init + strength * (x_hat - x_init)

        inputs = [y_hat] if noise is None else [y_hat, noise]
        tile = choose_tile_size(tile_size, *padded, self.codec.alignment)
        if tile is None:
            x_hat = decode(*inputs)
        else:  # whole decodes per tile: only the tile's activations and one image-sized output buffer live
            x_hat = tiled(decode, inputs, scales=[16, 1][: len(inputs)], out_scale=1, progress=self.progress_bar,
                          **self.codec.tiles(tile))
        del inputs, noise  # the image-sized noise, before the output conversion's copies

        # 4. Crop the padding away and convert.
        x_hat = crop_to(x_hat.clamp_(0, 1), header.height, header.width)
        images = to_output(x_hat.cpu(), output_type, header.mode, file.icc_profile)
        bpp = [8 * len(data) / (header.width * header.height)]
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, bpp, [bytes(data)]
        return RDCPipelineOutput(images=images, bpp=bpp, data=[bytes(data)])

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image,
        *,
        quality: float | None = None,
        target_bpp: float | None = None,
        seed: int = 0,
        refine: bool = True,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
    ) -> RDCPipelineOutput | tuple:
        r"""Compress then decompress one image or a list of images: what a user of the codec would see.

        The decoded images come from the bytes (nothing is shared between encoder and decoder), and
        ``bpp`` is ``8 · len(bytes) / pixels``. Arguments as in :meth:`compress` and :meth:`decompress`.
        For a list input with ``output_type`` "np" or "pt", ``images`` is a list with one array per
        image, since the sizes may differ.

        Examples:
        """
        images = image if isinstance(image, list) else [image]
        results = []
        for item in images:
            data = self.compress(item, quality=quality, target_bpp=target_bpp, seed=seed,
                                 num_inference_steps=num_inference_steps, strength=strength)
            results.append(self.decompress(
                data, refine=refine, generator=generator, eta=eta, output_type=output_type,
                callback_on_step_end=callback_on_step_end,
            ))
        if not isinstance(image, list):
            decoded = results[0].images
        elif output_type == "pil":
            decoded = [im for r in results for im in r.images]
        else:  # sizes may differ, so one array per image
            decoded = [r.images[0] for r in results]
        bpp = [b for r in results for b in r.bpp]
        data = [d for r in results for d in r.data]
        if not return_dict:
            return decoded, bpp, data
        return RDCPipelineOutput(images=decoded, bpp=bpp, data=data)
