"""Ablation of issue 3: codec-only vs residual refinement vs a CDC-style diffusion decoder, on the same codec.

    for mode in residual cdc; do
      python examples/train_rdc.py residual --mode $mode --codec src/rdc_diffusers/bundled/rdc-bsds/codec \
          --train-dir ../shared/data/train --output runs/abl_$mode --iterations 400 ...
    done
    python benchmarks/ablation.py --residual runs/abl_residual/pipeline --cdc runs/abl_cdc/pipeline \
        --extra rdc-bsds --data ../shared/data/kodak --out benchmarks/results/ablation [--quality 50]

Both diffusion models share the frozen codec (so every row has the same bytes and bpp), the UNet size, the
training data and the number of training iterations; they differ only in what they generate:

* residual (RDC): ``r = x − x_init`` given ŷ and x_init, output ``x_init + r``;
* CDC-style: the image itself given ŷ alone (``ResidualUNet(residual=False)``), output ``x``.

The codec is the bundled variable-rate ``rdc-bsds`` codec; the residual stage trains each UNet at qualities drawn
uniformly from [0, 100], and the ablation codes every image at one quality (``--quality``, default the first
model's ``default_quality``), the same for every model. ``--extra`` adds further pipelines on the same codec (e.g.
the bundled model, trained longer). Each model is decoded with DDIM at several step counts; the fast decode
(``x_init``) is the codec-only row. Writes ``ablation.json`` (+ ``.csv``; the schema of benchmarks/run.py) and
``ablation.md``. (The committed ablation in benchmarks/results/ablation/ was measured on the retired single-rate
``rdc-bsds-q3`` codec.)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.results import machine_info, save_results, summarize
from rdc_diffusers.evaluation.scoring import evaluate_pipeline
from rdc_diffusers.training import list_images


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def load(name: str) -> RDCPipeline:
    pipe = RDCPipeline.from_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residual", required=True, help="pipeline whose unet models the residual")
    parser.add_argument("--cdc", required=True, help="pipeline whose unet generates the image (CDC-style)")
    parser.add_argument("--extra", nargs="*", default=[], help="more pipelines with the same codec")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4], help="DDIM step counts to decode with")
    parser.add_argument("--quality", type=float, default=None,
                        help="codec quality of every model (default: the first model's default quality)")
    args = parser.parse_args()
    paths = list_images(args.data)[: args.limit]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    models = {"residual": args.residual, "cdc": args.cdc} | {Path(name).name: name for name in args.extra}
    records, fingerprints, quality = [], set(), args.quality
    for label, name in models.items():
        pipe = load(name)
        fingerprints.add(pipe.codec.fingerprint())
        quality = pipe.config.default_quality if quality is None else quality
        decodes = {f"ddim-{n}": {"num_inference_steps": n} for n in args.steps}
        if label == "residual":
            decodes = {"fast": {"refine": False}} | decodes
        records += evaluate_pipeline(pipe, paths, decodes=decodes, quality=quality, method=label, log=log)
    if len(fingerprints) != 1:
        raise SystemExit("the models do not share one codec: the ablation would compare different bytes")

    summary = summarize(records)
    info = machine_info() | {"models": models, "images": len(paths), "data": str(args.data), "quality": quality}
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "ablation.json", records, summary, info)
    lines = [
        "# Ablation: codec-only vs residual refinement vs CDC-style (Kodak)", "",
        f"Command: `{info['command']}`", "", f"{len(paths)} images; {info['processor']}, {info['torch_threads']} "
        f"torch threads, torch {info['torch']}; {info['date']}. Same codec, quality {quality:g} and bytes for every "
        "row; DDIM; means "
        "over images; FID/KID on HiFiC patches (few on Kodak: noisy).", "",
        "| model | decode | bpp | PSNR dB | MS-SSIM | LPIPS | FID | KID | patches | median decode s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in summary.values():
        lines.append(f"| {e['method']} | {e['decode']} | {e['bpp']:.4f} | {e['psnr']:.2f} | {e['ms_ssim']:.4f} | "
                     f"{e['lpips']:.4f} | {_fmt(e.get('fid'), 2)} | {_fmt(e.get('kid'), 4)} | {e.get('patches')} | "
                     f"{e['median_decode_s']:.2f} |")
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
