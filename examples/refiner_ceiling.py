"""The rate above which a refiner stops improving each base codec's files, stored in its config (``max_refined_bpp``).

    python benchmarks/refiner.py --model MODEL --data ../shared/data/train --limit 12 \
        --qualities 70 75 80 85 90 95 --no-fid --out runs/ceiling
    python examples/refiner_ceiling.py runs/ceiling/refiner.json MODEL [--write]

Measured on training photos, not on a set the refiner is evaluated on. A quality fails when its refined decode has
no lower mean LPIPS than the plain decode of the same files, or more than 1 dB less PSNR (issue 13's bound); a
codec's ceiling is the geometric mean of the rates of its first failing quality and the one below it (none: no cap).
Above its ceiling, ``RDCRefinerPipeline.decompress`` returns a file as decoded. ``MODEL``: the refiner's folder, or
an image model folder with a ``refiner/`` subfolder; ``--write`` stores the ceilings in its ``model_index.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rdc_diffusers.pipelines.pipeline_rdc_refiner import REFINER_FOLDER

MAX_PSNR_LOSS_DB = 1.0


def ceiling(points: list[dict]) -> float | None:
    """The rate between the last quality (in rising rate) that the refiner improves and the first it does not."""
    points = sorted(points, key=lambda p: p["bpp"])
    for below, point in zip([None, *points], points, strict=False):
        if point["lpips_refined"] >= point["lpips_plain"] or point["psnr_change"] < -MAX_PSNR_LOSS_DB:
            if below is None:
                raise SystemExit(f"already worse at {point['bpp']:.2f} bpp, the lowest rate measured: measure lower")
            return math.sqrt(below["bpp"] * point["bpp"])
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="refiner.json of benchmarks/refiner.py on training photos")
    parser.add_argument("model", type=Path, help="the refiner's folder, or an image model folder holding one")
    parser.add_argument("--write", action="store_true", help="store the ceilings in the refiner's model_index.json")
    args = parser.parse_args(argv)
    table = json.loads(args.results.read_text())["comparisons"]
    ceilings = {base: value for base, entry in table.items() if (value := ceiling(entry["points"])) is not None}
    print(json.dumps({"max_refined_bpp": ceilings}))
    if args.write:
        folder = args.model / REFINER_FOLDER if (args.model / REFINER_FOLDER).is_dir() else args.model
        index = folder / "model_index.json"
        config = json.loads(index.read_text())
        config["max_refined_bpp"] = {base: round(value, 3) for base, value in ceilings.items()}
        index.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
