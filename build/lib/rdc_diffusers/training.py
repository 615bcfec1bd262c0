"""Reusable pieces of the training recipe: the image-crop dataset and the two stage losses."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .metrics.quality import psnr  # noqa: F401 (re-exported: the training script imports it from here)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(root: str | Path) -> list[Path]:
    """Image files directly inside ``root``, sorted so every process sees the same order."""
    files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return files


class ImageFolderDataset(torch.utils.data.Dataset):
    """Random ``crop_size`` crops with horizontal flips from a folder of photos.

    The photos are decoded once and kept in memory as uint8 (300 BSDS images take ~140 MB), so
    an epoch costs no JPEG decoding; ``repeat`` makes one epoch visit every photo several times.
    """

    def __init__(self, root: str | Path, crop_size: int = 128, repeat: int = 1):
        self.crop_size = crop_size
        self.repeat = repeat
        self.images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                       for p in list_images(root)]
        if any(min(im.shape[1:]) < crop_size for im in self.images):
            raise ValueError(f"every image in {root} must be at least {crop_size} px on each side")

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def __getitem__(self, index: int) -> Tensor:
        image = self.images[index % len(self.images)]
        _, h, w = image.shape
        top, left = random.randint(0, h - self.crop_size), random.randint(0, w - self.crop_size)
        crop = image[:, top:top + self.crop_size, left:left + self.crop_size]
        if random.random() < 0.5:
            crop = crop.flip(-1)
        return crop.float() / 255.0


def rate_distortion_loss(output: dict, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """Stage 1: ``bpp + λ·255²·MSE(x_init, x)``, the compressai convention for λ."""
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lk).sum() for lk in output["likelihoods"].values()) / (-math.log(2) * num_pixels)
    mse = F.mse_loss(output["x_init"], x)
    return {"loss": bpp + lmbda * 255**2 * mse, "bpp": bpp, "mse": mse}
