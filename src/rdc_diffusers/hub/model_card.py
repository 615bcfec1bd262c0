"""Hugging Face model cards (README.md with YAML front matter), rendered from what was measured and logged.

model_cards/make_cards.py renders the shipped models' cards from benchmarks/results/*.json;
``RDCPipeline.save_pretrained`` writes a card for any saved model (with numbers only when it is given some).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from ..errors import MissingResultsError
from ..text import plural

TAGS = ["image-compression", "diffusion", "learned-compression", "compressai", "rdc-diffusers"]
METRICS = [("bpp", "bpp", "bits per pixel (whole file)"), ("psnr", "psnr", "PSNR (dB)"),
           ("ms_ssim", "ms_ssim", "MS-SSIM"), ("lpips", "lpips", "LPIPS (AlexNet)")]
"""(results key, model-index type, name); fid/kid are added when the results carry them."""
OPTIONAL_METRICS = [("fid", "fid", "FID"), ("kid", "kid", "KID")]


def load_summaries(paths: Iterable[str | Path]) -> list[dict]:
    """Every summary entry of every results file (``{"summary": {key: entry}}``), each with its source file."""
    entries = []
    for path in sorted(Path(p) for p in paths):
        summary = json.loads(Path(path).read_text()).get("summary", {})
        entries += [{**entry, "_key": key, "_file": Path(path).name} for key, entry in summary.items()]
    return entries


def select_results(entries: list[dict], name: str, scheduler: str, steps: int,
                   default_quality: float | None = None) -> list[dict]:
    """The rate points of model ``name``: per quality, the fast decode and the default refined decode (its
    scheduler, its stored step count), as ``[{"quality", "fast", "refined"}]`` sorted by quality.

    A variable-rate model's entries carry their ``quality``; an entry without one (a single-rate model) is one
    point with ``quality`` None. With ``default_quality``, that quality must be among the points (the card's
    headline and its model-index). Raises ``MissingResultsError`` naming what is missing or measured twice, so a
    card cannot silently lose its numbers.
    """
    mine = [e for e in entries if e.get("method") == name]
    if not mine:
        raise MissingResultsError(f"no benchmark results for {name!r} (no summary entry with method == {name!r})")
    keys = [e["_key"] for e in mine]
    points: dict = {}
    for entry in mine:
        kind = "fast" if entry.get("decode") == "fast" else \
            "refined" if entry.get("scheduler") == scheduler and entry.get("steps") == steps else None
        if kind is None:
            continue
        point = points.setdefault(entry.get("quality"), {"quality": entry.get("quality")})
        if kind in point:
            found = [point[kind]["_file"] + ":" + point[kind]["_key"], entry["_file"] + ":" + entry["_key"]]
            raise MissingResultsError(f"ambiguous benchmark results for {name!r}: {found}")
        point[kind] = entry
    for point in points.values():
        if "fast" not in point or "refined" not in point:
            what = "fast" if "fast" not in point else f"refined ({scheduler}, {plural(steps, 'step')})"
            at = "" if point["quality"] is None else f" at quality {point['quality']:g}"
            raise MissingResultsError(f"no {what} benchmark results for {name!r}{at}; have: {keys}")
    if not points:
        raise MissingResultsError(f"no fast benchmark results for {name!r}; have: {keys}")
    if default_quality is not None and default_quality not in points and None not in points:
        raise MissingResultsError(f"no benchmark results for {name!r} at its default quality {default_quality:g}; "
                                  f"have qualities {sorted(q for q in points if q is not None)}")
    return sorted(points.values(), key=lambda p: -1.0 if p["quality"] is None else p["quality"])


def headline(points: list[dict], default_quality: float | None) -> dict:
    """The point at the default quality (else the first: the only point of a single-rate model)."""
    return next((p for p in points if p["quality"] == default_quality), points[0])


def training_budget(training_dir: str | Path) -> dict:
    """Minutes and iterations each run added, from ``<run>_train_log.jsonl``, in natural order (phase 2 before 10).

    ``<run>`` is the stage (``codec``, ``residual``, ``inter``), or ``<stage>-<tag>`` for an earlier run of a
    model that was fine-tuned again (e.g. ``codec-0.0018`` before ``codec`` at a new λ). A ``*_average.json``
    (``{"runs": [...]}``) names runs trained side by side whose weights were averaged. A resumed run restarts
    the clock, which splits a log into segments. Steps are global, so a segment is counted from one log interval
    before its first row (its checkpoint, to within an interval) or from a first row without a loss (the residual
    stage logs one at its start step).
    """
    budget = {}
    logs = sorted(Path(training_dir).glob("*_train_log.jsonl"), key=lambda p: _natural_key(p.name))
    for log in logs:
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        segments, last = [[]], 0.0
        for row in rows:
            if row["minutes"] < last:  # a resumed run: its clock starts again
                segments.append([])
            segments[-1].append(row)
            last = row["minutes"]
        args_file = log.with_name(log.name.replace("_train_log.jsonl", "_args.json"))
        args = json.loads(args_file.read_text()) if args_file.exists() else {}
        budget[log.name.split("_")[0]] = {"minutes": round(sum(s[-1]["minutes"] for s in segments)),
                                          "iterations": _iterations(segments), "args": args}
    for record in sorted(Path(training_dir).glob("*_average.json")):  # runs whose weights were averaged
        group = tuple(json.loads(record.read_text())["runs"])
        for run in group:
            budget[run]["averaged_group"] = group
    return budget


def _iterations(segments: list[list[dict]]) -> int:
    """Steps the segments covered, each counted once: a segment spans from its first step less the logging interval
    to its last step, and a run resumed from a checkpoint a few steps before where the last one stopped covers those
    steps again."""
    spans = []
    for segment in segments:
        steps = sorted({row["step"] for row in segment})
        interval = steps[1] - steps[0] if len(steps) > 1 and "loss" in segment[0] else 0
        spans.append((max(steps[0] - interval, 0), steps[-1]))
    covered, reached = 0, -1
    for start, end in sorted(spans):
        covered += max(end - max(start, reached), 0)
        reached = max(reached, end)
    return covered


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def eval_results(entries: list[tuple[str, dict]], dataset: str = "Kodak", quality: float | None = None) -> list:
    """One huggingface_hub ``EvalResult`` per (decode, metric): what the Hub reads as the card's model-index."""
    from huggingface_hub import EvalResult

    at = "" if quality is None else f" at quality {quality:g}"
    return [
        EvalResult(task_type="image-to-image", task_name=f"Image compression{at}, {decode} decode",
                   dataset_type=dataset.lower(), dataset_name=f"{dataset} ({entry.get('count', '?')} images)",
                   metric_type=kind, metric_name=f"{label}, {decode}", metric_value=round(float(entry[key]), 4))
        for decode, entry in entries
        for key, kind, label in METRICS + OPTIONAL_METRICS
        if entry.get(key) is not None
    ]


def _metric(entry: dict, key: str, digits: int) -> str:
    value = entry.get(key)
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def render_card(
    name: str,
    *,
    config: dict,
    scheduler: str,
    results: list[dict] | None = None,
    results_info: dict | None = None,
    training: dict | None = None,
    repo_id: str | None = None,
    video_quality: float | None = None,
    refiner: bool = False,
) -> str:
    """The card as Markdown.

    ``config``: the pipeline's (``model_index.json``: ``default_num_inference_steps``, ``default_quality``);
    ``results``: the rate points of :func:`select_results`; ``results_info``: the result file's ``info``;
    ``training``: :func:`training_budget`; ``video_quality``: the quality of the model's P-frame codec
    (``inter_codec/config.json``), when it has one; ``refiner``: whether it holds a ``refiner/`` folder.
    """
    steps = int(config.get("default_num_inference_steps", 1))
    default_quality = config.get("default_quality")
    hub_id = repo_id or f"<your-org>/{name}"  # DiffusionPipeline needs a Hub id or a folder, not a bundled name
    repo_id = repo_id or name
    info = results_info or {}
    dataset = Path(info["data"]).name.capitalize() if info.get("data") else "Kodak"
    from huggingface_hub import ModelCardData

    refined_label = f"refined ({scheduler}, {plural(steps, 'step')})"
    top = headline(results, default_quality) if results else None
    data = ModelCardData(
        license="apache-2.0",
        library_name="diffusers",
        pipeline_tag="image-to-image",
        tags=TAGS,
        datasets=["bsds500"],
        model_name=name,
        eval_results=eval_results([("fast", top["fast"]), (refined_label, top["refined"])], dataset,
                                  top["quality"]) if top else None,
    )
    lines = ["---", data.to_yaml(), "---", "", f"# {name}", ""]
    lines += [
        "A perceptual image codec from rdc-diffusers: a learned codec (compressai "
        "mean-scale hyperprior, real rANS bytes) whose files decode **fast** (its fidelity decoder, `x_init`) or "
        f"**refined** (plus a residual sampled by a diffusion UNet; default {scheduler}, {steps} "
        f"step{'' if steps == 1 else 's'}, seeded from the file so every decoder gets the same pixels).",
        "",
    ]
    if default_quality is not None:
        lines += [
            "One model for every rate: the rate is a `quality` from 0 (fewest bits) to 100 (most), in steps of 0.01, "
            f"stored in the file (default {default_quality:g}); or give a target size in bits per pixel and the "
            "encoder picks the highest quality that fits (`target_bpp`, a few encodes of the latent).",
            "",
        ]
    if video_quality is not None or (training and "inter" in training):
        at = f", at quality {video_quality:g} (its P-frame codec has one rate)" if video_quality is not None else ""
        lines += [
            "The folder also holds `inter_codec/`, the P-frame codec that makes this model a video codec too"
            f"{at}: "
            f'`RDCVideoPipeline.from_pretrained("{repo_id}")` or `rdc compress-video`. See docs/video.md and '
            "benchmarks/results/video/video.md of rdc-diffusers for its design and measurements.",
            "",
        ]
    if refiner:
        lines += [
            "It also holds `refiner/`, which refines standard JPEG, WebP and AVIF files (the file stays one any viewer "
            f'shows): `RDCRefinerPipeline.from_pretrained("{repo_id}")` or `rdc refine`. See '
            "benchmarks/results/refiner/refiner.md of rdc-diffusers for its measurements.",
            "",
        ]
    count = top["fast"].get("count", "?") if top else None
    lines += [f"## Results ({dataset}, {count} images)" if top else "## Results", ""]
    if not results:
        lines += ["Not benchmarked: run `python benchmarks/run.py --models <folder>` to measure this model.", ""]
    else:
        lines += [f"| quality | bpp | fast (x_init): PSNR dB / MS-SSIM / LPIPS | {refined_label}: PSNR dB / MS-SSIM / "
                  "LPIPS |", "|---|---|---|---|"]
        for point in results:
            quality = "–" if point["quality"] is None else f"{point['quality']:g}"
            if point is top and default_quality is not None:
                quality = f"**{quality} (default)**"
            fast, refined = point["fast"], point["refined"]
            lines.append(f"| {quality} | {_metric(fast, 'bpp', 3)} | {_metric(fast, 'psnr', 2)} / "
                         f"{_metric(fast, 'ms_ssim', 3)} / {_metric(fast, 'lpips', 3)} | "
                         f"{_metric(refined, 'psnr', 2)} / {_metric(refined, 'ms_ssim', 3)} / "
                         f"{_metric(refined, 'lpips', 3)} |")
        at = "" if top["quality"] is None else f" at quality {top['quality']:g}"
        lines += ["", f"Median decode time{at}: fast {_metric(top['fast'], 'median_decode_s', 2)} s, refined "
                  f"{_metric(top['refined'], 'median_decode_s', 2)} s; encode "
                  f"{_metric(top['fast'], 'median_encode_s', 2)} s."]
        source = info.get("command")
        lines += ["", f"Measured by `{source}`" if source else "Measured by benchmarks/run.py",
                  f"on {info.get('processor', 'a CPU')} with {info.get('torch_threads', '?')} torch threads (device: "
                  f"{info.get('device', 'cpu')}). bpp counts the whole file; means over images.", ""]
        if info.get("note"):
            lines += [f"Note: {info['note']}", ""]
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
    ]
    if default_quality is not None:
        lines += [
            'smaller = pipe.compress(Image.open("photo.png"), quality=20)        # any quality in [0, 100]',
            'fitted = pipe.compress(Image.open("photo.png"), target_bpp=0.3)     # at most 0.3 bpp',
        ]
    lines += [
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
        "On the command line: `rdc compress photo.png -o photo.rdc --model " + repo_id
        + (" --quality 20`." if default_quality is not None else "`."),
        "",
        "## Training data and budget",
        "",
        "Trained on the 300 BSDS500 training photos (481x321); validation on BSDS500 test crops. Kodak was never "
        "used in training.",
        "",
    ]
    if training:
        lines += ["| stage | minutes | iterations | settings |", "|---|---|---|---|"]
        outputs = {t["args"]["output"]: run for run, t in training.items() if t["args"].get("output")}
        starts = {run: _warm_start(t["args"]["init"], name, outputs) for run, t in training.items()
                  if t["args"].get("init")}
        labels = {run: ("this model’s earlier weights" if start == name
                        else f"run {start}" if start in outputs.values() else start)
                  for run, start in starts.items()}
        for run, t in training.items():
            settings = _settings(run, t["args"], labels.get(run))
            lines.append(f"| {run} | {t['minutes']} | {t['iterations']} | {settings} |")
        total = sum(t["minutes"] for t in training.values())
        warm = sorted(set(starts.values()) - {name} - set(outputs.values()))
        lines += ["", f"In all {total} minutes on a 2-core CPU (no GPU)"
                  + (f", on top of the training of {', '.join(warm)} it started from" if warm else "")
                  + ". The logs and arguments ship with the model in `training/`.", ""]
        for group in dict.fromkeys(t["averaged_group"] for t in training.values() if "averaged_group" in t):
            runs = " and ".join(f"`{r}`" for r in group)
            lines += [f"Runs {runs} were trained side by side from the same weights, and their weights "
                      "averaged (`examples/average_weights.py`).", ""]
    else:
        lines += ["No training logs were saved with this model.", ""]
    lines += [
        "## Limitations",
        "",
        "- Briefly trained on a CPU: the codec is below WebP and AVIF in PSNR at the same rate, and more "
        "refinement steps buy little with this small refiner (a few percent of LPIPS from 1 to 8 steps), which is "
        "why the default is few steps.",
        "- The refined decode invents plausible texture that is not in the original.",
        "- Decoding must use the same codec weights (files carry a fingerprint) and is only guaranteed on the "
        "same kind of hardware as encoding (compressai recomputes the entropy-coder indexes in floating point).",
        "- Alpha is not stored; grayscale is coded as RGB.",
        "",
    ]
    return "\n".join(lines)


def _settings(run: str, a: dict, start: str | None) -> str:
    """One training run's settings, from its saved arguments; ``start``: what it warm-started from, if anything."""
    stage = a.get("stage", run.split("-")[0])
    if stage in ("codec", "inter"):
        if stage == "codec" and a.get("lmbda_min") is not None:  # the variable-rate codec
            rate = (f"variable rate: λ {a['lmbda_min']}–{a.get('lmbda_max')} over quality 0–100, "
                    f"{a.get('gain_levels')} gain levels")
        else:
            rate = f"λ={a.get('lmbda')}"
        settings = (f"N={a.get('N')}, M={a.get('M')}, {rate}, crops {a.get('crop_size')}, "
                    f"batch {a.get('batch_size')}, lr {a.get('lr')}→{a.get('final_lr')}")
        if stage == "inter":
            at = f", I-frames at quality {a['quality']:g}" if isinstance(a.get("quality"), (int, float)) else ""
            settings = f"video P-frame codec, {a.get('frames')}-frame synthetic clips{at}, " + settings
    else:
        settings = (f"UNet {a.get('block_out_channels')}, {a.get('prediction_type')}-prediction, "
                    f"ρ={a.get('rho')} LPIPS, crops {a.get('crop_size')}, batch {a.get('batch_size')}, "
                    f"lr {a.get('lr')}→{a.get('final_lr')}, EMA {a.get('ema_decay')}")
        if a.get("sampler_steps"):  # saved since session 24 (before: half the batches, on 1 to 8 steps)
            steps = "/".join(str(n) for n in a["sampler_steps"])
            settings += f", {a.get('few_step_fraction', 0.5):.0%} of batches on the {steps}-step sampler's own states"
        if a.get("max_upscale", 1) > 1:
            settings += f", crops at a random zoom up to {a['max_upscale']:g}x"
        if stage == "refiner":
            draws = Counter(a.get("bases", []))  # a codec named n times in --bases gets n shares of the crops
            share = "" if len(set(draws.values())) < 2 else f" (drawn {':'.join(map(str, draws.values()))})"
            settings = f"refiner of {' / '.join(draws)} decodes{share}, " + settings
            if a.get("base_qualities"):
                settings += f", trained over Pillow qualities {' '.join(a['base_qualities'])}"
    if a.get("mixed_precision", "no") != "no":
        settings += f", {a['mixed_precision']} mixed precision"
    if a.get("seed") is not None:  # continuations that kept the seed replayed the same crops and noise
        settings += f", seed {a['seed']}"
    if start:
        settings += f", warm start from {start}"
    return settings


def _warm_start(init: str, name: str, outputs: dict[str, str]) -> str:
    """The model a run started from: ``name`` itself when ``init`` lies anywhere in its folder (e.g. its
    ``refiner/unet``); the run whose output folder holds it, when that run is one of the model's own (``outputs``:
    output folder → run); else the folder holding the component (``runs/vr_codec/codec`` → ``vr_codec``)."""
    path = Path(init)
    if name in path.parent.parts:
        return name
    return next((run for out, run in outputs.items() if Path(out) in path.parents), path.parent.name)
