"""Issue 13: standard JPEG / WebP / AVIF files refined by residual diffusion, against the same files decoded plainly.

    python benchmarks/refiner.py [--model rdc-bsds] [--data ../shared/data/kodak] [--limit N] [--no-fid]
        [--bases jpeg webp avif] [--qualities Q ...] [--threads N] [--out benchmarks/results/refiner]

Each image is coded by each base codec at a ladder of Pillow qualities (``QUALITIES``: about 0.1-1 bpp on Kodak,
or ``--qualities`` for every base);
the same bytes are decoded plainly (Pillow, what any viewer shows) and refined (``RDCRefinerPipeline``, the model's
default steps and strength, seed 0), so the two decodes of a point have exactly the same rate. Per point: bpp,
PSNR, MS-SSIM, LPIPS and patch FID/KID over the point's HiFiC patches. Per codec: the LPIPS BD-rate of the refined
decode against the plain one (PCHIP, negative: fewer bits for the same LPIPS), the PSNR change at each quality, and
whether LPIPS and FID are lower at every rate. Also the median time of one refined decode of the first image as a
JPEG at quality 50 (768×512 on Kodak). Writes ``refiner.json`` / ``.csv`` and ``refiner.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from rdc_diffusers import RDCRefinerPipeline
from rdc_diffusers.evaluation.bdrate import bd_rate
from rdc_diffusers.evaluation.results import machine_info, number, save_results, summarize
from rdc_diffusers.evaluation.scoring import check_metrics, measurements
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.training import list_images

QUALITIES = {"jpeg": (10, 20, 35, 50, 70), "webp": (5, 20, 40, 60, 80), "avif": (5, 20, 35, 50, 65)}
"""Pillow qualities per base codec: a rate ladder over about 0.1-1 bpp on Kodak."""
DECODES = {"plain": {"refine": False}, "refined": {}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled name or folder holding the refiner")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--bases", nargs="+", default=list(QUALITIES), choices=list(QUALITIES))
    parser.add_argument("--qualities", nargs="+", type=int, default=None,
                        help="Pillow qualities for every base instead of its ladder")
    parser.add_argument("--no-fid", dest="fid", action="store_false", help="skip patch FID/KID")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/refiner"))
    return parser.parse_args(argv)


def evaluate(pipe: RDCRefinerPipeline, paths: list[Path], ladders: dict[str, tuple[int, ...]], fid: bool) -> list[dict]:
    records = []
    for path in paths:
        image = open_image(path)
        reference, _ = to_tensor(image)
        for base, qualities in ladders.items():
            for quality in qualities:
                start = time.perf_counter()
                data = pipe.compress(image, format=base, quality=quality)
                encode_s = time.perf_counter() - start
                for decode, kwargs in DECODES.items():
                    start = time.perf_counter()
                    decoded = pipe.decompress(data, output_type="pt", **kwargs).images
                    decode_s = time.perf_counter() - start
                    records.append({"image": path.name, "method": base, "decode": decode, "quality": quality,
                                    **measurements(reference, decoded, data, fid, encode_s, decode_s)})
        print(f"{path.name} done", file=sys.stderr)
    return records


def comparisons(summary: dict, bases: list[str]) -> dict:
    """Per base codec: LPIPS BD-rate refined vs plain, and per quality the PSNR / LPIPS / FID change."""
    table = {}
    for base in bases:
        points = {d: [e for e in summary.values() if e["method"] == base and e["decode"] == d] for d in DECODES}
        curve = {d: [(number(e["bpp"]), number(e["lpips"])) for e in points[d]] for d in DECODES}
        rows = []
        for plain, refined in zip(points["plain"], points["refined"], strict=True):
            rows.append({"quality": plain["quality"], "bpp": number(plain["bpp"]),
                         "psnr_change": number(refined["psnr"]) - number(plain["psnr"]),
                         "lpips_plain": number(plain["lpips"]), "lpips_refined": number(refined["lpips"]),
                         "fid_plain": number(plain.get("fid")), "fid_refined": number(refined.get("fid"))})
        table[base] = {
            "lpips_bd_rate": bd_rate(curve["plain"], curve["refined"], "lpips"),
            "lpips_lower_everywhere": all(r["lpips_refined"] < r["lpips_plain"] for r in rows),
            "fid_lower_everywhere": all(r["fid_refined"] < r["fid_plain"] for r in rows)
            if not any(math.isnan(r["fid_plain"]) for r in rows) else None,
            "points": rows,
        }
    return table


def refine_time(pipe: RDCRefinerPipeline, path: Path, repeats: int = 3) -> dict:
    """Median seconds of one default refined decode of ``path`` as a JPEG at quality 50 (after a warm-up)."""
    image = open_image(path)
    data = pipe.compress(image, format="jpeg", quality=50)
    pipe.decompress(data)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipe.decompress(data)
        times.append(time.perf_counter() - start)
    return {"image": path.name, "size": f"{image.width}x{image.height}", "median_s": statistics.median(times),
            "steps": pipe.config.default_num_inference_steps, "threads": torch.get_num_threads()}


def markdown(info: dict, table: dict, timing: dict, fid: bool) -> str:
    lines = [f"# Refining standard files: {info['images']} images of `{info['data']}`", "",
             f"Model `{info['model']}` (its refiner, {info['steps']} step, strength {info['strength']:g}, seed 0); "
             f"command: `{info['command']}`.", "",
             "Refined vs plain decode of the same files (equal bytes). LPIPS BD-rate: negative = fewer bits for the "
             "same LPIPS.", ""]
    for base, entry in table.items():
        fid_note = "" if not fid else f"; FID lower at every rate: {entry['fid_lower_everywhere']}"
        lines += [f"## {base}: LPIPS BD-rate {entry['lpips_bd_rate']:+.1f} %; LPIPS lower at every rate: "
                  f"{entry['lpips_lower_everywhere']}{fid_note}", "",
                  "| quality | bpp | LPIPS plain → refined | ΔPSNR dB | FID plain → refined |", "|---|---|---|---|---|"]
        for r in entry["points"]:
            fid_cell = "–" if math.isnan(r["fid_plain"]) else f"{r['fid_plain']:.1f} → {r['fid_refined']:.1f}"
            lines.append(f"| {r['quality']} | {r['bpp']:.3f} | {r['lpips_plain']:.4f} → {r['lpips_refined']:.4f} | "
                         f"{r['psnr_change']:+.2f} | {fid_cell} |")
        lines.append("")
    lines.append(f"Refined decode of `{timing['image']}` ({timing['size']}) as a JPEG at quality 50: median "
                 f"{timing['median_s']:.2f} s ({timing['steps']} step, {timing['threads']} torch threads).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_metrics(args.fid)
    pipe = RDCRefinerPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    paths = list_images(args.data)[: args.limit]
    ladders = {base: tuple(args.qualities or QUALITIES[base]) for base in args.bases}
    records = evaluate(pipe, paths, ladders, args.fid)
    summary = summarize(records, fid=args.fid)
    table = comparisons(summary, args.bases)
    timing = refine_time(pipe, paths[0])
    info = machine_info() | {"model": args.model, "data": str(args.data), "images": len(paths),
                             "steps": pipe.config.default_num_inference_steps,
                             "strength": pipe.config.default_strength,
                             "command": " ".join(["python", "benchmarks/refiner.py", *(argv or sys.argv[1:])])}
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "refiner.json", records, summary, info, comparisons=table, timing=timing)
    (args.out / "refiner.md").write_text(markdown(info, table, timing, args.fid))
    print((args.out / "refiner.md").read_text())


if __name__ == "__main__":
    main()
