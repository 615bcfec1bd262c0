"""Rate, distortion, perception and speed of an :class:`RDCPipeline` and of classical codecs, per image.

Follows the protocol of docs/METHOD.md:

* **rate**: ``bpp = 8 · len(file) / (width · height)`` from the bytes actually written (the ``.rdc`` header, or
  the whole JPEG/WebP/AVIF file), never from likelihoods;
* **distortion**: PSNR on 8-bit RGB after rounding and clamping, MS-SSIM with ``data_range=1``
  (``NaN`` for images with a side below 161 px, see :mod:`rdc_diffusers.metrics.quality`);
* **perception**: LPIPS (AlexNet, v0.1); an ``ImportError`` naming what to install when its packages are missing;
  patch FID and KID following HiFiC (:mod:`rdc_diffusers.metrics.fid`): each record carries its image's
  ``patches`` count and, privately, the InceptionV3 features of its original and decoded patches
  (``_fid_real``/``_fid_fake``, never written to files); :func:`summarize` pools them per group (rate point) into
  ``fid``, ``kid``, ``kid_std`` and the total ``patches``. FID/KID exist only per set, never per image;
* **speed**: wall-clock seconds of one encode and of each decode; :func:`summarize` reports medians;
* **curves**: a variable-rate model is coded at several qualities (``evaluate_pipeline(..., quality=[...])``); each
  quality and decode is one summary entry (:func:`group_name`: ``"rdc-bsds/fast@q25"``) and all qualities of one
  decode are one curve (:func:`curve_name`: ``"rdc-bsds/fast"``). A classical codec is one entry per target rate and
  one curve per codec. Result files of the retired single-rate models (``rdc-bsds-q1/fast`` ...) still group and
  join as they did.

Every metric is computed on the 8-bit image a user would save: the pipeline's decoded tensor is rounded to
multiples of 1/255 first (exactly what ``output_type="pil"`` gives for RGB input), the classical codecs' output
is 8-bit already. The reference is ``to_tensor(open_image(path))``, i.e. the same pixels the encoder sees.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features
from tqdm.auto import tqdm

from ..bitstream.rdc import decode_file
from ..media.image_io import open_image, to_tensor
from ..metrics.quality import lpips, ms_ssim, psnr
from ..schedulers import scheduler_name
from .results import format_quality

CLASSICAL_CODECS = ("jpeg", "webp", "avif")
"""Codec names :func:`evaluate_classical` knows; ``avif`` only where Pillow was built with libavif."""

_RESERVED_DECODE_KEYS = ("output_type", "return_dict")


def check_metrics(fid: bool = True) -> None:
    """Load LPIPS (and with ``fid`` the InceptionV3) now: a missing package fails with an ImportError naming
    what to install before any image is coded. Both models are cached, so this costs nothing later."""
    from ..metrics.lpips import lpips_model

    lpips_model()
    if fid:
        from ..metrics.fid import inception_v3_features

        inception_v3_features()


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid (what saving as PNG does)."""
    return x.detach().float().clamp(0, 1).mul(255).round().div(255)


def _lpips(a: torch.Tensor, b: torch.Tensor) -> float:
    """LPIPS as a float; without its packages an ImportError names what to install (never a silent NaN)."""
    with torch.no_grad():
        return float(lpips(a, b)[0])


def _patch_features(reference: torch.Tensor, decoded: torch.Tensor) -> dict:
    """``patches`` and the InceptionV3 features of both images' HiFiC patches (the extractor caches features by
    content, so the original's are computed once for all its qualities and decodes)."""
    from ..metrics.fid import count_hific_patches, hific_patches, inception_v3_features

    patches = count_hific_patches(*reference.shape[-2:])
    if patches == 0:
        return {"patches": 0}
    extractor = inception_v3_features()  # without its packages: an ImportError naming what to install
    return {"patches": patches,
            "_fid_real": extractor(hific_patches(reference)).numpy(),
            "_fid_fake": extractor(hific_patches(decoded)).numpy()}


def measurements(reference: torch.Tensor, decoded: torch.Tensor, data: bytes, fid: bool, encode_s: float,
                  decode_s: float) -> dict:
    """What every record holds after naming its codec and setting: size, rate, scores and times."""
    height, width = reference.shape[-2:]
    reference, decoded = reference.cpu().float(), _quantize(decoded.cpu())
    return {"width": width, "height": height, "bytes": len(data), "bpp": 8 * len(data) / (width * height),
            "psnr": psnr(reference, decoded), "ms_ssim": ms_ssim(reference, decoded),
            "lpips": _lpips(reference, decoded), **(_patch_features(reference, decoded) if fid else {}),
            "encode_s": encode_s, "decode_s": decode_s}


def decode_name(scheduler: str | None, steps: int) -> str:
    """The ``decode`` name of a configuration: ``"fast"`` without refinement, else e.g. ``"ddim-4"``."""
    if steps == 0 or scheduler is None:
        return "fast"
    return f"{scheduler_name(scheduler)}-{steps}"


def _say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def evaluate_pipeline(
    pipe,
    paths: Iterable[str | Path],
    *,
    decodes: dict[str, dict],
    quality: float | Sequence[float] | None = None,
    method: str | None = None,
    seed: int = 0,
    fid: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    encoder_steps: int = 0,
) -> list[dict]:
    """Compress each image once per quality (with ``encoder_steps`` of latent optimisation, see
    ``RDCPipeline.compress``), decode the bytes once per named decode config, and score each decode.

    Args:
        pipe: an :class:`~rdc_diffusers.RDCPipeline` (its scheduler is used as it is; swap it between calls to
            compare schedulers).
        paths: image files.
        decodes: ``{name: keyword arguments of pipe.decompress}``, e.g.
            ``{"fast": {"refine": False}, "ddim-2": {"num_inference_steps": 2}}``.
        quality: the codec quality (0..100) to code at, or several (one rate point each, the points of one curve);
            default: the model's ``default_quality``.
        method: the ``method`` field of the records (default: ``pipe.model_name``).
        seed: the seed written into the files (the refinement noise).
        fid: extract the patch features FID/KID are computed from (the slowest metric on a CPU).
        progress: show a tqdm progress bar over the images.
        log: called with a one-line progress message per image, quality and decode (e.g. ``print``).

    Returns:
        One record per image, quality and decode (in that nesting): ``image, method, decode, quality, scheduler,
        steps, strength, width, height, bytes, bpp, psnr, ms_ssim, lpips, patches, encode_s, decode_s`` (+ the
        private features, see the module doc). ``quality`` is the one the file's header stores (rounded to
        hundredths); ``steps`` and ``strength`` are 0 for an unrefined decode and ``scheduler`` then ``None``;
        ``encode_s`` is the same single encode for every decode of an image at one quality. :func:`group_name`
        keys them ``"<method>/<decode>@q<quality>"`` and :func:`curve_name` puts all qualities of one decode on
        one curve.
    """
    for name, kwargs in decodes.items():
        bad = [k for k in _RESERVED_DECODE_KEYS if k in kwargs]
        if bad:
            raise ValueError(f"decode {name!r}: {', '.join(bad)} is set by evaluate_pipeline, leave it out")
    if quality is None:
        qualities = [pipe.config.default_quality]
    elif isinstance(quality, (int, float)):
        qualities = [quality]
    else:
        qualities = list(quality)
        if not qualities:
            raise ValueError("quality: give at least one quality (or None for the model's default)")
    method = pipe.model_name if method is None else method
    default_steps = pipe.config.default_num_inference_steps
    check_metrics(fid)
    records = []
    for path in tqdm(list(map(Path, paths)), desc=method, unit="image", disable=not progress):
        image = open_image(path)
        reference, _ = to_tensor(image)
        for wanted in qualities:
            start = time.perf_counter()
            data = pipe.compress(image, quality=wanted, seed=seed, encoder_steps=encoder_steps)
            encode_s = time.perf_counter() - start
            header = decode_file(data).header
            for name, kwargs in decodes.items():
                start = time.perf_counter()
                decoded = pipe.decompress(data, output_type="pt", **kwargs).images
                decode_s = time.perf_counter() - start
                refined = kwargs.get("refine", True)
                steps = kwargs.get("num_inference_steps")
                steps = (default_steps if steps is None else steps) if refined else 0
                strength = kwargs.get("strength", header.strength) if steps > 0 else 0.0
                steps = steps if strength > 0 else 0
                record = {
                    "image": path.name,
                    "method": method,
                    "decode": name,
                    "quality": header.quality,
                    "scheduler": type(pipe.scheduler).__name__ if steps > 0 else None,
                    "steps": steps,
                    "strength": strength,
                    **measurements(reference, decoded, data, fid, encode_s, decode_s),
                }
                records.append(record)
                _say(log, f"{method}/{name}@q{format_quality(header.quality)} {path.name}: {record['bpp']:.4f} bpp, "
                          f"{record['psnr']:.2f} dB, LPIPS {record['lpips']:.4f}, decode {decode_s:.2f} s")
    return records


def classical_available(codec: str) -> bool:
    """Whether Pillow can write ``codec`` here (JPEG always; WebP and AVIF depend on how Pillow was built)."""
    if codec not in CLASSICAL_CODECS:
        raise ValueError(f"codec must be one of {CLASSICAL_CODECS}, got {codec!r}")
    return codec == "jpeg" or bool(features.check(codec))


def _encode_classical(image: Image.Image, codec: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if codec == "jpeg":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    elif codec == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6)
    else:
        image.save(buffer, "AVIF", quality=quality, speed=6)
    return buffer.getvalue()


def evaluate_classical(
    paths: Iterable[str | Path],
    codec: str,
    target_bpp: float,
    *,
    fid: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Code each image with a classical codec at the highest rate not above ``target_bpp``, decode and score it.

    Pillow, in memory: JPEG with ``optimize=True`` (libjpeg-turbo, default 4:2:0 subsampling), WebP with
    ``method=6``, AVIF with ``speed=6`` (only where ``features.check("avif")``; otherwise ``RuntimeError``).
    The integer quality 0..100 (Pillow's whole range) is binary-searched per image for the highest quality
    whose file (all of it) is ``<= target_bpp``; this assumes the size grows with the quality, which holds for
    these encoders up to rare one-step wobbles. If even quality 0 is above the target (WebP averages 0.107 bpp
    on Kodak at quality 0), quality 0 is used and a warning is issued (the record's ``bpp`` then exceeds
    ``target_bpp``).

    For a curve, call it once per target rate (e.g. 0.1 to 1.0 bpp): every rate is its own ``decode`` group
    and :func:`curve_name` joins them into one curve per codec.

    Returns one record per image: ``image, method (codec), decode ("<=T bpp"), quality, target_bpp, width,
    height, bytes, bpp, psnr, ms_ssim, lpips, patches, encode_s, decode_s`` (times of the encode at the chosen quality
    and of decoding it).
    """
    if not classical_available(codec):
        raise RuntimeError(f"this Pillow cannot write {codec.upper()} (features.check({codec!r}) is False)")
    if not target_bpp > 0:
        raise ValueError(f"target_bpp must be > 0, got {target_bpp}")
    check_metrics(fid)
    records = []
    for path in tqdm(list(map(Path, paths)), desc=f"{codec} <={target_bpp:g} bpp", unit="image",
                     disable=not progress):
        reference, _ = to_tensor(open_image(path))
        height, width = reference.shape[-2:]
        pixels = reference[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
        cache: dict[int, tuple[bytes, float]] = {}

        def encode(quality: int, image: Image.Image = image, cache: dict = cache) -> bytes:
            if quality not in cache:
                start = time.perf_counter()
                data = _encode_classical(image, codec, quality)
                cache[quality] = (data, time.perf_counter() - start)
            return cache[quality][0]

        def rate(quality: int, width: int = width, height: int = height) -> float:
            return 8 * len(encode(quality)) / (width * height)

        if rate(0) > target_bpp:
            warnings.warn(f"{codec} {path.name}: quality 0 gives {rate(0):.4f} bpp, above the target "
                          f"{target_bpp:.4f}; using quality 0", stacklevel=2)
            best = 0
        else:
            best, high = 0, 100  # invariant: rate(best) <= target; every quality above `high` is over it
            while best < high:
                middle = (best + high + 1) // 2
                if rate(middle) <= target_bpp:
                    best = middle
                else:
                    high = middle - 1
        data, encode_s = cache[best]
        start = time.perf_counter()
        with Image.open(io.BytesIO(data)) as decoded_image:
            decoded_pixels = np.asarray(decoded_image.convert("RGB"))
        decode_s = time.perf_counter() - start
        decoded = torch.from_numpy(decoded_pixels.copy()).permute(2, 0, 1)[None].float() / 255
        record = {
            "image": path.name,
            "method": codec,
            "decode": f"<={target_bpp:.4f}bpp",
            "quality": best,
            "target_bpp": target_bpp,
            **measurements(reference, decoded, data, fid, encode_s, decode_s),
        }
        records.append(record)
        _say(log, f"{codec} {path.name}: q={best}, {record['bpp']:.4f} bpp, {record['psnr']:.2f} dB, "
                  f"LPIPS {record['lpips']:.4f}")
    return records
