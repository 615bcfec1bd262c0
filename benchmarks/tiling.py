"""How much tiling changes a decode: PSNR of tiled and whole decodes of the same files, and seams.

    python benchmarks/tiling.py [--model rdc-bsds] [--data ../shared/data/clic_or_div2k_val] [--limit 4]
        [--quality 50] [--tiles 512 1024] [--steps 1 4] [--out benchmarks/results/tiling]

Each image is compressed once (whole) and decoded fast and refined at each step count, whole (``tile_size=0``)
and at each tile size. Per decode: the PSNR against the original of both, their difference (dB), the largest
pixel difference, and the seam ratio: the mean jump of the difference image across tile borders over its mean
jump between any neighbouring pixels (1: no border shows; a visible seam is much larger). Writes ``tiling.json``
and ``tiling.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.text import plural
from rdc_diffusers.training import list_images


def seam_ratio(diff: torch.Tensor, tile: int) -> float:
    """Mean |jump| of ``diff`` ([H, W]) across the tile borders over its mean |jump| between neighbours."""
    jumps_x, jumps_y = (diff[:, 1:] - diff[:, :-1]).abs(), (diff[1:] - diff[:-1]).abs()
    borders = [jumps_x[:, c - 1] for c in range(tile, diff.shape[1], tile)]
    borders += [jumps_y[r - 1] for r in range(tile, diff.shape[0], tile)]
    overall = torch.cat([jumps_x.flatten(), jumps_y.flatten()]).mean()
    return float(torch.cat(borders).mean() / overall) if borders and overall > 0 else 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/clic_or_div2k_val"))
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--quality", type=float, default=50)
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tiling"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    decodes = {"fast": {"refine": False}} | {plural(n, 'step'): {"num_inference_steps": n} for n in args.steps}
    rows = []
    for path in list_images(args.data)[: args.limit]:
        image = open_image(path)
        reference, _ = to_tensor(image)
        data = pipe.compress(image, quality=args.quality, tile_size=0)
        for name, kwargs in decodes.items():
            whole = pipe.decompress(data, output_type="pt", tile_size=0, **kwargs).images
            for tile in args.tiles:
                pieces = pipe.decompress(data, output_type="pt", tile_size=tile, **kwargs).images
                diff = (pieces - whole).abs()
                rows.append({"image": path.name, "decode": name, "tile": tile, "psnr_whole": psnr(whole, reference),
                             "psnr_tiled": psnr(pieces, reference), "max_abs_diff": float(diff.max()),
                             "seam_ratio": seam_ratio(diff.mean(1)[0], tile)})
                rows[-1]["delta_db"] = rows[-1]["psnr_tiled"] - rows[-1]["psnr_whole"]
                print(json.dumps(rows[-1]), flush=True)
    summary = []
    for name in decodes:
        for tile in args.tiles:
            group = [r for r in rows if r["decode"] == name and r["tile"] == tile]
            summary.append({"decode": name, "tile": tile,
                            "mean_delta_db": statistics.fmean(r["delta_db"] for r in group),
                            "worst_abs_delta_db": max(abs(r["delta_db"]) for r in group),
                            "max_abs_diff": max(r["max_abs_diff"] for r in group),
                            "mean_seam_ratio": statistics.fmean(r["seam_ratio"] for r in group)})
    info = {"model": args.model, "data": str(args.data), "images": len(rows) // (len(decodes) * len(args.tiles)),
            "quality": args.quality, "command": " ".join(["python", *sys.argv])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiling.json").write_text(json.dumps({"info": info, "summary": summary, "rows": rows}, indent=2) + "\n")
    lines = [f"# Tiled vs whole decodes of `{info['model']}`", "",
             f"{info['images']} images of `{info['data']}` at quality {args.quality:g}; command: `{info['command']}`.",
             "", "| decode | tile px | mean ΔPSNR dB | worst |ΔPSNR| dB | max pixel diff | seam ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s['decode']} | {s['tile']} | {s['mean_delta_db']:+.4f} | {s['worst_abs_delta_db']:.4f} | "
              f"{s['max_abs_diff']:.4f} | {s['mean_seam_ratio']:.2f} |" for s in summary]
    (args.out / "tiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
