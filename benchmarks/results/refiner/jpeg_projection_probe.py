"""Probe: does the refined JPEG decode leave the file's quantisation bins? Its luma, blockwise DCT, clipped to
[(k − ½)Q, (k + ½)Q] around each coefficient index k of the file (Q: the file's luma table), back to RGB.

    PYTHONPATH=src python benchmarks/results/refiner/jpeg_projection_probe.py DATA 10,35 OUT.json

The first 8 images of DATA (cut to multiples of 16 px), 1 thread, the bundled refiner.
"""
import io
import json
import sys

import numpy as np
import torch
from PIL import Image
from scipy.fft import dctn, idctn

from rdc_diffusers import RDCRefinerPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.training import list_images

YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
"""JFIF's RGB -> YCbCr (Cb, Cr around 0 here)."""


def blocks(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def unblocks(b: np.ndarray) -> np.ndarray:
    return b.transpose(0, 2, 1, 3).reshape(b.shape[0] * 8, b.shape[1] * 8)


def projected(refined: torch.Tensor, data: bytes) -> torch.Tensor:
    """``refined`` with its luma's DCT coefficients clipped to the bins of the file's."""
    jpeg = Image.open(io.BytesIO(data))
    table = np.array(jpeg.quantization[0], dtype=np.float64).reshape(8, 8)  # Pillow: natural order
    jpeg.draft("YCbCr", jpeg.size)  # the decoder's own luma, before colour conversion
    index = np.round(dctn(blocks(np.array(jpeg)[..., 0] - 128.0), axes=(2, 3), norm="ortho") / table)
    ycc = refined[0].permute(1, 2, 0).double().numpy() * 255 @ YCC.T
    coefficients = dctn(blocks(ycc[..., 0] - 128), axes=(2, 3), norm="ortho")
    coefficients = np.clip(coefficients, (index - 0.5) * table, (index + 0.5) * table)
    ycc[..., 0] = unblocks(idctn(coefficients, axes=(2, 3), norm="ortho")) + 128
    rgb = np.clip(ycc @ np.linalg.inv(YCC).T, 0, 255).round() / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float()


torch.set_num_threads(1)
pipe = RDCRefinerPipeline.from_pretrained("rdc-bsds")
pipe.set_progress_bar_config(disable=True)
res = {}
for q in map(int, sys.argv[2].split(",")):
    rows = []
    for path in list_images(sys.argv[1])[:8]:
        img = open_image(path).convert("RGB")
        img = img.crop((0, 0, img.width - img.width % 16, img.height - img.height % 16))
        x = to_tensor(img)[0]
        data = pipe.compress(img, format="jpeg", quality=q)
        plain = pipe.decompress(data, refine=False, output_type="pt").images
        refined = pipe.decompress(data, output_type="pt").images
        outs = (plain, refined, projected(refined, data))
        rows.append([lpips(o, x).item() for o in outs] + [psnr(o, x) for o in outs])
    keys = [f"{m}_{d}" for m in ("lpips", "psnr") for d in ("plain", "refined", "projected")]
    res[f"jpeg{q}"] = dict(zip(keys, np.mean(rows, axis=0).tolist(), strict=True))
    print(q, res[f"jpeg{q}"], flush=True)
json.dump(res, open(sys.argv[3], "w"), indent=1)
