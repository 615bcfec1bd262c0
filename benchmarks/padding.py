"""Bits on padding: what coding the latents of padding alone as their predicted mean saves (``settle_padding``).

    python benchmarks/padding.py [--model rdc-bsds] [--data ../shared/data/bsds_test] [--limit 8] [--crop]
        [--margins 0 4 8 16] [--passes 1 3 6] [--out benchmarks/results/padding]

The codec sees images padded to multiples of 64; the plain encoder codes the latents of that padding like the
image's, though the decoder crops their pixels away. Each image (with ``--crop``, first cut by 18, 26, 37 or 45
pixels at the bottom and right, in turn, so the padding sits at various distances from the latent grid) is
analysed once plainly and once per variant of :func:`~rdc_diffusers.models.entropy_coded.settle_padding`: each
``--margins`` value at the shipped passes, each ``--passes`` value at the shipped margin. Every variant is coded
at each quality and decoded; bpp counts the coded strings (the file adds the same header to each), PSNR the
image's own pixels (8-bit). Per variant: the PSNR BD-rate against the plain encoder over the mean curves, and the
share of y's bits the plain encoder spends on padding-only latents. Writes ``padding.json`` and ``padding.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.bdrate import bd_rate
from rdc_diffusers.evaluation.results import machine_info
from rdc_diffusers.media.image_io import open_image, pad_to_multiple, to_tensor
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.models.entropy_coded import PADDING_MARGIN, PADDING_PASSES, settle_padding
from rdc_diffusers.training import list_images

QUALITIES = (10, 30, 50, 70, 90)
CROPS = (18, 26, 37, 45)
"""Pixels cut from a Kodak image's bottom and right with ``--crop``: 768 × 512 becomes e.g. 750 × 494, padded back
to 768 × 512 with the padding starting 2, 10, 5 or 13 pixels before a latent boundary."""


@torch.no_grad()
def padding_bit_share(codec, analysis: dict, image_size: tuple[int, int], stride: int, quality: float) -> float:
    """Share of y's estimated bits (at ``quality``) in latents whose ``stride`` × ``stride`` pixels are all
    padding."""
    gain, _ = codec.gains(quality)
    gaussian = codec.gaussian_conditional
    symbols = torch.round((analysis["y"] - analysis["means"]) * gain)
    likelihoods = gaussian.likelihood_lower_bound(
        gaussian._likelihood(symbols, gaussian.lower_bound_scale(analysis["scales"] * gain)))
    bits = -likelihoods.log2().sum(1)[0]
    inside = torch.zeros_like(bits, dtype=torch.bool)
    inside[: -(-image_size[0] // stride), : -(-image_size[1] // stride)] = True
    return float(bits[~inside].sum() / bits.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bsds_test"))
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--crop", action="store_true", help="cut each image as CROPS says, in turn")
    parser.add_argument("--margins", type=int, nargs="+", default=[0, 4, 8, 16])
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/padding"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    codec = RDCPipeline.from_pretrained(args.model).codec
    variants = {f"margin {m}, passes {PADDING_PASSES}": (m, PADDING_PASSES) for m in args.margins}
    variants |= {f"margin {PADDING_MARGIN}, passes {p}": (PADDING_MARGIN, p) for p in args.passes}
    rows, shares = [], []
    for i, path in enumerate(list_images(args.data)[: args.limit]):
        x, _ = to_tensor(open_image(path))
        if args.crop:
            x = x[..., : x.shape[-2] - CROPS[i % len(CROPS)], : x.shape[-1] - CROPS[i % len(CROPS)]]
        size = tuple(x.shape[-2:])
        padded = pad_to_multiple(x, codec.alignment)
        plain = codec.analyse(padded)
        stride = padded.shape[-1] // plain["y"].shape[-1]
        shares.append(statistics.fmean(padding_bit_share(codec, plain, size, stride, q) for q in QUALITIES))
        analyses = {"plain": plain}
        for name, (margin, passes) in variants.items():
            y, (z_strings, shape, scales, means) = settle_padding(codec, plain["y"], size, stride, margin, passes)
            analyses[name] = dict(plain, y=y, z_strings=z_strings, shape=shape, scales=scales, means=means)
        for name, analysis in analyses.items():
            for quality in QUALITIES:
                coded = codec.code_latent(analysis, quality)
                x_hat = codec.decompress(coded["strings"], coded["shape"], quality)["x_init"][..., : size[0], : size[1]]
                rows.append({"image": path.name, "height": size[0], "width": size[1], "variant": name,
                             "quality": quality, "psnr": psnr(x_hat.mul(255).round().div(255), x),
                             "bpp": 8 * sum(len(s[0]) for s in coded["strings"]) / (size[0] * size[1])})
        print(path.name, size, f"padding share of y's bits {shares[-1]:.3f}", flush=True)

    def curve(name: str) -> list[tuple[float, float]]:
        return [(statistics.fmean(r["bpp"] for r in rows if r["variant"] == name and r["quality"] == q),
                 statistics.fmean(r["psnr"] for r in rows if r["variant"] == name and r["quality"] == q))
                for q in QUALITIES]

    curves = {name: curve(name) for name in ["plain", *variants]}
    summary = [{"variant": name, "bdrate_psnr": bd_rate(curves["plain"], curves[name]),
                "mean_delta_db": statistics.fmean(b[1] - a[1]
                                                  for a, b in zip(curves["plain"], curves[name], strict=True)),
                "curve": curves[name]} for name in variants]
    info = machine_info() | {"model": args.model, "data": str(args.data), "images": len(shares), "crop": args.crop,
                             "qualities": QUALITIES, "shipped": {"margin": PADDING_MARGIN, "passes": PADDING_PASSES}}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "padding_crop" if args.crop else "padding"
    document = {"info": info, "padding_bit_share": statistics.fmean(shares), "plain": curves["plain"],
                "summary": summary, "rows": rows}
    (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    sizes = sorted({(r["height"], r["width"]) for r in rows})
    lines = [f"# Bits on padding: `{info['model']}` on {info['images']} images of `{info['data']}`", "",
             f"Command: `{info['command']}`. Image sizes (height × width): "
             f"{', '.join(f'{h} × {w}' for h, w in sizes)}; qualities {', '.join(map(str, QUALITIES))}.", "",
             f"The plain encoder spends {100 * document['padding_bit_share']:.1f} % of y's bits (mean over images "
             "and qualities) on latents that draw padding only.", "",
             "| variant | BD-rate vs plain (PSNR) | mean ΔPSNR dB at equal quality |", "|---|---|---|"]
    shipped = f"margin {PADDING_MARGIN}, passes {PADDING_PASSES}"
    lines += [f"| {s['variant']}{' (shipped)' if s['variant'] == shipped else ''} | {s['bdrate_psnr']:+.2f} % | "
              f"{s['mean_delta_db']:+.4f} |" for s in summary]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
