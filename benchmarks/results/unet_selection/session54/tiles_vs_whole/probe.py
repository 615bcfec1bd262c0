"""Probe: does the residual UNet's GroupNorm meet other statistics on whole Kodak images than on its 128² training
crops? Refines the first 12 Kodak images whole and as independent, non-overlapping 128² and 256² tiles (the same
noise, one DDIM step) at qualities 25 and 75, and prints the mean 8-bit PSNR and LPIPS of each.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/results/unet_selection/session54/tiles_vs_whole/probe.py \
        rdc-bsds > shipped_unet.txt
"""

import sys

import numpy as np
import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.training import list_images

torch.set_num_threads(1)
pipe = RDCPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
codec = pipe.codec


def score(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    x_hat = (x_hat.clamp(0, 1) * 255).round() / 255
    return psnr(x_hat, x), lpips(x_hat, x).item()


def refine(x_init: torch.Tensor, y_hat: torch.Tensor, noise: torch.Tensor, quality: float, tile: int | None):
    if tile is None:
        return pipe.denoise(x_init, y_hat, quality, num_inference_steps=1, noise=noise, progress=False)
    out = torch.zeros_like(x_init)
    for i in range(0, x_init.shape[-2], tile):
        for j in range(0, x_init.shape[-1], tile):
            window = (..., slice(i, i + tile), slice(j, j + tile))
            latent = (..., slice(i // 16, (i + tile) // 16), slice(j // 16, (j + tile) // 16))
            out[window] = pipe.denoise(x_init[window], y_hat[latent], quality, num_inference_steps=1,
                                       noise=noise[window], progress=False)
    return out


scores: dict[tuple[float, str], list] = {}
with torch.no_grad():
    for path in list_images("../shared/data/kodak")[:12]:
        x, _ = to_tensor(open_image(path))
        for quality in (25, 75):
            coded = codec.compress(x, quality)
            y_hat = codec.decode_latent(coded["strings"], coded["shape"], quality)
            x_init = codec.g_s(y_hat).clamp(0, 1)
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            decodes = {"fast": x_init} | {name: refine(x_init, y_hat, noise, quality, tile)
                                          for name, tile in (("whole", None), ("tiles128", 128), ("tiles256", 256))}
            for name, x_hat in decodes.items():
                scores.setdefault((quality, name), []).append(score(x_hat, x))
        print(path.name, {f"q{q} {n}": tuple(round(v, 4) for v in s[-1]) for (q, n), s in scores.items()}, flush=True)
for (quality, name), values in sorted(scores.items()):
    mean_psnr, distance = np.mean(values, 0)
    print(f"q{quality} {name:8s} PSNR {mean_psnr:.3f} LPIPS {distance:.4f}")
