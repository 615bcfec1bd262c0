"""Is the one-step residual under-scaled on the training distribution too? LPIPS/PSNR of x_init + s*r on
BSDS train crops (every tenth photo, one 256² crop each, as the training script draws them) with and without its
random zoom (--max-upscale 1.6), s = 1 and 1.25, one DDIM step, seed 0. Session 52's one-off; like session 50's
probe it lifts the API's strength <= 1 check for itself only.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/results/unet_selection/session52/strength_vs_zoom/probe.py \
        > benchmarks/results/unet_selection/session52/strength_vs_zoom/shipped_unet.txt
"""
import random
import sys

import torch

import rdc_diffusers.pipelines.pipeline_rdc as m
from rdc_diffusers import RDCPipeline
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.training import ImageFolderDataset, psnr

m.check_strength = lambda s: round(float(s), 2)
torch.set_num_threads(1)
pipe = RDCPipeline.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else "src/rdc_diffusers/bundled/rdc-bsds")
pipe.set_progress_bar_config(disable=True)
for zoom in (1.0, 1.6):
    random.seed(0)
    torch.manual_seed(0)
    ds = ImageFolderDataset("../shared/data/train", 256, max_upscale=zoom)
    crops = [ds[i] for i in range(0, 300, 10)]
    for q in (50, 90):
        res = {}
        for x in crops:
            f = pipe.compress(x, quality=q, seed=0)
            for s in (1.0, 1.25):
                y = pipe.decompress(f, output_type="pt", strength=s).images
                res.setdefault(s, []).append((psnr(y, x[None]), lpips(y, x[None]).item()))
        means = {s: [sum(col) / len(v) for col in zip(*v, strict=True)] for s, v in res.items()}
        print(f"zoom {zoom} q{q} " + " | ".join(f"s{s}: psnr {p:.3f} lpips {lp:.5f}" for s, (p, lp) in means.items()),
              flush=True)
