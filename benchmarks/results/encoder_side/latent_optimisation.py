"""Probe: encoder-side latent optimisation (Campos et al. 2019; Yang et al. 2020, stochastic Gumbel annealing) on the
shipped codec, decoder unchanged, y and z optimised. Usage, from the repository root:

    python benchmarks/results/encoder_side/latent_optimisation.py IMAGE QUALITY ITERATIONS LR {sga,ste} [CROP]

Prints the real bytes (compressai's rANS) and PSNR of the plain encode, then every fifth of the run. The shipped
version (y only) is rdc_diffusers.models.latent_optimisation."""

import math
import sys
import time

import numpy as np
import torch
from compressai.ops import quantize_ste
from PIL import Image

sys.path.insert(0, "src")
from rdc_diffusers.models.codec import RDCCodec  # noqa: E402
from rdc_diffusers.models.entropy_coded import code_y, hyperprior_decompress, hyperprior_params  # noqa: E402

torch.set_num_threads(1)
codec = RDCCodec.from_pretrained("src/rdc_diffusers/bundled/rdc-bsds/codec").eval()
codec.ensure_entropy_tables()
for p in codec.parameters():
    p.requires_grad_(False)
path, quality, iters, lr = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
MODE = sys.argv[5] if len(sys.argv) > 5 else "ste"
CROP = int(sys.argv[6]) if len(sys.argv) > 6 else 0
x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
x = x[..., :CROP, :CROP] if CROP else x
npix = x.shape[-2] * x.shape[-1]
gain, igain = codec.gains(quality)
lmbda = codec.lmbda(torch.tensor(quality)).item()
eb, gc = codec.entropy_bottleneck, codec.gaussian_conditional
TAU = [0.5]


def sga(v, tau):
    """Stochastic Gumbel annealing (Yang et al. 2020): soft rounding that becomes hard as tau -> 0."""
    fl = torch.floor(v)
    r = (v - fl).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], -1) / tau
    return fl + torch.nn.functional.gumbel_softmax(logits, tau=1.0, hard=False)[..., 1]


def rnd(v):
    return sga(v, TAU[0]) if MODE == "sga" else quantize_ste(v)


def rd(y, z):
    med = eb._get_medians().view(1, -1, 1, 1)
    z_hat = quantize_ste(z - med) + med
    zl = eb._likelihood(z_hat.permute(1, 0, 2, 3).reshape(z_hat.shape[1], 1, -1))
    zl = eb.likelihood_lower_bound(zl[0] if isinstance(zl, tuple) else zl)
    scales, means = codec.h_s(z_hat).chunk(2, 1)
    v_hat = rnd((y - means) * gain)
    yl = gc.likelihood_lower_bound(gc._likelihood(v_hat, gc.lower_bound_scale(scales * gain)))
    x_hat = codec.g_s(v_hat * igain + means)
    return -(zl.log2().sum() + yl.log2().sum()) / npix, torch.mean((x_hat - x) ** 2)


@torch.no_grad()
def real(y, z):
    z_strings = eb.compress(z)
    scales, means = hyperprior_params(codec, z_strings, z.shape[-2:])
    ys = code_y(codec, y, scales, means, gain)
    y_hat = hyperprior_decompress(codec, [ys, z_strings], z.shape[-2:], gain, igain)
    x_hat = (codec.g_s(y_hat).clamp(0, 1) * 255).round() / 255
    return (len(ys[0]) + len(z_strings[0])) * 8 / npix, -10 * math.log10(torch.mean((x_hat - x) ** 2).item())


with torch.no_grad():
    y0 = codec.g_a(x)
    z0 = codec.h_a(y0)
print("init real", real(y0, z0), "lmbda", lmbda, flush=True)
y, z = y0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
opt = torch.optim.Adam([y, z], lr=lr)
t = time.time()
for i in range(iters):
    TAU[0] = max(0.5 * math.exp(-6.0 * i / iters), 0.01)
    for g in opt.param_groups:
        g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iters))
    bpp, mse = rd(y, z)
    loss = bpp + lmbda * 255**2 * mse
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (i + 1) % max(1, iters // 5) == 0:
        print(i + 1, f"{bpp.item():.4f} {10 * math.log10(1 / mse.item()):.3f}", real(y.detach(), z.detach()),
              f"{(time.time() - t) / (i + 1):.2f}s/it", flush=True)
