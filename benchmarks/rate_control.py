"""Rate control benchmark: how close ``pipe.compress(image, target_bpp=t)`` lands to the target, and at what cost.

    python benchmarks/rate_control.py [--model rdc-bsds] [--data ../shared/data/kodak] [--limit N]
                                      [--targets 0.1 0.2 0.3 0.5 0.8] [--out benchmarks/results/rate_control]

For every image and target rate: the whole file's bpp (``8 · len(bytes) / pixels``), its ratio to the target, the
quality the search chose (from the file header), the number of encodes (calls of ``pipe.codec.code_latent``, the
entropy coding of one quality; the analysis transform runs once per call of ``compress``), the wall-clock
seconds, and whether the target was unreachable (``RateTargetError``: even quality 0 is larger). Each image is
also coded once at quality 0 and at 100 (untimed, uncounted) so every outcome can be judged:

* ``above_target``: a file larger than the target (never allowed);
* ``outside_tolerance``: a reachable target missed by more than ``--tolerance`` (3 %) below, unless quality 100
  itself is below that (``capped``: the model cannot spend more bits);
* ``too_many_encodes``: more than ``--max-encodes`` (8) encodes;
* ``wrongly_unreachable`` / ``wrongly_reachable``: ``RateTargetError`` although quality 0 fits, or a file although
  quality 0 does not fit.

Writes ``rate_control.json`` (info, per-target summary, violation counts, every record) and ``rate_control.md`` into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.errors import RateTargetError
from rdc_diffusers.evaluation.results import json_safe, machine_info
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.media.image_io import open_image
from rdc_diffusers.training import list_images

TARGETS = (0.1, 0.2, 0.3, 0.5, 0.8)
"""Default target rates (bpp)."""
TOLERANCE = 0.03
"""A reachable target must be met within this fraction below it."""
MAX_ENCODES = 8
"""The most encodes one ``compress(target_bpp=...)`` may take."""
VIOLATIONS = ("above_target", "outside_tolerance", "too_many_encodes", "wrongly_unreachable", "wrongly_reachable")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled name, folder or Hub id")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_control"), help="output folder")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS), help="target bpp")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="allowed shortfall below a target")
    parser.add_argument("--max-encodes", type=int, default=MAX_ENCODES, help="allowed encodes per image")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device")
    args = parser.parse_args(argv)
    if not all(t > 0 for t in args.targets):
        parser.error("--targets must be positive")
    return args


class EncodeCounter:
    """Counts the calls of ``codec.code_latent`` (one per quality tried) while installed on the codec instance."""

    def __init__(self, codec):
        self.codec, self.calls = codec, 0

    def __enter__(self) -> EncodeCounter:
        original = self.codec.code_latent

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        self.codec.code_latent = counted  # an instance attribute shadows the method
        return self

    def __exit__(self, *exc) -> None:
        del self.codec.code_latent


def judge(record: dict, tolerance: float, max_encodes: int) -> list[str]:
    """The violations of one record (see the module doc)."""
    found = []
    reachable = record["min_bpp"] <= record["target_bpp"]
    if record["unreachable"]:
        if reachable:
            found.append("wrongly_unreachable")
    else:
        if not reachable:
            found.append("wrongly_reachable")
        if record["bpp"] > record["target_bpp"]:
            found.append("above_target")
        elif not record["capped"] and record["bpp"] < (1 - tolerance) * record["target_bpp"]:
            found.append("outside_tolerance")
    if record["encodes"] > max_encodes:
        found.append("too_many_encodes")
    return found


def run_image(pipe, path: Path, targets: Sequence[float], tolerance: float, max_encodes: int) -> list[dict]:
    """One record per target for one image."""
    image = open_image(path)
    pixels = image.width * image.height
    min_bpp = 8 * len(pipe.compress(image, quality=0)) / pixels
    max_bpp = 8 * len(pipe.compress(image, quality=100)) / pixels
    records = []
    for target in targets:
        record = {"image": path.name, "target_bpp": target, "width": image.width, "height": image.height,
                  "min_bpp": min_bpp, "max_bpp": max_bpp}
        with EncodeCounter(pipe.codec) as counter:
            start = time.perf_counter()
            try:
                data = pipe.compress(image, target_bpp=target)
            except RateTargetError:
                data = None
            seconds = time.perf_counter() - start
        record |= {"unreachable": data is None, "encodes": counter.calls, "seconds": seconds}
        if data is None:
            record |= {"bytes": None, "bpp": None, "ratio": None, "quality": None, "capped": False}
        else:
            bpp = 8 * len(data) / pixels
            record |= {"bytes": len(data), "bpp": bpp, "ratio": bpp / target,
                       "quality": decode_file(data).header.quality,
                       "capped": max_bpp < (1 - tolerance) * target}
        record["violations"] = judge(record, tolerance, max_encodes)
        records.append(record)
    return records


def summarize(records: list[dict]) -> tuple[list[dict], dict]:
    """Per target: counts, ratio and encode statistics, median seconds; and the violation counts over all records."""
    rows = []
    for target in dict.fromkeys(r["target_bpp"] for r in records):
        mine = [r for r in records if r["target_bpp"] == target]
        met = [r for r in mine if not r["unreachable"]]
        ratios = [r["ratio"] for r in met]
        encodes = [r["encodes"] for r in mine]
        rows.append({
            "target_bpp": target, "images": len(mine), "unreachable": len(mine) - len(met),
            "capped": sum(r["capped"] for r in met),
            "mean_bpp": statistics.fmean(r["bpp"] for r in met) if met else math.nan,
            "min_ratio": min(ratios, default=math.nan), "mean_ratio": statistics.fmean(ratios) if ratios else math.nan,
            "max_ratio": max(ratios, default=math.nan),
            "mean_encodes": statistics.fmean(encodes), "max_encodes": max(encodes),
            "median_s": statistics.median(r["seconds"] for r in mine),
            "violations": sum(bool(r["violations"]) for r in mine),
        })
    violations = {name: sum(name in r["violations"] for r in records) for name in VIOLATIONS}
    return rows, violations


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    info, violations = result["info"], result["violations"]
    lines = [
        f"# Rate control on {Path(info['data']).name}",
        "",
        f"Model `{info['model']}`; {info['images']} images from `{info['data']}`; {info['date']}; {info['processor']}, "
        f"{info['torch_threads']} torch threads, device {info['device']}; torch {info['torch']}.",
        "",
        f"Command: `{info['command']}`",
        "",
        "`pipe.compress(image, target_bpp=t)`: the highest quality whose whole file is at most t bpp. Ratio = "
        f"achieved / target bpp. Requirements: never above the target; within {100 * info['tolerance']:g} % below "
        f"it when reachable (unless even quality 100 is below that: capped); at most {info['max_encodes']} encodes "
        "(entropy codings of a quality; the analysis transform runs once); unreachable only when quality 0 is "
        "above the target. Time: median wall-clock seconds of one `compress` call.",
        "",
        "| target bpp | images | unreachable | capped | mean bpp | ratio min / mean / max | encodes mean / max | "
        "median s | images with a violation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        lines.append(f"| {r['target_bpp']:g} | {r['images']} | {r['unreachable']} | {r['capped']} | "
                     f"{_fmt(r['mean_bpp'], 4)} | {_fmt(r['min_ratio'], 3)} / {_fmt(r['mean_ratio'], 3)} / "
                     f"{_fmt(r['max_ratio'], 3)} | {r['mean_encodes']:.1f} / {r['max_encodes']} | "
                     f"{r['median_s']:.2f} | {r['violations']} |")
    total = sum(violations.values())
    lines += ["", f"Violations over {len(result['records'])} image-target pairs: "
              + (", ".join(f"{name.replace('_', ' ')} {count}" for name, count in violations.items()) + ".")
              + (" None." if total == 0 else "")]
    bad = [r for r in result["records"] if r["violations"]]
    if bad:
        lines += ["", "| image | target bpp | bpp | quality | encodes | quality 0 / 100 bpp | violations |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['image']} | {r['target_bpp']:g} | {_fmt(r['bpp'], 4)} | "
                  f"{'n/a' if r['quality'] is None else format(r['quality'], 'g')} | {r['encodes']} | "
                  f"{r['min_bpp']:.4f} / {r['max_bpp']:.4f} | {', '.join(r['violations'])} |" for r in bad]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    paths = list_images(args.data)[: args.limit]
    if not paths:
        raise SystemExit(f"no images in {args.data}")
    pipe = RDCPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    records = []
    for path in paths:
        records += run_image(pipe, path, args.targets, args.tolerance, args.max_encodes)
        done = records[-len(args.targets):]
        print(f"[{time.strftime('%H:%M:%S')}] {path.name}: " + ", ".join(
            f"{r['target_bpp']:g}→{'unreachable' if r['unreachable'] else format(r['bpp'], '.4f')} "
            f"({r['encodes']} enc)" for r in done), file=sys.stderr, flush=True)
    summary, violations = summarize(records)
    info = machine_info(args.device) | {"model": pipe.model_name, "model_arg": str(args.model), "data": str(args.data),
                                        "images": len(paths), "targets": list(args.targets),
                                        "tolerance": args.tolerance, "max_encodes": args.max_encodes}
    result = {"info": info, "summary": summary, "violations": violations, "records": records}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rate_control.json").write_text(json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n")
    (args.out / "rate_control.md").write_text(markdown(result))
    print((args.out / "rate_control.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
