"""Probe: can the fast decode average itself over flips of the latent (a "self-ensemble", as super-resolution
does)? Decodes the coded ŷ of the first 6 Kodak images as it is, and flipped before the synthesis transform and back
after (horizontal, vertical, both, transposed), at qualities 25 / 75 / 100, and prints the mean 8-bit PSNR of each
decode and of the means of several.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/results/unet_selection/session54/flip_ensemble/probe.py \
        rdc-bsds > shipped_codec.txt
"""

import sys

import numpy as np
import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.training import list_images

torch.set_num_threads(1)
codec = RDCPipeline.from_pretrained(sys.argv[1]).codec
FLIPS = {"as coded": (), "h-flip": (-1,), "v-flip": (-2,), "hv-flip": (-1, -2)}


scores: dict[int, list] = {}
with torch.no_grad():
    for path in list_images("../shared/data/kodak")[:6]:
        x, _ = to_tensor(open_image(path))
        for quality in (25, 75, 100):
            coded = codec.compress(x, quality)
            y_hat = codec.decode_latent(coded["strings"], coded["shape"], quality)
            decodes = {name: codec.g_s(y_hat.flip(dims) if dims else y_hat).clamp(0, 1) for name, dims in FLIPS.items()}
            decodes = {name: x_hat.flip(FLIPS[name]) if FLIPS[name] else x_hat for name, x_hat in decodes.items()}
            decodes["transposed"] = codec.g_s(y_hat.transpose(-1, -2)).clamp(0, 1).transpose(-1, -2)
            decodes["mean of as coded, h-flip"] = (decodes["as coded"] + decodes["h-flip"]) / 2
            decodes["mean of the four flips"] = sum(decodes[name] for name in FLIPS) / 4
            scores.setdefault(quality, []).append([psnr(x_hat, x) for x_hat in decodes.values()])
            print(path.name, quality, " ".join(f"{v:.2f}" for v in scores[quality][-1]), flush=True)
print("columns:", " | ".join(decodes))
for quality, values in scores.items():
    print(f"q{quality} mean PSNR", " ".join(f"{v:.3f}" for v in np.mean(values, 0)))
