"""Probe: a UNet's sampled residual scaled past strength 1 (x_init + s * r), all 24 Kodak images at qualities 50 / 75 /
100, one DDIM step, seed 0, patch FID/KID as in the tables. The public API refuses s > 1; this probe lifts that
check for itself only, to measure whether the residual is under-scaled.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/results/unet_selection/session50/strength_past_one/probe.py \
        rdc-bsds out.json 1 1.25 1.5 > session47_unet.txt   # (the lines starting with "q")
"""

import json
import sys

import torch

import rdc_diffusers.pipelines.pipeline_rdc as m
from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.results import summarize
from rdc_diffusers.evaluation.scoring import evaluate_pipeline
from rdc_diffusers.training import list_images

m.check_strength = lambda s: round(float(s), 2)  # the probe only: allow s > 1
torch.set_num_threads(1)
model, out = sys.argv[1], sys.argv[2]
strengths = [float(s) for s in sys.argv[3:]]
pipe = RDCPipeline.from_pretrained(model)
pipe.set_progress_bar_config(disable=True)
paths = list_images("../shared/data/kodak")[:24]
decodes = {f"s{s:g}": {"num_inference_steps": 1, "strength": s} for s in strengths}
records = evaluate_pipeline(pipe, paths, decodes=decodes, quality=[50, 75, 100], seed=0, fid=True, progress=True)
summary = summarize(records, fid=True)
rows = sorted(summary.values(), key=lambda e: (e["quality"], e["strength"]))
for e in rows:
    print(
        f"q{e['quality']:g} s{e['strength']:g} bpp {e['bpp']:.4f} psnr {e['psnr']:.3f} lpips {e['lpips']:.5f} "
        f"fid {e['fid']:.2f} kid {e['kid']:.4f}"
    )
json.dump(rows, open(out, "w"), indent=1, default=str)
