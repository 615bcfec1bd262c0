"""The distortion-perception curve of the refined decode: PSNR against LPIPS and patch FID/KID over ``strength`` and
the step count, at several qualities.

    python benchmarks/perception.py [--model rdc-bsds] [--data ../shared/data/kodak] [--limit N]
        [--qualities 25 50 75] [--strengths 0 0.25 0.5 0.75 1] [--steps 1] [--eta 0] [--seed 0 [1 ...]] [--no-fid]
        [--out benchmarks/results/perception]

Each image is compressed once per quality and seed; the same bytes are decoded once per (steps, strength) pair with
the model's own scheduler (``pipe.decompress(data, num_inference_steps=n, strength=s)``), so the points differ only
in the decode. Strength 0 is the fast decode. With several seeds a point is the mean of its per-seed means (FID/KID
each over one seed's patches) and its ``<metric>_sd`` the standard deviation across seeds: how far the sampling
noise alone moves it, so that two points closer than that are not told apart. Writes ``perception.json`` / ``.csv``
(every record and the per-point means; the JSON also ``per_seed``), ``perception.md`` (the tables) and
``perception.png`` (the curves) into ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.results import machine_info, save_results, summarize
from rdc_diffusers.evaluation.scoring import evaluate_pipeline
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.text import plural
from rdc_diffusers.training import list_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled name, folder or Hub id")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"), help="folder of images")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/perception"), help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--qualities", type=float, nargs="+", default=[25, 50, 75])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="default: the model's default steps")
    parser.add_argument("--eta", type=float, default=0.0,
                        help="DDIM's eta for every refined decode (0: deterministic steps, 1: DDPM-like fresh noise)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="the refinement seed written into every file; several: each point is the mean over "
                             "them, with its spread across seeds")
    parser.add_argument("--no-fid", dest="fid", action="store_false", help="skip patch FID/KID (the slowest part)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if not all(0 <= s <= 1 for s in args.strengths):
        parser.error("--strengths must be in 0..1")
    if args.steps is not None and not all(n >= 1 for n in args.steps):
        parser.error("--steps must be at least 1 (strength 0 is the fast decode)")
    return args


def decode_configs(steps: list[int], strengths: list[float], eta: float = 0.0) -> dict[str, dict]:
    """``{name: decompress kwargs}``: the fast decode once, then every (steps, strength > 0) pair, at ``eta``."""
    configs = {"fast": {"refine": False}} if 0 in strengths else {}
    for n in steps:
        for s in strengths:
            if s > 0:
                configs[f"{n}step-s{s:g}"] = {"num_inference_steps": n, "strength": s} | ({"eta": eta} if eta else {})
    return configs


SPREAD_METRICS = ("psnr", "lpips", "fid", "kid")


def over_seeds(per_seed: list[dict]) -> dict:
    """Each point's entry of the first seed's summary with its metrics averaged over the seeds' summaries; with
    several seeds also ``<metric>_sd``, their standard deviation across seeds."""
    summary = {}
    for key, entry in per_seed[0].items():
        summary[key] = dict(entry)
        for metric in (m for m in SPREAD_METRICS if m in entry):
            values = [seed_summary[key][metric] for seed_summary in per_seed]
            summary[key][metric] = statistics.fmean(values)
            if len(values) > 1:
                summary[key][f"{metric}_sd"] = statistics.stdev(values)
    return summary


def cell(entry: dict, metric: str, digits: int) -> str:
    """``mean`` or, measured over several seeds, ``mean ± sd``."""
    text = f"{entry[metric]:.{digits}f}"
    return text + (f" ± {entry[f'{metric}_sd']:.{digits}f}" if f"{metric}_sd" in entry else "")


def markdown(summary: dict, info: dict, fid: bool) -> str:
    """One table per quality: the decode, its steps and strength, and the means (± their spread over seeds)."""
    seeds = info["seeds"]
    spread = (f"; means over seeds {', '.join(map(str, seeds))}, ± their standard deviation across seeds"
              if len(seeds) > 1 else f"; seed {seeds[0]}")
    lines = [f"# Distortion-perception curve of `{info['model']}`", "",
             f"{info['images']} images of `{info['data']}`{spread}; command: `{info['command']}`.", ""]
    columns = ["decode", "steps", "strength", "bpp", "psnr", "lpips"] + (["fid", "kid"] if fid else [])
    for quality in info["qualities"]:
        entries = [e for e in summary.values() if e["quality"] == quality]
        lines += [f"## quality {quality:g} ({entries[0]['bpp']:.3f} bpp)", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for e in entries:
            cells = [e["decode"], f"{round(e['steps'])}", f"{e['strength']:g}", f"{e['bpp']:.4f}",
                     cell(e, "psnr", 2), cell(e, "lpips", 4)] + ([cell(e, "fid", 2), cell(e, "kid", 4)] if fid else [])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, qualities: list[float], path: Path, fid: bool) -> None:
    """PSNR (y) against LPIPS and FID (x), one line per quality and step count, points labelled by strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["lpips", "fid"] if fid else ["lpips"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for quality in qualities:
            entries = [e for e in summary.values() if e["quality"] == quality]
            fast = [e for e in entries if e["strength"] == 0]
            for steps in sorted({round(e["steps"]) for e in entries if e["steps"] > 0}):
                line = fast + sorted((e for e in entries if e["steps"] == steps), key=lambda e: e["strength"])
                ax.plot([e[metric] for e in line], [e["psnr"] for e in line], "o-",
                        label=f"q{quality:g} ({line[0]['bpp']:.2f} bpp), {plural(steps, 'step')}")
                for e in line:
                    ax.annotate(f"{e['strength']:g}", (e[metric], e["psnr"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel(f"{metric.upper()} (lower is better)")
        ax.set_ylabel("PSNR dB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("refined decode over strength (labels): fidelity vs realism")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    steps = args.steps or [pipe.config.default_num_inference_steps]
    paths = list_images(args.data)[: args.limit]
    decodes = decode_configs(steps, args.strengths, args.eta)
    records, per_seed = [], {}
    for seed in args.seed:
        seed_records = evaluate_pipeline(pipe, paths, decodes=decodes, quality=args.qualities, seed=seed, fid=args.fid,
                                         progress=True)
        records += [r | {"seed": seed} for r in seed_records]
        per_seed[str(seed)] = summarize(seed_records, fid=args.fid)
    summary = over_seeds(list(per_seed.values()))
    info = machine_info() | {"model": args.model, "data": str(args.data), "images": len(paths),
                             "qualities": args.qualities, "seeds": args.seed,
                             "command": " ".join(["python", *sys.argv])}
    save_results(args.out / "perception.json", records, summary, info, per_seed=per_seed)
    (args.out / "perception.md").write_text(markdown(summary, info, args.fid))
    plot(summary, args.qualities, args.out / "perception.png", args.fid)
    print(markdown(summary, info, args.fid))


if __name__ == "__main__":
    main()
