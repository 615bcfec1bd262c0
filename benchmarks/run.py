"""Benchmark an RDC model against JPEG, WebP and AVIF at the same rate, following docs/METHOD.md.

    python benchmarks/run.py --model rdc-bsds-q3 --data ../shared/data/kodak --out benchmarks/results [--limit N]

The model is evaluated with the fast decoder (x_init only), DDIM with 1, 2 and 4 steps, DPM-Solver++ with 2
steps and DDPM with 2 steps (each scheduler built with ``X.from_config(pipe.scheduler.config)``). The classical
codecs are then run per image at the highest quality whose file is not above the model's mean bpp (matched
rate). Writes ``results.json`` (per-image records, the summary, machine info and the command) and
``results.md`` (one table). ``--model`` takes a bundled name, a folder or a Hub repo id.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import PIL
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from rdc_diffusers import RDCPipeline, __version__
from rdc_diffusers.evaluation import (
    classical_available,
    evaluate_classical,
    evaluate_pipeline,
    group_name,
    summarize,
)
from rdc_diffusers.pretrained import DEFAULT_MODEL
from rdc_diffusers.training import list_images

# (scheduler class, {decode name: decompress kwargs}); each group reuses one loaded pipeline.
MODEL_DECODES = [
    (DDIMScheduler, {
        "fast": {"refine": False},
        "ddim-1": {"num_inference_steps": 1},
        "ddim-2": {"num_inference_steps": 2},
        "ddim-4": {"num_inference_steps": 4},
    }),
    (DPMSolverMultistepScheduler, {"dpm-2": {"num_inference_steps": 2}}),
    (DDPMScheduler, {"ddpm-2": {"num_inference_steps": 2}}),
]
CLASSICAL = ("jpeg", "webp", "avif")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name, model folder or Hub repo id")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device for the pipeline (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed written into the files (refinement noise)")
    return parser.parse_args(argv)


def machine_info(args: argparse.Namespace) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": args.device,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "rdc_diffusers": __version__,
    }
    if torch.device(args.device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return info


def _json_safe(value):
    """Strict JSON: NaN becomes null, infinities the strings "inf" / "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown(summary: dict, info: dict, data: Path, records: list[dict]) -> str:
    lines = [
        f"# Benchmark: {info['model']} on {data.name}",
        "",
        f"{info['images']} images from `{data}`; {info['date']}; {info['processor']}, {info['cpu_count']} CPUs, "
        f"{info['torch_threads']} torch threads, device {info['device']}; torch {info['torch']}, "
        f"Pillow {info['pillow']}.",
        "",
        f"Command: `{info['command']}`",
        "",
        "Means over images; bpp from the whole file. Classical codecs: per image the highest quality whose file "
        "is not above the model's mean bpp. PSNR on 8-bit RGB; MS-SSIM n/a for images under 161 px.",
        "",
        "| method | steps | bpp | PSNR dB | MS-SSIM | LPIPS | median encode s | median decode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    over = {}  # classical groups with images that stayed above the target even at quality 1
    for record in records:
        if "target_bpp" in record and record["bpp"] > record["target_bpp"]:
            over[group_name(record)] = over.get(group_name(record), 0) + 1
    for key, entry in summary.items():
        steps = entry.get("steps")
        steps = f"{steps:g}" if steps is not None else "-"
        if entry.get("scheduler"):
            steps += f" ({entry['scheduler']})"
        lines.append(
            f"| {key} | {steps} | {_fmt(entry.get('bpp'), 4)} | {_fmt(entry.get('psnr'), 2)} | "
            f"{_fmt(entry.get('ms_ssim'), 4)} | {_fmt(entry.get('lpips'), 4)} | "
            f"{_fmt(entry.get('median_encode_s'), 3)} | {_fmt(entry.get('median_decode_s'), 3)} |")
        if key in over:
            lines[-1] = lines[-1].replace(f"| {key} |", f"| {key} (*) |", 1)
    if over:
        lines += ["", "(*) above the target rate: " + "; ".join(
            f"{key}: {n} of {summary[key]['count']} images even at quality 1" for key, n in over.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    paths = list_images(args.data)[: args.limit]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    pipe = RDCPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    base_config = pipe.scheduler.config
    log(f"model {pipe.model_name} ({args.model}), {len(paths)} images, {torch.get_num_threads()} threads")

    records = []
    for scheduler_cls, decodes in MODEL_DECODES:
        pipe.scheduler = scheduler_cls.from_config(base_config)
        records += evaluate_pipeline(pipe, paths, decodes=decodes, seed=args.seed, log=log)

    model_bpp = [r["bpp"] for r in records if r["decode"] == "fast"]
    target = sum(model_bpp) / len(model_bpp)
    log(f"matched rate for the classical codecs: {target:.4f} bpp")
    for codec in CLASSICAL:
        if classical_available(codec):
            records += evaluate_classical(paths, codec, target, log=log)
        else:
            log(f"skipping {codec}: Pillow was built without it")

    summary = summarize(records)
    info = machine_info(args) | {"model": pipe.model_name, "model_arg": str(args.model), "data": str(args.data),
                                 "images": len(paths), "target_bpp": target}
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"info": info, "summary": summary, "records": records}
    (args.out / "results.json").write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")
    table = markdown(summary, info, args.data, records)
    (args.out / "results.md").write_text(table)
    print(table)
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
