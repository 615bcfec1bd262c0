"""Probe: refined LPIPS/PSNR at 1, 2 and 4 steps of the refiner at argv[1], 4 Kodak images, into the JSON argv[2].

    PYTHONPATH=src python benchmarks/results/refiner/steps_probe.py rdc-bsds OUT.json   (1 thread)
"""
import json
import sys
from pathlib import Path

import torch

from rdc_diffusers import RDCRefinerPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.training import list_images

torch.set_num_threads(1)
pipe = RDCRefinerPipeline.from_pretrained(sys.argv[1])
images = list_images(Path("../shared/data/kodak"))[:4]
res = {}
for fmt, q in [("jpeg", 10), ("jpeg", 35), ("webp", 20), ("avif", 20)]:
    for steps in [1, 2, 4]:
        ls, ps = [], []
        for p in images:
            img = open_image(p)
            x = to_tensor(img)[0]
            data = pipe.compress(img, format=fmt, quality=q)
            out = pipe.decompress(data, refine=steps > 0, num_inference_steps=max(steps, 1), output_type="pt").images
            ls.append(lpips(out, x).mean().item())
            ps.append((10 * torch.log10(1 / ((out - x) ** 2).mean())).item())
        res[f"{fmt}{q}_s{steps}"] = (sum(ls) / 4, sum(ps) / 4)
        print(fmt, q, steps, res[f"{fmt}{q}_s{steps}"], flush=True)
json.dump(res, open(sys.argv[2], "w"), indent=1)
