"""RDCRefinerPipeline: standard JPEG / WebP / AVIF files as the fidelity layer, refined by residual diffusion."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from ..hub.pretrained import resolve_model, safetensors_only
from ..limits import check_decode_size, check_encode_size
from ..media.image_io import crop_to, icc_profile, pad_to_multiple, to_output, to_tensor, warn_if_transparent
from ..media.standard_codecs import check_format, upright
from ..models.base_codec import BaseCodec
from ..models.residual_unet import ResidualUNet
from ..rate_control import byte_budget, search_quality
from ..tiling import OVERLAP, choose_tile_size, tiled
from .pipeline_rdc import RDCPipelineOutput, check_strength
from .refinement import ResidualRefinementMixin

REFINER_FOLDER = "refiner"
"""Where an image model folder keeps its refiner (a whole pipeline folder)."""

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from PIL import Image
        >>> from rdc_diffusers import RDCRefinerPipeline

        >>> pipe = RDCRefinerPipeline.from_pretrained("rdc-bsds")  # its refiner/ folder
        >>> data = pipe.compress(Image.open("kodim23.png"), format="avif", quality=30)  # a plain .avif file
        >>> plain = pipe.decompress(data, refine=False).images[0]    # what any viewer shows
        >>> refined = pipe.decompress(open("photo.jpg", "rb").read()).images[0]  # any JPEG, WebP or AVIF
        ```
"""


class RDCRefinerPipeline(ResidualRefinementMixin, DiffusionPipeline):
    r"""Residual diffusion on top of a standard codec: the file stays a JPEG, WebP or AVIF that every browser shows,
    and a receiver that wants more realism refines its decode (DIRAC, Ghouse et al. 2023).

    .. code-block:: none

        compress:    x ─Pillow─► .jpg / .webp / .avif bytes (nothing added)
        decompress:  bytes ─Pillow─► x_init;  ŷ = codec.g_a(x_init);  q = file_quality(bytes)
                     refine=True: r_T ~ N(0, I) (seeded) ─scheduler × unet(·, t, x_init, ŷ, q)─► r_0
                                  x̂ = clamp(x_init + s · r_0 / residual_scale, 0, 1), s = strength

    The same [`ResidualUNet`] class as [`RDCPipeline`], trained on base-codec decodes; ``strength`` as there.
    ``max_refined_bpp`` (format -> bpp of coded pixels): above it a file is returned as decoded, because the refiner
    was measured to make such files worse (``examples/refiner_ceiling.py``); a lossless WebP always is.

    Components:
        codec ([`BaseCodec`]): Pillow's encoders and decoders, and the learned analysis transform.
        unet ([`ResidualUNet`]), scheduler ([`SchedulerMixin`]): the refinement, as in [`RDCPipeline`].
    """

    model_cpu_offload_seq = "codec->unet"

    def __init__(
        self,
        codec: BaseCodec,
        unet: ResidualUNet,
        scheduler: SchedulerMixin,
        default_format: str = "avif",
        default_quality: int = 50,
        default_num_inference_steps: int = 1,
        default_strength: float = 1.0,
        max_refined_bpp: dict[str, float] | None = None,
    ):
        super().__init__()
        self.register_modules(codec=codec, unet=unet, scheduler=scheduler)
        self.register_to_config(default_format=check_format(default_format), default_quality=int(default_quality),
                                default_num_inference_steps=default_num_inference_steps,
                                default_strength=check_strength(default_strength),
                                max_refined_bpp={check_format(k): float(v) for k, v in (max_refined_bpp or {}).items()})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> RDCRefinerPipeline:
        """Load from a folder, a Hub repo id or the name of a bundled model; safetensors only.

        An image model folder with a ``refiner/`` subfolder (the bundled ``"rdc-bsds"``) names its refiner, as it
        names its video inter codec: one name for the whole model family.
        """
        path = resolve_model(pretrained_model_name_or_path)
        if (Path(path) / REFINER_FOLDER / "model_index.json").exists():
            path = Path(path) / REFINER_FOLDER
        elif Path(path).is_dir() and cls.load_config(path).get("_class_name") != cls.__name__:
            raise ValueError(f"{pretrained_model_name_or_path} has no refiner (no {REFINER_FOLDER}/ folder): it is "
                             "an image model; RDCPipeline decodes its .rdc files")
        return super().from_pretrained(path, **safetensors_only(kwargs))

    @torch.no_grad()
    def compress(self, image, *, format: str | None = None, quality: int | None = None,
                 target_bpp: float | None = None, max_pixels: float | None = None) -> bytes:
        """Encode one image as a standard ``format`` file (``"jpeg"``, ``"webp"``, ``"avif"``; default
        ``config.default_format``) at Pillow's ``quality`` 0..100, or at the highest quality whose file is at most
        ``target_bpp`` bits per pixel (raises [`RateTargetError`] when quality 0 is larger). The file keeps a PIL
        image's ICC profile, and its transparency unless it is a JPEG."""
        if quality is not None and target_bpp is not None:
            raise ValueError("give either quality or target_bpp, not both")
        format = check_format(self.config.default_format if format is None else format)
        x, mode = to_tensor(image)
        if format == "jpeg":
            warn_if_transparent(image, "a JPEG file")
        height, width = x.shape[-2:]
        check_encode_size(width, height, max_pixels)
        picture = to_output(x, "pil", mode, icc_profile(image))[0]  # the file keeps the image's colour space
        if format != "jpeg" and isinstance(image, Image.Image) and image.has_transparency_data:
            picture.putalpha(image.convert("RGBA").getchannel("A"))  # WebP and AVIF hold transparency, JPEG not

        def encode(q: float) -> bytes:
            return self.codec.encode(picture, format, round(q))

        if target_bpp is None:
            quality = self.config.default_quality if quality is None else quality
            if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
                raise ValueError(f"quality must be an integer in 0..100 (Pillow's), got {quality!r}")
            return encode(quality)
        max_bytes = byte_budget(target_bpp, width, height)
        return search_quality(encode, max_bytes, lowest=0, highest=100, start=self.config.default_quality,
                              step=1).data

    @torch.no_grad()
    def decompress(
        self,
        data: bytes,
        *,
        refine: bool = True,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["residual"],  # noqa: B006 (diffusers' signature)
        max_pixels: float | None = None,
        tile_size: int | None = None,
    ) -> RDCPipelineOutput | tuple:
        r"""Decode a JPEG, WebP or AVIF file, refined or not (``refine=False``: Pillow's decode, as any viewer; a
        lossless WebP, or a file above the refiner's ``max_refined_bpp``, is returned as decoded, with a
        ``UserWarning`` saying why if refining was asked).

        The stored pixels are refined (where the codec's blocks lie), then turned by the file's EXIF orientation;
        PIL images carry its ICC profile and its transparency (WebP, AVIF: ``RGBA`` / ``LA``, alpha as decoded;
        ``"np"`` and ``"pt"`` are colour only): the result is shown as viewers show the file.

        Args:
            data: the file's bytes.
            num_inference_steps, strength: default ``config.default_num_inference_steps`` and
                ``config.default_strength`` (a standard file stores neither).
            seed: the noise seed (the file stores none): the same seed gives the same pixels; ``generator``
                overrides it.
            eta, output_type, return_dict, callback_on_step_end: as in [`RDCPipeline.decompress`].
            max_pixels: refuse larger images before decoding their pixels; default
                ``rdc_diffusers.limits.MAX_IMAGE_PIXELS``.
            tile_size: refine tile by tile (the analysis transform and every step of each overlapping tile), as
                [`RDCPipeline.decompress`] does; default: 512 above 4.2 MP, 0: never.

        Raises:
            RDCFormatError: the bytes are not a readable JPEG, WebP or AVIF file, or hold more than ``max_pixels``
                ([`DecompressionBombError`]).
        """
        format, width, height = self.codec.probe(data)
        check_decode_size(width, height, max_pixels)
        x_init, mode, alpha = self.codec.decode(data)
        steps = self.config.default_num_inference_steps if num_inference_steps is None else num_inference_steps
        strength = self.config.default_strength if strength is None else check_strength(strength)
        refine = refine and steps > 0 and strength > 0
        if refine and (reason := self.not_refined(data, format, width, height)):
            warnings.warn(f"{reason}: returned as decoded", UserWarning, stacklevel=3)  # past no_grad
            refine = False
        if refine:
            device = self._execution_device
            x = pad_to_multiple(x_init, self.codec.alignment).to(device)
            quality = self.codec.file_quality(data, width, height)
            if generator is None:
                generator = torch.Generator("cpu").manual_seed(seed)
            noise = randn_tensor(x.shape, generator=generator, device=device, dtype=self.unet.dtype)
            tile = choose_tile_size(tile_size, *x.shape[-2:], self.codec.alignment)

            def refined(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
                return self.denoise(x, self.codec(x.to(self.codec.dtype)), quality, num_inference_steps=steps,
                                    generator=generator, noise=noise, eta=eta, progress=tile is None,
                                    callback_on_step_end=callback_on_step_end,
                                    callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)

            if tile is None:
                x_hat = refined(x, noise)
            else:  # the analysis transform and the refinement of each tile: memory bounded by the tile
                x_hat = tiled(refined, [x, noise], scales=[1, 1], out_scale=1, tile=tile,
                              overlap=min(OVERLAP, tile), align=self.codec.alignment, progress=self.progress_bar)
            x_hat = crop_to(x + strength * (x_hat - x), height, width)
        else:
            x_hat = x_init
        orientation, profile = self.codec.viewing(data)  # shown as viewers show the file
        images = to_output(upright(x_hat.clamp(0, 1).cpu(), orientation), output_type, mode, profile)
        if alpha is not None and output_type == "pil":  # the file's transparency, untouched: refining is colour's
            mask = Image.fromarray(upright(alpha, orientation)[0, 0].numpy())
            for image in images:
                image.putalpha(mask)
        bpp = [8 * len(data) / (width * height)]
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, bpp, [bytes(data)]
        return RDCPipelineOutput(images=images, bpp=bpp, data=[bytes(data)])

    def not_refined(self, data: bytes, format: str, width: int, height: int) -> str | None:
        """Why a refinement of the file would not improve it, or None (it would)."""
        if self.codec.lossless(data):
            return "a lossless WebP holds its pixels exactly"
        rate = self.codec.payload_bpp(data, width, height)
        ceiling = (self.config.max_refined_bpp or {}).get(format)
        if ceiling is not None and rate > ceiling:
            return (f"this {format.upper()} file's pixels take {rate:.2f} bpp, above the {ceiling:.2f} bpp where this "
                    f"refiner stops improving {format.upper()} files (its max_refined_bpp)")
        return None

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(self, image, *, format: str | None = None, quality: int | None = None,
                 target_bpp: float | None = None, refine: bool = True, num_inference_steps: int | None = None,
                 strength: float | None = None, seed: int = 0, output_type: str = "pil",
                 return_dict: bool = True) -> RDCPipelineOutput | tuple:
        """Compress to a standard file, then decode it refined: what a receiver of the file would see.

        Examples:
        """
        data = self.compress(image, format=format, quality=quality, target_bpp=target_bpp)
        return self.decompress(data, refine=refine, num_inference_steps=num_inference_steps, strength=strength,
                               seed=seed, output_type=output_type, return_dict=return_dict)
