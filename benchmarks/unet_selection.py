"""Residual UNets compared on photos no table reports, to pick the one to ship without choosing on the test sets.

    python benchmarks/unet_selection.py --unets LABEL=UNET_FOLDER [LABEL=... ...] [--model rdc-bsds]
        [--data ../shared/data/bsds_test] [--skip 24] [--limit 24] [--qualities 0 25 50 75 100]
        --out benchmarks/results/unet_selection/sessionNN

The default photos are BSDS test images 25-48 in name order: the BSDS-24 table uses the first 24 and the training
script's validation crops the first 4, so a choice made here does not bias Kodak, BSDS-24 or CLIC. Each UNet in
turn replaces the model's and is scored by :func:`~rdc_diffusers.evaluation.scoring.evaluate_pipeline` (the
benchmark protocol: bpp from the bytes, 8-bit PSNR and LPIPS; no FID) on the files' default refinement; the UNets
share the codec, so the files and their bpp are the same for all. The first UNet is the reference: the others get
an LPIPS BD-rate against it and the qualities where their LPIPS is lower (by more than the ties of
:data:`~rdc_diffusers.evaluation.bdrate.TIES`). Writes ``selection.json`` (+ ``.csv``, per photo) and
``selection.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.bdrate import METRICS, TIES, compare_to_baseline
from rdc_diffusers.evaluation.results import machine_info, save_results, summarize
from rdc_diffusers.evaluation.scoring import evaluate_pipeline
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
    parser.add_argument("--out", type=Path, required=True, help="one folder per choice, e.g. "
                        "benchmarks/results/unet_selection/session48")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unets = dict(arg.split("=", 1) for arg in args.unets)
    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    paths = list_images(args.data)[args.skip: args.skip + args.limit]
    records = []
    for label, folder in unets.items():
        pipe.unet = ResidualUNet.from_pretrained(folder, torch_dtype=torch.float32).eval()
        records += evaluate_pipeline(pipe, paths, decodes={"refined": {}}, quality=args.qualities, method=label,
                                     fid=False)
    summary = summarize(records, fid=False)
    reference = next(iter(unets))
    per_unet = {label: {"summary": {k: e for k, e in summary.items() if e["method"] == label}} for label in unets}
    comparison = {}
    for label in unets:
        (row,) = compare_to_baseline(per_unet[label], per_unet[reference])
        comparison[label] = {
            "bdrate_lpips": row["bdrate_lpips"],
            "lpips_lower_at": sum(p["delta_lpips"] * METRICS["lpips"] > TIES["lpips"] for p in row["points"]),
            "psnr_delta_db": [p["delta_psnr"] for p in row["points"]]}
    info = machine_info() | {"model": args.model, "data": str(args.data), "images": [p.name for p in paths],
                             "unets": unets, "qualities": args.qualities}
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "selection.json", records, summary, info, comparison=comparison)
    curves = {label: sorted(per_unet[label]["summary"].values(), key=lambda e: e["quality"]) for label in unets}
    qualities = " / ".join(f"{q:g}" for q in args.qualities)
    rates = " / ".join(f"{e['bpp']:.3f}" for e in curves[reference])
    lines = [f"# Residual UNets on `{args.data}`, photos {args.skip + 1}-{args.skip + len(paths)} by name", "",
             f"Command: `{info['command']}`. Refined decodes at the files' default steps and strength, scored on the "
             f"8-bit images; the reference is `{reference}`. LPIPS and PSNR at qualities {qualities} ({rates} bpp).",
             "", "| UNet | folder | LPIPS | PSNR dB | LPIPS BD-rate vs reference | LPIPS lower at |",
             "|---|---|---|---|---|---|"]
    for label, folder in unets.items():
        c = comparison[label]
        lines.append(f"| {label} | `{folder}` | {' / '.join(format(e['lpips'], '.5f') for e in curves[label])} | "
                     f"{' / '.join(format(e['psnr'], '.3f') for e in curves[label])} | {c['bdrate_lpips']:+.2f} % | "
                     f"{c['lpips_lower_at']} of {len(args.qualities)} |")
    (args.out / "selection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
