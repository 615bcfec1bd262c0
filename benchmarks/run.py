"""Regenerate every benchmark of docs/METHOD.md's protocol on a folder of images (default: Kodak).

    python benchmarks/run.py [--models rdc-bsds-q1 rdc-bsds-q3 runs/cdc/pipeline] [--data ../shared/data/kodak]
                             [--out benchmarks/results] [--rates 0.1 0.2 ...] [--limit N] [--no-speed]

For each model (default: every bundled one; a bundled name, a folder or a Hub repo id): the fast decode
(x_init) and the refined decode at the model's default step count with its own scheduler. Then JPEG, WebP and
AVIF (where Pillow has it) at every target rate (``--rates``, ~0.1-1.0 bpp) plus each model's fast-decode mean
bpp (matched rate), BD-rates against JPEG (and of every curve against every other), the rate-distortion
plots, and the speed table (scheduler x steps, codec-only decode, encode, peak RAM) of the default model on one
image (``--speed-image``, default kodim23.png), each configuration in its own process.

Outputs in ``--out`` (overwritten: this folder is the script's own):

* ``results.json`` / ``results.csv``: the result file (schema below), read by ``rdc bdrate``, ``rdc plot`` and
  the model-card generator;
* ``results.md``: the tables; ``rd_psnr.png``, ``rd_lpips.png``: the plots.

``results.json`` schema (strict JSON; a NaN is ``null``, an infinity the string ``"inf"``)::

    info:    {date, command, cpu_count, torch_threads, OMP_NUM_THREADS, device, platform, processor, python,
              torch, pillow, rdc_diffusers, (gpu), models: [model name], model_args: [as given], data, images,
              rates: [target bpp], matched_rates: {model: bpp}}
    summary: {"<method>/<decode>": {
                 method,        model name ("rdc-bsds-q3") or codec ("jpeg" | "webp" | "avif")
                 decode,        "fast" | "<scheduler>-<steps>" (e.g. "ddim-1") | "<=<target>bpp" (classical)
                 curve,         the rate-distortion curve it belongs to: "<model family>/<fast|refined>"
                                (the trailing -q<N> dropped) or the codec name
                 count,         images
                 bpp, psnr, ms_ssim, lpips,        means over images (bpp from the whole file)
                 fid, kid, kid_std, patches,       HiFiC patch FID/KID over all images' patches, patch count
                 scheduler, steps,                 (models) scheduler class name or null, steps (0 = fast)
                 quality, target_bpp,              (classical) mean chosen quality, target rate
                 bytes, width, height, encode_s, decode_s, median_encode_s, median_decode_s,
                 <field>_count                     only when some values were NaN: how many were averaged
              }}
    records: [{image, method, decode, curve-less per-image fields as above (patches = this image's), ...}]
    bdrate:  [{anchor, test, anchor_points, test_points, bdrate_psnr, bdrate_lpips}]   percent, LPIPS as -LPIPS
    speed:   [{operation: "encode" | "decode", scheduler (class name) | null, steps, median_s, min_s, max_s,
               repeats, load_rss_mib, peak_rss_mib, (peak_cuda_mib), width, height, device, torch_threads}]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.bdrate import bd_rate_table
from rdc_diffusers.evaluation import (
    CLASSICAL_CODECS,
    classical_available,
    curve_name,
    decode_name,
    evaluate_classical,
    evaluate_pipeline,
    summarize,
)
from rdc_diffusers.plotting import plot_rd
from rdc_diffusers.pretrained import DEFAULT_MODEL, bundled_models
from rdc_diffusers.results import load_results, machine_info, save_results
from rdc_diffusers.speed import SCHEDULERS, STEPS, speed_table
from rdc_diffusers.training import list_images

RATES = (0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0)
"""Default target rates (bpp) of the classical curves."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="bundled names, folders or Hub ids "
                        "(default: every bundled model)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="classical target bpp")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--seed", type=int, default=0, help="seed written into the files (refinement noise)")
    parser.add_argument("--no-fid", action="store_true", help="skip patch FID/KID")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--speed-image", default="kodim23.png", help="image of --data for the speed table")
    parser.add_argument("--speed-model", default=DEFAULT_MODEL, help="model of the speed table (default: the "
                        "default model, else the first of --models)")
    parser.add_argument("--speed-steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--speed-schedulers", nargs="+", default=list(SCHEDULERS), choices=SCHEDULERS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per speed configuration (median)")
    return parser.parse_args(argv)


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    info, summary = result["info"], result["summary"]
    lines = [
        f"# Benchmark on {Path(info['data']).name}",
        "",
        f"{info['images']} images from `{info['data']}`; {info['date']}; {info['processor']}, {info['cpu_count']} "
        f"CPUs, {info['torch_threads']} torch threads, device {info['device']}"
        + (f" ({info['gpu']})" if info.get("gpu") else "") + f"; torch {info['torch']}, Pillow {info['pillow']}.",
        "",
        f"Command: `{info['command']}`",
        "",
        "Means over images; bpp from the whole file; PSNR on 8-bit RGB. FID/KID on HiFiC 256x256 patches "
        "(count given; few patches make FID noisy). Classical codecs: per image the highest quality whose file is "
        "not above the target.",
        "",
        "| method/decode | curve | bpp | PSNR dB | MS-SSIM | LPIPS | FID | KID | patches | median enc s | "
        "median dec s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, e in summary.items():
        lines.append(
            f"| {key} | {e.get('curve')} | {_fmt(e.get('bpp'), 4)} | {_fmt(e.get('psnr'), 2)} | "
            f"{_fmt(e.get('ms_ssim'), 4)} | {_fmt(e.get('lpips'), 4)} | {_fmt(e.get('fid'), 2)} | "
            f"{_fmt(e.get('kid'), 4)} | {e.get('patches', '-')} | {_fmt(e.get('median_encode_s'), 3)} | "
            f"{_fmt(e.get('median_decode_s'), 3)} |")
    if result.get("bdrate"):
        lines += ["", "## BD-rate (%, negative = fewer bits at equal quality; LPIPS as -LPIPS; pchip)", "",
                  "| test | anchor | PSNR | LPIPS |", "|---|---|---|---|"]
        lines += [f"| {r['test']} | {r['anchor']} | {_fmt(r['bdrate_psnr'], 1)} | {_fmt(r['bdrate_lpips'], 1)} |"
                  for r in result["bdrate"]]
    if result.get("speed"):
        first = result["speed"][0]
        lines += ["", f"## Speed ({first['width']}x{first['height']}, device {first['device']}, "
                  f"{first['torch_threads']} threads; median of {first['repeats']} runs after a warm-up; "
                  "each row in its own process)", "",
                  "| operation | scheduler | steps | median s | min s | max s | peak RSS MiB | RSS after load MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["speed"]:
            lines.append(f"| {r['operation']} | {r['scheduler'] or 'codec only'} | {r['steps']} | "
                         f"{r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {r['peak_rss_mib']:.0f} | "
                         f"{r['load_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    models = args.models or bundled_models()
    paths = list_images(args.data)[: args.limit]
    fid = not args.no_fid
    speed_image = args.data / args.speed_image
    if not args.no_speed and models and not speed_image.is_file():  # fail now, not after hours of scoring
        raise SystemExit(f"--speed-image {speed_image} does not exist (or pass --no-speed)")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    records, names, matched = [], [], {}
    for model in models:
        pipe = RDCPipeline.from_pretrained(model).to(args.device)
        pipe.set_progress_bar_config(disable=True)
        steps = pipe.config.default_num_inference_steps
        log(f"model {pipe.model_name} ({model}): fast and {type(pipe.scheduler).__name__} {steps} steps, "
            f"{len(paths)} images")
        decodes = {"fast": {"refine": False}, decode_name(type(pipe.scheduler).__name__, steps): {}}
        model_records = evaluate_pipeline(pipe, paths, decodes=decodes, seed=args.seed, fid=fid, progress=True)
        for record in model_records:  # one curve per model family: fast, and refined at the default steps
            family = curve_name(record).rsplit("/", 1)[0]
            record["curve"] = f"{family}/{'fast' if record['decode'] == 'fast' else 'refined'}"
        records += model_records
        names.append(pipe.model_name)
        fast = [r["bpp"] for r in model_records if r["decode"] == "fast"]
        matched[pipe.model_name] = sum(fast) / len(fast)

    targets = sorted(set(args.rates) | set(matched.values()))
    for codec in CLASSICAL_CODECS:
        if not classical_available(codec):
            log(f"skipping {codec}: Pillow was built without it")
            continue
        for target in targets:
            records += evaluate_classical(paths, codec, target, fid=fid, progress=True)

    log("summarizing (FID/KID per group)")
    summary = summarize(records, fid=fid)
    info = machine_info(args.device) | {"models": names, "model_args": [str(m) for m in models],
                                        "data": str(args.data), "images": len(paths), "rates": list(args.rates),
                                        "matched_rates": matched}
    result = {"info": info, "summary": summary}
    result["bdrate"] = bd_rate_table([result])
    args.out.mkdir(parents=True, exist_ok=True)

    def write_outputs() -> None:
        json_file, _ = save_results(args.out / "results.json", records, summary, info,
                                    **{k: v for k, v in result.items() if k in ("bdrate", "speed")})
        plot_rd([load_results(json_file)], args.out, title=f"{Path(args.data).name}, {len(paths)} images")
        (args.out / "results.md").write_text(markdown(load_results(json_file)))
        log(f"wrote {args.out}/results.json, results.csv, results.md, rd_psnr.png, rd_lpips.png")

    write_outputs()  # the scores are kept even if the speed table fails
    if not args.no_speed and models:
        speed_model = args.speed_model if args.speed_model in models else models[0]
        result["speed"] = speed_table(speed_model, speed_image, schedulers=args.speed_schedulers,
                                      steps=args.speed_steps, repeats=args.repeats, device=args.device,
                                      threads=args.threads, log=log)
        write_outputs()
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
