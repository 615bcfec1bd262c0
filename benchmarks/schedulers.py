"""The refined decode with every scheduler: the numbers behind ``rdc_diffusers.schedulers`` (what is supported, and
why Heun and KDPM2 are refused).

    python benchmarks/schedulers.py [--model rdc-bsds] [--data ../shared/data/kodak] [--limit 4] [--crop 256]
        [--quality 50] [--steps 1 2 4] [--schedulers ddim heun ...] [--no-lpips] [--threads N]
        [--out benchmarks/results/schedulers]

The first ``--limit`` images of ``--data`` (sorted by name), each cut to its centre ``--crop`` square, are
compressed once at ``--quality``; the same bytes are decoded fast (``refine=False``) and refined at each step count
with every supported scheduler (``available_schedulers()``, built by ``load_scheduler`` from the model's own
scheduler config) and every refused one (``REFUSED``, which the pipeline will not take: see ``refused_scheduler``).
Decodes are 8-bit images; each is scored against the original crop by PSNR (dB) and, where its packages are
installed, LPIPS (AlexNet). The table gives per scheduler and step count the mean PSNR over the images, its mean
difference to the fast decode of the same bytes, the mean LPIPS and the median decode time. ``--schedulers`` keeps
only the named ones (short names, or class names of the refused). Writes ``schedulers.json`` and ``schedulers.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import diffusers
import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.results import machine_info
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.media.image_io import open_image, to_tensor
from rdc_diffusers.metrics.quality import psnr
from rdc_diffusers.schedulers import REFUSED, SCHEDULERS, available_schedulers, load_scheduler
from rdc_diffusers.training import list_images

REFUSED_PREDICTION = {"KDPM2DiscreteScheduler": "v_prediction", "KDPM2AncestralDiscreteScheduler": "v_prediction"}
"""The prediction type a refused scheduler is measured with where its ``step`` lacks the UNet's ``"sample"`` (the
pipeline converts the UNet's output to it, as for the supported ones); the others keep ``"sample"``."""


def scheduler_names() -> list[str]:
    """Every scheduler measured: the supported short names that are installed, then the refused class names."""
    return [*available_schedulers(), *REFUSED]


def refused_scheduler(cls_name: str, config: dict):
    """A refused scheduler built from the model's scheduler ``config``, with a prediction type its step takes."""
    overrides = {"prediction_type": REFUSED_PREDICTION[cls_name]} if cls_name in REFUSED_PREDICTION else {}
    return getattr(diffusers, cls_name).from_config(config, **overrides)


@contextmanager
def scheduler_in(pipe: RDCPipeline, name: str, config: dict):
    """``pipe`` with the scheduler ``name`` in place of its own, restored afterwards."""
    original = pipe.scheduler
    if name not in REFUSED:
        pipe.scheduler = load_scheduler(name, config)
        try:
            yield pipe
        finally:
            pipe.scheduler = original
        return
    # Only to measure what is refused: a refused scheduler is put past the pipeline's check on purpose (assignment
    # and prepare_scheduler, called by every refine, would raise UnsupportedSchedulerError). Never do this to decode.
    object.__setattr__(pipe, "scheduler", refused_scheduler(name, config))
    pipe.prepare_scheduler = lambda: None
    try:
        yield pipe
    finally:
        del pipe.prepare_scheduler  # the class's method again
        object.__setattr__(pipe, "scheduler", original)


def lpips_scorer(enabled: bool):
    """``lpips(a, b) -> float`` for two [1, 3, H, W] images in [0, 1], or None (disabled, or its packages are
    missing: then why, as the second value)."""
    if not enabled:
        return None, "--no-lpips"
    try:
        from rdc_diffusers.metrics.lpips import lpips, lpips_model

        lpips_model()  # loads the offline weights now, or raises ImportError naming what to install
    except ImportError as err:
        return None, str(err)

    def score(a: torch.Tensor, b: torch.Tensor) -> float:
        with torch.no_grad():
            return float(lpips(a, b)[0])

    return score, None


def centre_crop(image, size: int):
    """The centre ``size`` square of a PIL image (its shorter side, if that is smaller)."""
    side = min(size, *image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def decode(pipe: RDCPipeline, data: bytes, reference: torch.Tensor, lpips, **kwargs) -> dict:
    """One timed decode of ``data`` to 8-bit pixels, scored against ``reference``."""
    start = time.perf_counter()
    image = pipe.decompress(data, **kwargs).images[0]  # PIL: the 8-bit image a user saves
    seconds = time.perf_counter() - start
    decoded, _ = to_tensor(image)
    return {"psnr": psnr(decoded, reference), "lpips": lpips(reference, decoded) if lpips else None,
            "decode_s": seconds}


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(rows: list[dict], names: list[str], steps: list[int]) -> list[dict]:
    """Per decode (fast, then scheduler x steps): means over the images and the median decode time."""
    summary = []
    for name, n in [("fast", 0)] + [(name, n) for name in names for n in steps]:
        group = [r for r in rows if r["scheduler"] == name and r["steps"] == n]
        done = [r for r in group if "error" not in r]
        entry = {"scheduler": name, "class": group[0]["class"], "status": group[0]["status"], "steps": n,
                 "images": len(done), "psnr": mean([r["psnr"] for r in done]),
                 "delta_psnr_vs_fast": mean([r["delta_psnr_vs_fast"] for r in done]),
                 "lpips": mean([r["lpips"] for r in done]),
                 "median_decode_s": statistics.median(r["decode_s"] for r in done) if done else None}
        errors = sorted({r["error"] for r in group if "error" in r})
        if errors:
            entry["errors"] = errors
        summary.append(entry)
    return summary


def markdown(summary: list[dict], info: dict) -> str:
    def number(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [f"# Refined decodes of `{info['model']}` with every scheduler", "",
             f"{info['images']} images of `{info['data']}` ({', '.join(info['image_names'])}), centre "
             f"{info['crop']} px crops, quality {info['quality']:g} ({info['mean_bpp']:.3f} bpp on average); "
             f"torch {info['torch']}, diffusers {info['diffusers']}, {info['date']}; command: `{info['command']}`.",
             "", f"Means over the images; Δ: PSNR minus the fast decode's, per image; LPIPS: "
             f"{'AlexNet' if info['lpips'] else 'not measured (' + info['lpips_skipped'] + ')'}; decode s: median "
             f"over the images (torch threads: {info['torch_threads']}). *refused*: the pipeline refuses it "
             "(`UnsupportedSchedulerError`); measured only by bypassing that check.", "",
             "| scheduler | class | status | steps | PSNR dB | Δ vs fast dB | LPIPS | decode s |",
             "|---|---|---|---|---|---|---|---|"]
    for e in summary:
        status = "*refused*" if e["status"] == "refused" else e["status"]
        cells = [e["scheduler"], e["class"], status, str(e["steps"]), number(e["psnr"], ".2f"),
                 number(e["delta_psnr_vs_fast"], "+.2f"), number(e["lpips"], ".4f"),
                 number(e["median_decode_s"], ".2f")]
        if "errors" in e:
            cells[-1] += f" (failed: {'; '.join(e['errors'])})"
        lines.append("| " + " | ".join(cells) + " |")
    refused = [name for name in info["schedulers"] if name in REFUSED]
    if refused:
        lines += ["", "Why the refused ones are refused (`rdc_diffusers.schedulers.REFUSED`):", ""]
        lines += [f"- {name}: {REFUSED[name]}" for name in refused]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled name, folder or Hub id")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--limit", type=int, default=4, help="the first N images (sorted by name)")
    parser.add_argument("--crop", type=int, default=256, help="side of the centre square cut from each image")
    parser.add_argument("--quality", type=float, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--schedulers", nargs="+", default=None, metavar="NAME",
                        help="only these: supported short names or refused class names (default: all)")
    parser.add_argument("--no-lpips", dest="lpips", action="store_false", help="skip LPIPS")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/schedulers"))
    args = parser.parse_args(argv)
    names = scheduler_names()
    if args.schedulers is not None:
        unknown = [n for n in args.schedulers if n not in names]
        if unknown:
            parser.error(f"unknown or unavailable schedulers {unknown}; choose from {names}")
        names = [n for n in names if n in args.schedulers]
    if not all(n >= 1 for n in args.steps):
        parser.error("--steps must be at least 1 (the fast decode is always measured)")
    if args.threads:
        torch.set_num_threads(args.threads)
    lpips, lpips_skipped = lpips_scorer(args.lpips)

    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config  # the model's own: every scheduler is built from it
    classes = {name: SCHEDULERS[name][0] if name in SCHEDULERS else name for name in names}
    paths = list_images(args.data)[: args.limit]
    rows, bpps = [], []
    for path in paths:
        image = centre_crop(open_image(path).convert("RGB"), args.crop)
        reference, _ = to_tensor(image)
        data = pipe.compress(image, quality=args.quality)
        bpps.append(8 * len(data) / (image.width * image.height))
        fast = decode(pipe, data, reference, lpips, refine=False)
        rows.append({"image": path.name, "scheduler": "fast", "class": "-", "status": "-", "steps": 0, **fast,
                     "delta_psnr_vs_fast": 0.0})
        for name in names:
            status = "refused" if name in REFUSED else "supported"
            with warnings.catch_warnings(), scheduler_in(pipe, name, config):
                warnings.simplefilter("ignore")  # e.g. from_config on keys another scheduler's config lacks
                for n in args.steps:
                    row = {"image": path.name, "scheduler": name, "class": classes[name], "status": status,
                           "steps": n}
                    try:
                        row |= decode(pipe, data, reference, lpips, num_inference_steps=n)
                        row["delta_psnr_vs_fast"] = row["psnr"] - fast["psnr"]
                    except Exception as err:  # noqa: BLE001 (a failing scheduler is a result to report)
                        row["error"] = f"{type(err).__name__}: {err}"
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    summary = summarize(rows, names, args.steps)
    command = shlex.join(["python", "benchmarks/schedulers.py", *(sys.argv[1:] if argv is None else argv)])
    info = machine_info() | {
        "command": command, "diffusers": diffusers.__version__, "model": args.model, "data": str(args.data),
        "images": len(paths), "image_names": [p.name for p in paths], "crop": args.crop, "quality": args.quality,
        "mean_bpp": statistics.fmean(bpps), "steps": args.steps, "schedulers": names,
        "lpips": lpips is not None, "lpips_skipped": lpips_skipped,
        "refused_predictions": {n: REFUSED_PREDICTION.get(n, config.prediction_type) for n in names if n in REFUSED}}
    report = {"info": info, "summary": summary, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "schedulers.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(summary, info)
    (args.out / "schedulers.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
