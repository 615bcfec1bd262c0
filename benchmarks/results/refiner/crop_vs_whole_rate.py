"""Probe: the rate of 128² crops coded alone (as the refiner trains) against the whole photo coded once (as it is
used), at equal quality settings, and the quality input each gives (``BaseCodec.rate_quality``).

    PYTHONPATH=src python benchmarks/results/refiner/crop_vs_whole_rate.py > crop_vs_whole_rate.txt

Every 10th training photo (30), each cut into its whole grid of 128² crops.
"""
import numpy as np

from rdc_diffusers import BaseCodec
from rdc_diffusers.media.image_io import open_image
from rdc_diffusers.training import list_images


def payload_bpp(image, fmt: str, quality: int) -> float:
    return 8 * BaseCodec.payload_bytes(BaseCodec.encode(image, fmt, quality)) / (image.width * image.height)


photos = [open_image(p).convert("RGB") for p in list_images("../shared/data/train")[::10][:30]]
for fmt, qualities in [("jpeg", [10, 35, 60]), ("webp", [5, 20, 60]), ("avif", [5, 20, 50])]:
    for quality in qualities:
        whole, crops = [], []
        for img in photos:
            whole.append(payload_bpp(img, fmt, quality))
            crops.append(np.mean([payload_bpp(img.crop((x, y, x + 128, y + 128)), fmt, quality)
                                  for y in range(0, img.height - 127, 128) for x in range(0, img.width - 127, 128)]))
        whole, crops = np.array(whole), np.array(crops)
        print(f"{fmt} {quality}: crop / whole bpp median {np.median(crops / whole):.3f}; quality input whole "
              f"{BaseCodec.rate_quality(whole).mean():.1f}, crops {BaseCodec.rate_quality(crops).mean():.1f}")
