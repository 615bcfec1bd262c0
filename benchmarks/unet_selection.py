"""Residual UNets compared on photos no table reports, to pick the one to ship without choosing on the test sets.

    python benchmarks/unet_selection.py --unets LABEL=UNET_FOLDER [LABEL=... ...] [--model rdc-bsds]
        [--data ../shared/data/bsds_test] [--skip 24] [--limit 24] [--qualities 0 25 50 75 100]
        [--out benchmarks/results/unet_selection]

The default photos are BSDS test images 25-48 in name order: the BSDS-24 table uses the first 24 and the training
script's validation crops the first 4, so a choice made here does not bias Kodak, BSDS-24 or CLIC. Each photo is
encoded once per quality with the model's codec (the UNets share it, so bpp is the same for all); each UNet then
decodes every file with the file's default refinement (scored as decoded, before rounding to 8 bits: a
comparison, not a table to set beside the anchors). The first UNet is the reference: the others get an LPIPS
BD-rate against it and the count of qualities where their mean LPIPS is lower. Writes ``selection.json`` and
``selection.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.bdrate import TIES, bd_rate
from rdc_diffusers.evaluation.results import machine_info
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.models.residual_unet import ResidualUNet
from rdc_diffusers.training import list_images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unets", nargs="+", required=True, help="LABEL=folder of a ResidualUNet; the first is the "
                        "reference")
    parser.add_argument("--model", default="rdc-bsds", help="the pipeline whose codec encodes")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bsds_test"))
    parser.add_argument("--skip", type=int, default=24)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--qualities", type=float, nargs="+", default=[0, 25, 50, 75, 100])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unet_selection"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unets = dict(arg.split("=", 1) for arg in args.unets)
    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    paths = list_images(args.data)[args.skip: args.skip + args.limit]
    images = [to_tensor(open_image(p))[0] for p in paths]
    files = {q: [pipe.compress(x, quality=q) for x in images] for q in args.qualities}
    bpp = {q: statistics.fmean(8 * len(f) / x[0, 0].numel() for f, x in zip(files[q], images, strict=True))
           for q in args.qualities}
    points = {}
    for label, folder in unets.items():
        pipe.unet = ResidualUNet.from_pretrained(folder, torch_dtype=torch.float32).eval()
        points[label] = []
        for q in args.qualities:
            decoded = [pipe.decompress(f, output_type="pt").images for f in files[q]]
            points[label].append({
                "quality": q, "bpp": bpp[q],
                "psnr": statistics.fmean(psnr(y, x) for y, x in zip(decoded, images, strict=True)),
                "lpips": statistics.fmean(lpips(y, x).mean().item() for y, x in zip(decoded, images, strict=True))})
        print(label, " ".join(f"q{p['quality']:g}: {p['lpips']:.5f} / {p['psnr']:.3f} dB" for p in points[label]),
              flush=True)
    reference = next(iter(unets))
    summary = {}
    for label in unets:
        ref, own = points[reference], points[label]
        summary[label] = {
            "bdrate_lpips": bd_rate([(p["bpp"], p["lpips"]) for p in ref], [(p["bpp"], p["lpips"]) for p in own],
                                    "lpips"),
            "lpips_lower_at": sum(b["lpips"] < a["lpips"] - TIES["lpips"] for a, b in zip(ref, own, strict=True)),
            "psnr_delta_db": [b["psnr"] - a["psnr"] for a, b in zip(ref, own, strict=True)]}
    info = machine_info() | {"model": args.model, "data": str(args.data), "images": [p.name for p in paths],
                             "unets": unets, "qualities": args.qualities}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.json").write_text(json.dumps({"info": info, "points": points, "summary": summary},
                                                        indent=2) + "\n")
    qualities = " / ".join(f"{q:g}" for q in args.qualities)
    lines = [f"# Residual UNets on `{args.data}`, photos {args.skip + 1}-{args.skip + len(paths)} by name", "",
             f"Command: `{info['command']}`. Refined decodes at the files' default steps and strength; the reference "
             f"is `{reference}`. LPIPS and PSNR at qualities {qualities} "
             f"({' / '.join(f'{bpp[q]:.3f}' for q in args.qualities)} bpp).", "",
             "| UNet | folder | LPIPS | PSNR dB | LPIPS BD-rate vs reference | LPIPS lower at |",
             "|---|---|---|---|---|---|"]
    for label, folder in unets.items():
        s = summary[label]
        lines.append(f"| {label} | `{folder}` | {' / '.join(format(p['lpips'], '.5f') for p in points[label])} | "
                     f"{' / '.join(format(p['psnr'], '.3f') for p in points[label])} | {s['bdrate_lpips']:+.2f} % | "
                     f"{s['lpips_lower_at']} of {len(args.qualities)} |")
    (args.out / "selection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
