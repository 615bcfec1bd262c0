"""Probe: is the refiner's quality input calibrated? Refined LPIPS / PSNR with the input shifted by a constant.

    PYTHONPATH=src python benchmarks/results/refiner/quality_offset_probe.py DATA OUT.json jpeg:10,avif:20 -10,0,10

The first 8 images of DATA, 1 thread, the bundled refiner; the shift is added to ``BaseCodec.file_quality``.
"""
import json
import sys

import numpy as np
import torch

from rdc_diffusers import BaseCodec, RDCRefinerPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.training import list_images

torch.set_num_threads(1)
pipe = RDCRefinerPipeline.from_pretrained("rdc-bsds")
pipe.set_progress_bar_config(disable=True)
images = list_images(sys.argv[1])[:8]
file_quality = BaseCodec.file_quality.__func__
res = {}
for point in sys.argv[3].split(","):
    fmt, q = point.split(":")
    for shift in map(int, sys.argv[4].split(",")):
        BaseCodec.file_quality = classmethod(
            lambda cls, data, w, h, shift=shift: min(100.0, max(0.0, file_quality(cls, data, w, h) + shift)))
        scores = []
        for path in images:
            img = open_image(path)
            x = to_tensor(img)[0]
            out = pipe.decompress(pipe.compress(img, format=fmt, quality=int(q)), output_type="pt").images
            scores.append((lpips(out, x).item(), psnr(out, x)))
        res[f"{fmt}{q}_{shift:+d}"] = dict(zip(["lpips", "psnr"], np.mean(scores, axis=0).tolist(), strict=True))
        print(fmt, q, shift, res[f"{fmt}{q}_{shift:+d}"], flush=True)
json.dump(res, open(sys.argv[2], "w"), indent=1)
