"""Probe: encoder-side deadzone rounding (symbols rounded towards zero by DELTA, decoder unchanged) on the shipped
codec. Usage, from the repository root:

    python benchmarks/results/encoder_side/deadzone.py IMAGES DELTAS QUALITIES   (e.g. 4 0,0.05,0.1 10,50,90)

Means over the first IMAGES Kodak images, real bytes (compressai's rANS)."""

import glob
import math
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, "src")
from rdc_diffusers.models.codec import RDCCodec  # noqa: E402
from rdc_diffusers.models.entropy_coded import hyperprior_decompress, hyperprior_side  # noqa: E402

torch.set_num_threads(1)
codec = RDCCodec.from_pretrained("src/rdc_diffusers/bundled/rdc-bsds/codec").eval()
codec.ensure_entropy_tables()
gc = codec.gaussian_conditional
paths = sorted(glob.glob("../shared/data/kodak/*.png"))[: int(sys.argv[1])]
deltas = [float(d) for d in sys.argv[2].split(",")]
qualities = [float(q) for q in sys.argv[3].split(",")]
res = {}
with torch.no_grad():
    for p in paths:
        x = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        y = codec.g_a(x)
        z_strings, shape, scales, means = hyperprior_side(codec, y)
        for q in qualities:
            gain, igain = codec.gains(q)
            for d in deltas:
                v = (y - means) * gain
                sym = torch.sign(v) * torch.clamp(torch.floor(v.abs() + 0.5 - d), min=0)
                s = gc.compress(sym, gc.build_indexes(scales * gain))  # integers: compress() rounds them unchanged
                y_hat = hyperprior_decompress(codec, [s, z_strings], shape, gain, igain)
                xh = (codec.g_s(y_hat).clamp(0, 1) * 255).round() / 255
                bpp = 8 * (len(s[0]) + len(z_strings[0])) / (x.shape[-1] * x.shape[-2])
                r = res.setdefault((q, d), [0, 0])
                r[0] += bpp / len(paths)
                r[1] += -10 * math.log10(torch.mean((xh - x) ** 2).item()) / len(paths)
for (q, d), (b, ps) in sorted(res.items()):
    b0, p0 = res[(q, 0.0)]
    print(f"q{q:g} delta {d:.2f}: {b:.4f} bpp {ps:.3f} dB  dbits {100 * (b / b0 - 1):+.2f}%  dPSNR {ps - p0:+.3f}  "
          f"~net {100 * (b / b0 - 1) - 100 * (ps - p0) / 3.3:+.2f}% (slope 3.3 dB/e-fold)", flush=True)
