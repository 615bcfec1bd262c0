"""Regenerate every benchmark of docs/METHOD.md's protocol on a folder of images (default: Kodak).

    python benchmarks/run.py [--models rdc-bsds runs/vr/pipeline] [--qualities 0 10 25 40 50 70 85 100]
                             [--data ../shared/data/kodak] [--out benchmarks/results] [--rates 0.1 0.2 ...]
                             [--baseline benchmarks/results/baseline/results.json | --no-baseline]
                             [--limit N] [--no-speed] [--no-fid]

Each model (default: the bundled ``rdc-bsds``; a bundled name, a folder or a Hub repo id) is one variable-rate
codec: every image is coded at every quality of ``--qualities`` (plus the model's ``default_quality``, the card's
headline row), and each file decoded fast (x_init) and refined at the model's default step count with its own
scheduler: two curves per model, ``<model>/fast`` and ``<model>/refined``. Then the classical anchors JPEG, WebP
and AVIF (where Pillow has it) at every target rate of ``--rates`` (~0.1-1.0 bpp, per image the highest quality
not above the target); the BD-rates (PSNR and LPIPS) of every curve against every other, the model curves
against the classical codecs in results.md; the comparison with a baseline result file (default: the committed
benchmark of the retired single-rate models rdc-bsds-q1/q3/q5, benchmarks/results/baseline/results.json, when
it exists), on the images both measured: BD-rate of each model curve against the baseline's curve of the same
decode, and the quality at each baseline rate ("no rate gets worse"); the rate-distortion plots (the baseline's
model curves drawn too); and the speed table (scheduler x steps, codec-only decode, encode, peak RAM) of the
default model at its default quality on one image (``--speed-image``, default kodim23.png), each configuration in
its own process.

Outputs in ``--out`` (overwritten: this folder is the script's own; keep the baseline outside the files it writes):

* ``results.json`` / ``results.csv``: the result file (schema below), read by ``rdc bdrate``, ``rdc plot`` and
  the model-card generator (model_cards/make_cards.py);
* ``results.md``: the tables; ``rd_psnr.png``, ``rd_lpips.png``: the plots.

``results.json`` schema (strict JSON; a NaN is ``null``, an infinity the string ``"inf"``)::

    info:    {date, command, cpu_count, torch_threads, OMP_NUM_THREADS, device, platform, processor, python,
              torch, pillow, rdc_diffusers, (gpu), models: [model name], model_args: [as given], data, images,
              qualities: {model: [quality]}, default_quality: {model: quality}, rates: [target bpp],
              baseline: path of the baseline file | null, (note: added by hand, e.g. why a section is missing)}
    summary: {"<key>": {          key: "<model>/<decode>@q<quality>" (e.g. "rdc-bsds/fast@q25") for a model,
                                       "<codec>/<=<target>bpp" (e.g. "jpeg/<=0.2500bpp") for a classical codec;
                                       files of the retired single-rate models have "rdc-bsds-q3/fast" etc.
                 method,        model name ("rdc-bsds") or codec ("jpeg" | "webp" | "avif")
                 decode,        "fast" | "<scheduler>-<steps>" (e.g. "ddim-1") | "<=<target>bpp" (classical)
                 curve,         the rate-distortion curve it belongs to: "<model>/fast" | "<model>/refined" (every
                                quality of a model on one curve per decode) or the codec name
                 count,         images
                 quality,       (models) the codec quality, 0..100 as stored in the files; (classical) the mean
                                Pillow quality chosen per image
                 bpp, psnr, ms_ssim, lpips,        means over images (bpp from the whole file)
                 fid, kid, kid_std, patches,       HiFiC patch FID/KID over all images' patches, patch count
                 scheduler, steps,                 (models) scheduler class name or null, steps (0 = fast)
                 target_bpp,                       (classical) target rate
                 bytes, width, height, encode_s, decode_s, median_encode_s, median_decode_s,
                 <field>_count                     only when some values were NaN: how many were averaged
              }}
    records: [{image, method, decode, quality, curve, per-image fields as above (patches = this image's), ...}]
    bdrate:  [{anchor, test, anchor_points, test_points, bdrate_psnr, bdrate_lpips}]   percent, every ordered pair
             of curves; negative = test needs fewer bits than anchor at equal quality; LPIPS as -LPIPS
    baseline: {file, date, command, images (compared: the images both runs measured), baseline_images,
               rows: [{test, anchor, test_points, anchor_points, bdrate_psnr, bdrate_lpips,
                       points: [{key, bpp, psnr, lpips, test_psnr, test_lpips, delta_psnr, delta_lpips}],
                       worse: [baseline keys], uncovered: [baseline keys]}]}    (only with a baseline)
    speed:   [{operation: "encode" | "decode", scheduler (class name) | null, steps, quality, bytes, median_s, min_s,
               max_s, repeats, load_rss_mib, peak_rss_mib, (peak_cuda_mib), width, height, device, torch_threads}]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.bdrate import TIES, bd_rate_table, compare_to_baseline, is_classical_curve
from rdc_diffusers.evaluation.plotting import plot_rd
from rdc_diffusers.evaluation.results import (
    curve_name,
    curves,
    format_quality,
    group_name,
    load_results,
    machine_info,
    on_images,
    save_results,
    summarize,
)
from rdc_diffusers.evaluation.scoring import (
    CLASSICAL_CODECS,
    classical_available,
    decode_name,
    evaluate_classical,
    evaluate_pipeline,
)
from rdc_diffusers.evaluation.speed import STEPS, TABLE_SCHEDULERS, speed_table
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.models.codec import check_quality
from rdc_diffusers.text import plural
from rdc_diffusers.training import list_images

QUALITIES = (0, 10, 25, 40, 50, 70, 85, 100)
"""Default model qualities: about 0.1-1.2 bpp on Kodak with the preliminary rdc-bsds weights (50 is the default)."""
RATES = (0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0)
"""Default target rates (bpp) of the classical curves."""
ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "benchmarks" / "results" / "baseline" / "results.json"
"""The committed benchmark of the retired single-rate models rdc-bsds-q1/q3/q5 (Kodak, 24 images, 2026-11-26)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], help="bundled names, folders or Hub ids "
                        f"(default: {DEFAULT_MODEL})")
    parser.add_argument("--qualities", type=float, nargs="+", default=list(QUALITIES),
                        help="model qualities 0..100, one rate point each (the model's default quality is added)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="classical target bpp")
    parser.add_argument("--baseline", type=Path, default=None,
                        help=f"result file to compare the model curves with (default: {BASELINE.relative_to(ROOT)} "
                        "if it exists)")
    parser.add_argument("--no-baseline", action="store_true", help="no baseline comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--seed", type=int, default=0, help="seed written into the files (refinement noise)")
    parser.add_argument("--encoder-steps", type=int, default=0,
                        help="latent optimisation steps per encode (RDCPipeline.compress; default 0: none)")
    parser.add_argument("--no-fid", action="store_true", help="skip patch FID/KID")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--speed-image", default="kodim23.png", help="image of --data for the speed table")
    parser.add_argument("--speed-model", default=DEFAULT_MODEL, help="model of the speed table (default: the "
                        "default model, else the first of --models)")
    parser.add_argument("--speed-steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--speed-schedulers", nargs="+", default=list(TABLE_SCHEDULERS), choices=TABLE_SCHEDULERS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per speed configuration (median)")
    args = parser.parse_args(argv)
    if args.baseline is not None and args.no_baseline:
        parser.error("--baseline and --no-baseline exclude each other")
    try:
        args.qualities = [check_quality(q) for q in args.qualities]
    except ValueError as err:
        parser.error(f"--qualities: {err}")
    return args


def _fmt(value, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _model_quality(entry: dict) -> str:
    return "–" if "target_bpp" in entry or entry.get("quality") is None else format_quality(entry["quality"])


def markdown(result: dict) -> str:
    info = result["info"]
    lines = [
        f"# Benchmark on {Path(info['data']).name}",
        "",
        f"{info['images']} images from `{info['data']}`; {info['date']}; {info['processor']}, {info['cpu_count']} "
        f"CPUs, {info['torch_threads']} torch threads, device {info['device']}"
        + (f" ({info['gpu']})" if info.get("gpu") else "") + f"; torch {info['torch']}, Pillow {info['pillow']}.",
        "",
        f"Command: `{info['command']}`",
        "",
        *([f"Note: {info['note']}", ""] if info.get("note") else []),
        "Means over images; bpp from the whole file; PSNR on 8-bit RGB. FID/KID on HiFiC 256x256 patches "
        "(count given; few patches make FID noisy). A model is one variable-rate codec: each quality is one point "
        "of its curve (`<model>/fast`, `<model>/refined`). Classical codecs: per image the highest quality whose "
        "file is not above the target.",
        "",
        "| method/decode | curve | quality | bpp | PSNR dB | MS-SSIM | LPIPS | FID | KID | patches | median enc s | "
        "median dec s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entries in curves(result).items():
        for e in entries:
            lines.append(
                f"| {group_name(e)} | {name} | {_model_quality(e)} | {_fmt(e.get('bpp'), 4)} | "
                f"{_fmt(e.get('psnr'), 2)} | {_fmt(e.get('ms_ssim'), 4)} | {_fmt(e.get('lpips'), 4)} | "
                f"{_fmt(e.get('fid'), 2)} | {_fmt(e.get('kid'), 4)} | {e.get('patches', '-')} | "
                f"{_fmt(e.get('median_encode_s'), 3)} | {_fmt(e.get('median_decode_s'), 3)} |")
    lines += bdrate_markdown(result)
    lines += baseline_markdown(result.get("baseline"))
    if result.get("speed"):
        first = result["speed"][0]
        quality = f", quality {format_quality(first['quality'])}" if first.get("quality") is not None else ""
        lines += ["", f"## Speed ({first['width']}x{first['height']}{quality}, device {first['device']}, "
                  f"{first['torch_threads']} threads; median of {first['repeats']} runs after a warm-up; "
                  "each row in its own process)", "",
                  "| operation | scheduler | steps | median s | min s | max s | peak RSS MiB | RSS after load MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["speed"]:
            lines.append(f"| {r['operation']} | {r['scheduler'] or 'codec only'} | {r['steps']} | "
                         f"{r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {r['peak_rss_mib']:.0f} | "
                         f"{r['load_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def bdrate_markdown(result: dict) -> list[str]:
    """The model curves against each classical codec, and the classical codecs against JPEG."""
    rows = result.get("bdrate") or []
    classical = {name for name, entries in curves(result).items() if is_classical_curve(entries)}
    models = [r for r in rows if r["test"] not in classical and r["anchor"] in classical]
    anchors = [r for r in rows if r["test"] in classical and r["anchor"] == "jpeg"]
    if not models and not anchors:
        return []
    lines = ["", "## BD-rate of the model curves against the classical codecs", "",
             "BD-rate (Bjøntegaard, pchip): the average difference in bits, in percent, that the test curve needs for "
             "the same quality as the anchor, over the quality range both cover. **Negative = the test needs fewer "
             "bits (better); positive = more bits (worse).** LPIPS BD-rate compares at equal LPIPS (entered as "
             "−LPIPS). Every pair of curves is in results.json (`bdrate`).", "",
             "| test | anchor | points (test / anchor) | BD-rate PSNR % | BD-rate LPIPS % |", "|---|---|---|---|---|"]
    lines += [f"| {r['test']} | {r['anchor']} | {r['test_points']} / {r['anchor_points']} | "
              f"{_fmt(r['bdrate_psnr'], 1, sign=True)} | {_fmt(r['bdrate_lpips'], 1, sign=True)} |"
              for r in models + anchors]
    return lines


def baseline_markdown(baseline: dict | None) -> list[str]:
    """BD-rates against the baseline's curves, and the quality at each baseline rate."""
    if not baseline:
        return []
    images = baseline.get("images")
    lines = ["", f"## Against the baseline `{baseline['file']}` ({baseline.get('date') or 'undated'})", ""]
    if not baseline.get("rows"):
        return lines + [f"Nothing to compare: {images} images in common, and a model curve of this run needs a "
                        "baseline model curve of the same decode (fast, refined) on them."]
    lines += [
        f"On the {images} images both runs measured (the baseline had {baseline.get('baseline_images', '?')}; means "
        "re-averaged over the common images where a run has others), each model curve of this run against the "
        "baseline's curve of the same decode. BD-rate: negative = this run needs fewer bits than the baseline for "
        "the same quality. Then, at the rate of each baseline point, the quality of this run's curve (interpolated "
        "linearly in log-rate between its two neighbouring points; n/a outside its rates): \"no rate gets worse than "
        f"the baseline\" means every ΔPSNR >= -{TIES['psnr']} dB and every ΔLPIPS <= {TIES['lpips']:.5f} (half the "
        "last digit printed: a byte-identical decode run again differs by float rounding).", "",
        "| curve | baseline curve | points (here / baseline) | BD-rate PSNR % | BD-rate LPIPS % | worse at | "
        "not covered |", "|---|---|---|---|---|---|---|"]
    for r in baseline["rows"]:
        lines.append(f"| {r['test']} | {r['anchor']} | {r['test_points']} / {r['anchor_points']} | "
                     f"{_fmt(r['bdrate_psnr'], 1, sign=True)} | {_fmt(r['bdrate_lpips'], 1, sign=True)} | "
                     f"{', '.join(r['worse']) or 'none'} | {', '.join(r['uncovered']) or 'none'} |")
    lines += ["", "| curve | baseline point | bpp | PSNR baseline → here | ΔPSNR dB | LPIPS baseline → here | ΔLPIPS |",
              "|---|---|---|---|---|---|---|"]
    for r in baseline["rows"]:
        for pt in r["points"]:
            lines.append(f"| {r['test']} | {pt['key']} | {_fmt(pt['bpp'], 4)} | {_fmt(pt['psnr'], 2)} → "
                         f"{_fmt(pt['test_psnr'], 2)} | {_fmt(pt['delta_psnr'], 2, sign=True)} | "
                         f"{_fmt(pt['lpips'], 4)} → {_fmt(pt['test_lpips'], 4)} | "
                         f"{_fmt(pt['delta_lpips'], 4, sign=True)} |")
    return lines


def baseline_curves(baseline: dict) -> dict:
    """The baseline's model curves (on the images of this run) as a result file of their own, each curve renamed
    ``"<curve> (baseline)"``, for the plots (its classical curves would only repeat this run's)."""
    summary = {}
    for name, entries in curves(baseline).items():
        if not is_classical_curve(entries):
            summary |= {f"baseline:{group_name(e)}": {**e, "curve": f"{name} (baseline)"} for e in entries}
    return {"summary": summary}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    models = args.models
    paths = list_images(args.data)[: args.limit]
    fid = not args.no_fid
    speed_image = args.data / args.speed_image
    if not args.no_speed and models and not speed_image.is_file():  # fail now, not after hours of scoring
        raise SystemExit(f"--speed-image {speed_image} does not exist (or pass --no-speed)")
    baseline_path = None if args.no_baseline else (args.baseline or (BASELINE if BASELINE.is_file() else None))
    baseline = load_results(baseline_path) if baseline_path else None  # a bad file fails now, not after hours
    # recorded as given, the default as its repository path (not this checkout's)
    baseline_file = BASELINE.relative_to(ROOT) if baseline_path == BASELINE else baseline_path

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    records, names, qualities, defaults = [], [], {}, {}
    for model in models:
        pipe = RDCPipeline.from_pretrained(model).to(args.device)
        pipe.set_progress_bar_config(disable=True)
        steps = pipe.config.default_num_inference_steps
        default_quality = pipe.config.default_quality
        points = sorted(set(args.qualities) | {default_quality})
        log(f"model {pipe.model_name} ({model}): qualities {', '.join(map(format_quality, points))}; fast and "
            f"{type(pipe.scheduler).__name__} {plural(steps, 'step')}, {len(paths)} images")
        decodes = {"fast": {"refine": False}, decode_name(type(pipe.scheduler).__name__, steps): {}}
        model_records = evaluate_pipeline(pipe, paths, decodes=decodes, quality=points, seed=args.seed, fid=fid,
                                          progress=True, encoder_steps=args.encoder_steps)
        for record in model_records:  # one curve per model: fast, and refined at the default steps
            family = curve_name(record).rsplit("/", 1)[0]
            record["curve"] = f"{family}/{'fast' if record['decode'] == 'fast' else 'refined'}"
        records += model_records
        names.append(pipe.model_name)
        qualities[pipe.model_name], defaults[pipe.model_name] = points, default_quality

    for codec in CLASSICAL_CODECS:
        if not classical_available(codec):
            log(f"skipping {codec}: Pillow was built without it")
            continue
        for target in sorted(set(args.rates)):
            records += evaluate_classical(paths, codec, target, fid=fid, progress=True)

    log("summarizing (FID/KID per group)")
    summary = summarize(records, fid=fid)
    info = machine_info(args.device) | {"models": names, "model_args": [str(m) for m in models],
                                        "data": str(args.data), "images": len(paths), "qualities": qualities,
                                        "default_quality": defaults, "rates": list(args.rates),
                                        "encoder_steps": args.encoder_steps,
                                        "baseline": str(baseline_file) if baseline_file else None}
    result = {"info": info, "summary": summary}
    result["bdrate"] = bd_rate_table([result])
    if baseline is not None:  # compared on the images both measured, re-averaged where a side has others
        common = {r["image"] for r in records} & {r.get("image") for r in baseline.get("records") or []}
        baseline = on_images(baseline, common)
        result["baseline"] = {"file": str(baseline_file), "date": baseline.get("info", {}).get("date"),
                              "command": baseline.get("info", {}).get("command"), "images": len(common),
                              "baseline_images": baseline.get("info", {}).get("images"),
                              "rows": compare_to_baseline(on_images(result | {"records": records}, common),
                                                          baseline)}
    args.out.mkdir(parents=True, exist_ok=True)

    def write_outputs() -> None:
        json_file, _ = save_results(args.out / "results.json", records, summary, info,
                                    **{k: v for k, v in result.items() if k in ("bdrate", "baseline", "speed")})
        saved = load_results(json_file)
        plotted = [saved] + ([baseline_curves(baseline)] if baseline is not None else [])
        plot_rd(plotted, args.out, title=f"{Path(args.data).name}, {len(paths)} images")
        (args.out / "results.md").write_text(markdown(saved))
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
