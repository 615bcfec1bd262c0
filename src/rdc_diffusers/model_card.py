"""Hugging Face model cards (README.md with YAML front matter), rendered from what was measured and logged.

model_cards/make_cards.py renders the shipped models' cards from benchmarks/results/*.json;
``RDCPipeline.save_pretrained`` writes a card for any saved model (with numbers only when it is given some).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

TAGS = ["image-compression", "diffusion", "learned-compression", "compressai", "rdc-diffusers"]
METRICS = [("bpp", "bpp", "bits per pixel (whole file)"), ("psnr", "psnr", "PSNR (dB)"),
           ("ms_ssim", "ms_ssim", "MS-SSIM"), ("lpips", "lpips", "LPIPS (AlexNet)")]
"""(results key, model-index type, name); fid/kid are added when the results carry them."""
OPTIONAL_METRICS = [("fid", "fid", "FID"), ("kid", "kid", "KID")]


class MissingResultsError(LookupError):
    """A model has no benchmark entry: its card would have no measured numbers, so it is not written."""


def load_summaries(paths: Iterable[str | Path]) -> list[dict]:
    """Every summary entry of every results file (``{"summary": {key: entry}}``), each with its source file."""
    entries = []
    for path in sorted(Path(p) for p in paths):
        summary = json.loads(Path(path).read_text()).get("summary", {})
        entries += [{**entry, "_key": key, "_file": Path(path).name} for key, entry in summary.items()]
    return entries


def select_results(entries: list[dict], name: str, scheduler: str, steps: int) -> tuple[dict, dict]:
    """The fast decode and the model's default refined decode (its scheduler, its stored step count).

    Raises ``MissingResultsError`` naming what is missing, so a card cannot silently lose its numbers.
    """
    mine = [e for e in entries if e.get("method") == name]
    if not mine:
        raise MissingResultsError(f"no benchmark results for {name!r} (no summary entry with method == {name!r})")
    fast = [e for e in mine if e.get("decode") == "fast"]
    refined = [e for e in mine if e.get("scheduler") == scheduler and e.get("steps") == steps]
    if not fast or not refined:
        what = "fast" if not fast else f"refined ({scheduler}, {steps} steps)"
        raise MissingResultsError(f"no {what} benchmark results for {name!r}; have: {[e['_key'] for e in mine]}")
    if len(fast) > 1 or len(refined) > 1:
        found = [e["_file"] + ":" + e["_key"] for e in fast + refined]
        raise MissingResultsError(f"ambiguous benchmark results for {name!r}: {found}")
    return fast[0], refined[0]


def training_budget(training_dir: str | Path) -> dict:
    """Minutes and iterations per run from ``<run>_train_log.jsonl`` (resumed runs restart the clock).

    ``<run>`` is the stage (``codec``, ``residual``, ``inter``), or ``<stage>-<tag>`` for an earlier run of a
    model that was fine-tuned again (e.g. ``codec-0.0018`` before ``codec`` at a new λ).
    """
    budget = {}
    for log in sorted(Path(training_dir).glob("*_train_log.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        minutes, last = 0.0, 0.0
        for row in rows:
            if row["minutes"] < last:  # a resumed run: its clock starts again
                minutes += last
            last = row["minutes"]
        args_file = log.with_name(log.name.replace("_train_log.jsonl", "_args.json"))
        args = json.loads(args_file.read_text()) if args_file.exists() else {}
        budget[log.name.split("_")[0]] = {"minutes": round(minutes + last), "iterations": rows[-1]["step"],
                                          "args": args}
    return budget


def eval_results(entries: list[tuple[str, dict]]) -> list:
    """One huggingface_hub ``EvalResult`` per (decode, metric): what the Hub reads as the card's model-index."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(task_type="image-to-image", task_name=f"Image compression, {decode} decode",
                   dataset_type="kodak", dataset_name=f"Kodak ({entry.get('count', '?')} images)",
                   metric_type=kind, metric_name=f"{label}, {decode}", metric_value=round(float(entry[key]), 4))
        for decode, entry in entries
        for key, kind, label in METRICS + OPTIONAL_METRICS
        if entry.get(key) is not None
    ]


def render_card(
    name: str,
    *,
    config: dict,
    scheduler: str,
    results: tuple[dict, dict] | None = None,
    results_info: dict | None = None,
    training: dict | None = None,
    repo_id: str | None = None,
) -> str:
    """The card as Markdown. ``results`` = (fast, refined) summary entries; ``training`` = :func:`training_budget`."""
    steps = int(config.get("default_num_inference_steps", 1))
    hub_id = repo_id or f"<your-org>/{name}"  # DiffusionPipeline needs a Hub id or a folder, not a bundled name
    repo_id = repo_id or name
    from huggingface_hub import ModelCardData

    refined_label = f"refined ({scheduler}, {steps} step{'s' * (steps != 1)})"
    data = ModelCardData(
        license="apache-2.0",
        library_name="diffusers",
        pipeline_tag="image-to-image",
        tags=TAGS,
        datasets=["bsds500"],
        model_name=name,
        eval_results=eval_results([("fast", results[0]), (refined_label, results[1])]) if results else None,
    )
    lines = ["---", data.to_yaml(), "---", "", f"# {name}", ""]
    lines += [
        "A perceptual image codec from rdc-diffusers: a learned codec (compressai "
        "mean-scale hyperprior, real rANS bytes) whose files decode **fast** (its fidelity decoder, `x_init`) or "
        f"**refined** (plus a residual sampled by a diffusion UNet; default {scheduler}, {steps} "
        f"step{'' if steps == 1 else 's'}, seeded from the file so every decoder gets the same pixels).",
        "",
    ]
    if training and "inter" in training:
        lines += [
            "The folder also holds `inter_codec/`, the P-frame codec that makes this model a video codec too: "
            f'`RDCVideoPipeline.from_pretrained("{repo_id}")` or `rdc compress-video`. See docs/video.md and '
            "benchmarks/results/video/video.md of rdc-diffusers for its design and measurements.",
            "",
        ]
    lines += [
        "## Results (Kodak, 24 images)",
        "",
    ]
    if results is None:
        lines += ["Not benchmarked: run `python benchmarks/run.py --model <folder>` to measure this model.", ""]
    else:
        lines += ["| decode | bpp | PSNR dB | MS-SSIM | LPIPS | median decode s |", "|---|---|---|---|---|---|"]
        for label, e in (("fast (x_init)", results[0]), (refined_label, results[1])):
            lines.append(f"| {label} | {e['bpp']:.3f} | {e['psnr']:.2f} | {e['ms_ssim']:.3f} | {e['lpips']:.3f} | "
                         f"{e.get('median_decode_s', float('nan')):.2f} |")
        source = (results_info or {}).get("command")
        lines += ["", f"Measured by `{source}`" if source else "Measured by benchmarks/run.py",
                  f"on {(results_info or {}).get('processor', 'a CPU')} with "
                  f"{(results_info or {}).get('torch_threads', '?')} torch threads (device: "
                  f"{(results_info or {}).get('device', 'cpu')}). bpp counts the whole file.", ""]
    lines += [
        "## Intended use",
        "",
        "Research and demonstration of diffusion-refined learned image compression: compress photos to `.rdc` "
        "files and compare fast and refined decodes. Not a replacement for JPEG/WebP/AVIF in production (see "
        "Limitations), and not for images where invented detail is unacceptable (medical, forensic, documents).",
        "",
        "## How to load",
        "",
        "```python",
        "from PIL import Image",
        "from rdc_diffusers import RDCPipeline   # pip install rdc-diffusers",
        "",
        f'pipe = RDCPipeline.from_pretrained("{repo_id}")',
        'data = pipe.compress(Image.open("photo.png"))   # bytes; bpp = 8 * len(data) / pixels',
        "fast = pipe.decompress(data, refine=False).images[0]",
        "refined = pipe.decompress(data).images[0]",
        "```",
        "",
        "With only the diffusers API in your code (rdc-diffusers must still be installed: the components are its "
        "classes), `import rdc_diffusers` once, or let diffusers import the pipeline file stored with the model:",
        "",
        "```python",
        "from diffusers import DiffusionPipeline",
        "",
        f'pipe = DiffusionPipeline.from_pretrained("{hub_id}", custom_pipeline="pipeline", trust_remote_code=True)',
        "```",
        "",
        "On the command line: `rdc compress photo.png -o photo.rdc --model " + repo_id + "`.",
        "",
        "## Training data and budget",
        "",
        "Trained on the 300 BSDS500 training photos (481x321); validation on BSDS500 test crops. Kodak was never "
        "used in training.",
        "",
    ]
    if training:
        lines += ["| stage | minutes | iterations | settings |", "|---|---|---|---|"]
        for run, t in training.items():
            a = t["args"]
            stage = a.get("stage", run.split("-")[0])
            if stage in ("codec", "inter"):
                settings = (f"N={a.get('N')}, M={a.get('M')}, λ={a.get('lmbda')}, crops {a.get('crop_size')}, "
                            f"batch {a.get('batch_size')}, lr {a.get('lr')}→{a.get('final_lr')}")
                if stage == "inter":
                    settings = f"video P-frame codec, {a.get('frames')}-frame synthetic clips, " + settings
            else:
                settings = (f"UNet {a.get('block_out_channels')}, {a.get('prediction_type')}-prediction, "
                            f"ρ={a.get('rho')} LPIPS, crops {a.get('crop_size')}, batch {a.get('batch_size')}, "
                            f"lr {a.get('lr')}→{a.get('final_lr')}, EMA {a.get('ema_decay')}")
            if a.get("init"):
                start = Path(a["init"]).parent.name
                settings += f", warm start from {'the earlier run above' if start == name else start}"
            lines.append(f"| {run} | {t['minutes']} | {t['iterations']} | {settings} |")
        total = sum(t["minutes"] for t in training.values())
        starts = {Path(t["args"]["init"]).parent.name for t in training.values() if t["args"].get("init")}
        warm = sorted(starts - {name})
        lines += ["", f"In all {total} minutes on a 2-core CPU (no GPU)"
                  + (f", on top of the training of {', '.join(warm)} it started from" if warm else "")
                  + ". The logs and arguments ship with the model in `training/`.", ""]
    else:
        lines += ["No training logs were saved with this model.", ""]
    lines += [
        "## Limitations",
        "",
        "- Briefly trained on a CPU: the codec is below WebP and AVIF in PSNR at the same rate, and more "
        "refinement steps make this small refiner worse, which is why the default is few steps.",
        "- One model per rate; the refined decode invents plausible texture that is not in the original.",
        "- Decoding must use the same codec weights (files carry a fingerprint) and is only guaranteed on the "
        "same kind of hardware as encoding (compressai recomputes the entropy-coder indexes in floating point).",
        "- Alpha is not stored; grayscale is coded as RGB.",
        "",
    ]
    return "\n".join(lines)
