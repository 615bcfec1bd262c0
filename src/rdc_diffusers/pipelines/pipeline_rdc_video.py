"""RDCVideoPipeline: a clip to one ``.rdcv`` file (I- and P-frames), decoded fast or refined without flicker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from ..bitstream.rdcv import RDCVFile, RDCVHeader, check_models, decode_video_file, encode_video_file
from ..errors import RDCFormatError, UnsupportedImageError, UnsupportedVideoError
from ..hub.pretrained import model_name, resolve_model, safetensors_only, unknown_model_message
from ..limits import check_decode_size, check_encode_size, check_file_steps, check_stored_steps
from ..media.image_io import crop_to, pad_to_multiple, to_output, to_tensor
from ..models.codec import RDCCodec, check_quality
from ..models.inter_codec import RDCInterCodec
from ..models.residual_unet import ResidualUNet
from ..schedulers import TEMPORAL_NOISE
from .pipeline_rdc import RDCPipeline
from .refinement import ResidualRefinementMixin

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from rdc_diffusers import RDCVideoPipeline
        >>> from rdc_diffusers.media.video_io import read_video

        >>> pipe = RDCVideoPipeline.from_pretrained("rdc-bsds")
        >>> clip = read_video("BasketballPass_416x240", fps=50)
        >>> data = pipe.compress(clip.frames, fps=clip.fps, gop_size=8)    # one .rdcv file, real rANS bytes
        >>> fast = pipe.decompress(data, refine=False).frames               # codecs only
        >>> refined = pipe.decompress(data).frames                          # + residual diffusion, shared noise
        ```
"""


@dataclass
class RDCVideoPipelineOutput(BaseOutput):
    """Decoded frames, their types and bits (per frame, from the bytes of its sections), and the file."""

    frames: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    frame_types: list[str]
    frame_bpp: list[float]
    bpp: float  # the whole file (header and CRC included) over all frames' pixels
    fps: Fraction
    data: bytes


class RDCVideoPipeline(ResidualRefinementMixin, DiffusionPipeline):
    r"""Residual diffusion video codec: I-frames by the image codec, P-frames by a scale-space-flow inter codec.

    .. code-block:: none

        compress:    frame 0, gop, 2·gop, …  ─codec─►        I sections (ŷ, ẑ)
                     the others              ─inter_codec(x, x̂_prev)─► P sections (motion, residual)
        decompress:  x̂_t = codec / inter_codec decode (the reference of t + 1)        refine=False stops here
                     ŷ_t = the image codec's latent of x̂_t (its own, for I-frames; re-analysed for P-frames)
                     x̂_t ← x̂_t + r_t,  r_t sampled by scheduler × unet(·, x̂_t, ŷ_t) from noise n_t

    Temporal consistency comes from the noise: with ``temporal_noise="shared"`` (default) every frame starts
    from the same noise field, so where the decoded frames agree the sampled residuals agree too, and the
    refinement adds no flicker of its own; ``"independent"`` draws new noise per frame (per-frame refinement,
    the flicker baseline). Both are deterministic: the seed is in the file.

    Components:
        codec ([`RDCCodec`]): I-frames, and ŷ of every frame for the unet.
        inter_codec ([`RDCInterCodec`]): P-frames.
        unet ([`ResidualUNet`]), scheduler ([`SchedulerMixin`]): the residual refinement, as in [`RDCPipeline`].
    """

    model_cpu_offload_seq = "codec->inter_codec->unet"

    def __init__(
        self,
        codec: RDCCodec,
        inter_codec: RDCInterCodec,
        unet: ResidualUNet,
        scheduler: SchedulerMixin,
        default_num_inference_steps: int = 1,
    ):
        super().__init__()
        if codec.alignment % inter_codec.alignment or codec.alignment % unet.alignment:
            raise ValueError("the inter codec and the unet must accept the image codec's frame alignment")
        self.register_modules(codec=codec, inter_codec=inter_codec, unet=unet, scheduler=scheduler)
        self.register_to_config(default_num_inference_steps=default_num_inference_steps)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> RDCVideoPipeline:
        """Load a saved video pipeline, or an image model folder / Hub repo with an ``inter_codec`` subfolder.

        The bundled image models carry their inter codec in ``inter_codec/``, so ``"rdc-bsds"`` names
        both, and the image codec and unet are stored once.
        """
        kwargs = safetensors_only(kwargs)
        path = resolve_model(pretrained_model_name_or_path)
        hub_kwargs = {k: v for k, v in kwargs.items() if k in ("cache_dir", "token", "revision", "local_files_only")}
        try:
            config = cls.load_config(path, **hub_kwargs)
        except OSError as err:  # a mistyped bundled name: list the bundled ones, not the Hub client's cache error
            if "/" in str(path) or Path(path).exists():
                raise
            from huggingface_hub import constants

            offline = bool(kwargs.get("local_files_only")) or constants.HF_HUB_OFFLINE
            raise OSError(unknown_model_message(path, offline=offline)) from err
        if "inter_codec" not in kwargs and "inter_codec" not in config:
            try:
                kwargs["inter_codec"] = RDCInterCodec.from_pretrained(path, subfolder="inter_codec", **hub_kwargs)
            except OSError as err:
                raise ValueError(f"{pretrained_model_name_or_path} has no inter codec (no inter_codec/ folder): it "
                                 "is an image-only model; use RDCPipeline") from err
        return super().from_pretrained(path, **kwargs)

    @property
    def model_name(self) -> str:
        """A readable name for messages and file headers: the folder's name, or the Hub repo id."""
        return model_name(self.name_or_path)

    @property
    def quality(self) -> float:
        """The image codec's quality for the I-frames: the one the P-frame codec was trained to continue from."""
        return check_quality(self.inter_codec.config.quality)

    def image_pipeline(self) -> RDCPipeline:
        """The same codec, unet and scheduler as an [`RDCPipeline`] (shared modules, no copies)."""
        pipe = RDCPipeline(codec=self.codec, unet=self.unet, scheduler=self.scheduler,
                           default_num_inference_steps=self.config.default_num_inference_steps,
                           default_quality=self.quality)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @torch.no_grad()
    def compress(
        self,
        frames: Iterable,
        *,
        fps: Fraction | float = 25,
        gop_size: int = 8,
        quality: float | None = None,
        seed: int = 0,
        num_inference_steps: int | None = None,
        max_pixels: float | None = None,
    ) -> bytes:
        """Encode a clip (PIL images, arrays or tensors of one size, in any iterable: frames are read one at a
        time, so an iterator such as ``open_video(path).frames`` streams) into ``.rdcv`` bytes.

        Every ``gop_size``-th frame is an I-frame; the others are P-frames predicted from the previous
        *decoded* frame, which the encoder reconstructs exactly as the decoder will. The P-frame codec has a
        single rate, so clips are coded at the one quality it was trained for (:attr:`quality`); asking for
        another raises ``ValueError``. Frames above ``max_pixels`` (default
        ``rdc_diffusers.limits.MAX_IMAGE_PIXELS``) raise [`UnsupportedImageError`].
        """
        if quality is not None and check_quality(quality) != self.quality:
            raise ValueError(f"this video model codes clips at quality {self.quality:g} only (its P-frame codec "
                             f"has a single rate), got quality={quality!r}")
        if gop_size < 1:
            raise ValueError(f"gop_size must be >= 1, got {gop_size}")
        check_stored_steps(self.config.default_num_inference_steps if num_inference_steps is None
                           else num_inference_steps, self.scheduler.config.num_train_timesteps)
        device = self.codec.device
        types, sections, x_ref = [], [], None
        for i, frame in enumerate(self.progress_bar(frames)):  # a bar per frame (quiet if disabled)
            x, _ = to_tensor(frame)
            if i == 0:
                height, width = x.shape[-2:]
                check_encode_size(width, height, max_pixels)
            elif x.shape[-2:] != (height, width):
                raise UnsupportedImageError(f"frame {i} is {x.shape[-1]}x{x.shape[-2]}, frame 0 is {width}x{height}: "
                                            "all frames of a clip must have one size")
            x = pad_to_multiple(x, self.codec.alignment).to(device)
            if i % gop_size == 0:
                coded = self.codec.compress(x, self.quality, image_size=(height, width))
                x_ref = self.codec.decompress(coded["strings"], coded["shape"], self.quality)["x_init"]
                types.append("I")
            else:
                coded = self.inter_codec.compress(x, x_ref, image_size=(height, width))
                x_ref = self.inter_codec.decompress(coded["strings"], coded["shape"], x_ref)["x_hat"]
                types.append("P")
            sections.append(self.codec.to_sections(coded["strings"]))
        if not types:
            raise UnsupportedVideoError("a clip needs at least one frame")
        header = RDCVHeader(
            width=width, height=height, fps=Fraction(fps).limit_denominator(1001 * 1000), gop_size=gop_size,
            codec_id=self.codec.fingerprint(), inter_codec_id=self.inter_codec.fingerprint(),
            model_name=self.model_name, seed=seed,
            num_inference_steps=self.config.default_num_inference_steps if num_inference_steps is None
            else num_inference_steps,
        )
        return encode_video_file(RDCVFile(header=header, frame_types=tuple(types), sections=tuple(sections)))

    @torch.no_grad()
    def decompress(
        self,
        data: bytes,
        *,
        refine: bool = True,
        num_inference_steps: int | None = None,
        temporal_noise: str = "shared",
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
        max_pixels: float | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["residual"],  # noqa: B006 (diffusers' signature)
    ) -> RDCVideoPipelineOutput | tuple:
        r"""Decode ``.rdcv`` bytes into frames, all in memory (:meth:`decode_frames` gives them one at a time).

        Args:
            data: the file's bytes.
            refine: refine each frame with the residual diffusion model; ``False`` returns the codecs' frames.
            num_inference_steps: sampling steps per frame; default: the value stored in the file.
            temporal_noise: ``"shared"`` or ``"independent"`` (see the class docstring).
            generator: overrides the seed stored in the file.
            eta: DDIM's η (ignored by other schedulers).
            output_type: ``"pil"`` (a list of images), ``"np"`` (float32 ``[T, H, W, 3]``) or ``"pt"``
                (``[T, 3, H, W]``), all in [0, 1].
            return_dict: return an [`RDCVideoPipelineOutput`] instead of a tuple.
            max_pixels: refuse files whose frames are larger, before decoding anything; default
                ``rdc_diffusers.limits.MAX_IMAGE_PIXELS``, ``math.inf`` for no limit.
            callback_on_step_end: called as ``callback(pipe, i, t, {"residual": r_t})`` after each sampling step
                of each refined frame; may return a dict replacing ``residual``.

        Raises:
            RDCFormatError: the bytes are truncated, corrupted or not an ``.rdcv`` file, or were written by
                other models ([`RDCModelMismatchError`]), or claim frames above ``max_pixels``
                ([`DecompressionBombError`]).
        """
        file, frames = self._open(data, refine, num_inference_steps, temporal_noise, generator, eta, "pt", max_pixels,
                                  callback_on_step_end, callback_on_step_end_tensor_inputs)
        frames = to_output(torch.cat(list(frames)), output_type, "RGB")
        header = file.header
        pixels = header.width * header.height
        frame_bpp = [8 * sum(len(s) for s in sections) / pixels for sections in file.sections]
        bpp = 8 * len(data) / (pixels * len(file.frame_types))
        self.maybe_free_model_hooks()
        result = (frames, list(file.frame_types), frame_bpp, bpp, header.fps, bytes(data))
        return RDCVideoPipelineOutput(*result) if return_dict else result

    def decode_frames(
        self,
        data: bytes,
        *,
        refine: bool = True,
        num_inference_steps: int | None = None,
        temporal_noise: str = "shared",
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        max_pixels: float | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["residual"],  # noqa: B006 (diffusers' signature)
    ) -> Iterator:
        """The frames of ``.rdcv`` bytes one at a time, as they are decoded: memory stays flat in the clip length.

        The file is checked now (format, models, size: the errors of :meth:`decompress`); each frame is decoded
        when the iterator reaches it. Frames come as a ``PIL.Image`` (``output_type="pil"``) or a ``[1, 3, H, W]``
        tensor in [0, 1] (``"pt"``). Arguments as in :meth:`decompress`.
        """
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt' for frames one at a time, got {output_type!r}")
        return self._open(data, refine, num_inference_steps, temporal_noise, generator, eta, output_type,
                          max_pixels, callback_on_step_end, callback_on_step_end_tensor_inputs)[1]

    def _open(self, data: bytes, refine: bool, num_inference_steps: int | None, temporal_noise: str, generator,
              eta: float, output_type: str, max_pixels: float | None, callback_on_step_end: Callable | None,
              callback_on_step_end_tensor_inputs: list[str]) -> tuple:
        """The parsed, checked file and the iterator over its frames (both decode methods start here, so the
        bytes are parsed once)."""
        if temporal_noise not in TEMPORAL_NOISE:
            raise ValueError(f"temporal_noise must be one of {TEMPORAL_NOISE}, got {temporal_noise!r}")
        file = decode_video_file(data)
        header = file.header
        check_decode_size(header.width, header.height, max_pixels, what="the clip (per frame)")
        check_models(header, self.codec.fingerprint(), self.inter_codec.fingerprint(), self.model_name)
        steps = header.num_inference_steps if num_inference_steps is None else num_inference_steps
        if refine and num_inference_steps is None:
            check_file_steps(steps)
        refinement = {"num_inference_steps": steps, "eta": eta, "callback_on_step_end": callback_on_step_end,
                      "callback_on_step_end_tensor_inputs": callback_on_step_end_tensor_inputs}
        return file, self._frames(file, refine and steps > 0, refinement, temporal_noise, generator, output_type)

    @torch.no_grad()
    def _frames(self, file, refine: bool, refinement: dict, temporal_noise: str, generator,
                output_type: str) -> Iterator:
        header = file.header
        if refine and generator is None:
            generator = torch.Generator("cpu").manual_seed(header.seed)
        shape = self.codec.z_shape(header.height, header.width)
        x_ref, noise = None, None
        frames = list(zip(file.frame_types, file.sections, strict=True))
        for i, (kind, sections) in enumerate(self.progress_bar(frames)):
            strings = self.codec.from_sections(sections)
            try:
                if kind == "I":
                    decoded = self.codec.decompress(strings, shape, self.quality)
                    x_ref, y_hat = decoded["x_init"], decoded["y_hat"]
                else:
                    x_ref = self.inter_codec.decompress(strings, shape, x_ref)["x_hat"]
            except (RuntimeError, ValueError, IndexError) as err:
                raise RDCFormatError(f"frame {i}: entropy decoding failed: {err}") from err
            x_hat = x_ref
            if refine:
                if kind == "P":  # the unet is conditioned on the image codec's latent of this frame
                    y_hat = self.codec.latent(x_ref, self.quality)
                if noise is None or temporal_noise == "independent":
                    noise = randn_tensor(x_ref.shape, generator=generator, device=torch.device("cpu"))
                x_hat = self.denoise(x_ref, y_hat, self.quality, generator=generator, noise=noise, progress=False,
                                     **refinement)
            frame = crop_to(x_hat.clamp(0, 1), header.height, header.width).cpu()
            yield frame if output_type == "pt" else to_output(frame, "pil", "RGB")[0]

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        frames: Iterable,
        *,
        fps: Fraction | float = 25,
        gop_size: int = 8,
        quality: float | None = None,
        seed: int = 0,
        refine: bool = True,
        num_inference_steps: int | None = None,
        temporal_noise: str = "shared",
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
    ) -> RDCVideoPipelineOutput | tuple:
        """Compress then decompress a clip: the frames a viewer of the file would see, and its bits.

        Examples:
        """
        data = self.compress(frames, fps=fps, gop_size=gop_size, quality=quality, seed=seed,
                             num_inference_steps=num_inference_steps)
        return self.decompress(data, refine=refine, temporal_noise=temporal_noise, output_type=output_type,
                               return_dict=return_dict, callback_on_step_end=callback_on_step_end)
