"""Video benchmark of issue 6: inter coding vs all-intra, and temporally consistent vs per-frame refinement.

    python benchmarks/video.py --clip ../shared/data/video/BasketballPass_416x240 --fps 50 \
        --model rdc-bsds --gop 8 --out benchmarks/results/video

One clip, coded twice from the same frames at the model's video quality (``RDCVideoPipeline.quality``, the one
its P-frame codec was trained for; I-frames are the image codec at that quality): all-intra (every frame an
I-frame, GOP 1) and with P-frames (GOP ``--gop``). Each file is decoded fast (codecs only) and refined, the
refinement with noise drawn independently per frame (per-frame refinement, the baseline) or one noise field shared
by every frame (the pipeline's default). Per frame: its type, bpp (from the bytes of its sections), PSNR,
LPIPS (AlexNet) and flicker, the mean over pixels of |(out_t − out_{t−1}) − (in_t − in_{t−1})|
on the 0–255 scale (0 when the decoded clip changes between frames exactly as the source does). Writes
``video.json`` (every frame), ``video.md`` (the table) and ``video.png`` (per-frame curves).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rdc_diffusers import RDCVideoPipeline
from rdc_diffusers.evaluation.results import machine_info
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.media.video_io import read_video
from rdc_diffusers.metrics.lpips import lpips
from rdc_diffusers.metrics.quality import psnr

DECODES = {  # name -> decompress() arguments
    "fast": {"refine": False},
    "refined, independent noise": {"temporal_noise": "independent"},
    "refined, shared noise": {"temporal_noise": "shared"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", required=True, help="a video file or a folder of frames")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--gop", type=int, default=8)
    parser.add_argument("--out", required=True, help="folder for video.json, video.md and video.png")
    return parser.parse_args()


def frame_scores(decoded: torch.Tensor, source: torch.Tensor) -> list[dict]:
    """PSNR, LPIPS and flicker of each decoded frame ([T, 3, H, W] in [0, 1] both)."""
    scores = []
    for t in range(len(source)):
        score = {"psnr": psnr(decoded[t : t + 1], source[t : t + 1]),
                 "lpips": lpips(decoded[t : t + 1], source[t : t + 1]).item()}
        if t > 0:
            change = (decoded[t] - decoded[t - 1]) - (source[t] - source[t - 1])
            score["flicker"] = 255 * change.abs().mean().item()
        scores.append(score)
    return scores


def summarize(frames: list[dict], bpp: float) -> dict:
    """Means over the clip, and over its I- and P-frames apart."""
    summary = {"bpp": bpp} | {k: statistics.fmean(f[k] for f in frames if k in f) for k in ("psnr", "lpips", "flicker")}
    for kind in ("I", "P"):
        chosen = [f for f in frames if f["type"] == kind]
        if chosen:
            summary[f"{kind}_frames"] = len(chosen)
            summary[f"{kind}_bpp"] = statistics.fmean(f["bpp"] for f in chosen)
            summary[f"{kind}_psnr"] = statistics.fmean(f["psnr"] for f in chosen)
    return summary


def markdown(rows: list[dict], info: dict) -> str:
    lines = [
        f"# Video: {info['clip']} ({info['frames']} frames, {info['width']}x{info['height']}, {info['fps']} fps)",
        "",
        f"Model `{info['model']}`" + (f" at quality {info['quality']:g}" if info.get("quality") is not None else "")
        + f", command: `{info['command']}`. Machine: {info['machine']}.",
        "Flicker: mean |(out_t − out_{t−1}) − (in_t − in_{t−1})| on the 0–255 scale (lower: steadier).",
        "",
        "| coding | decode | bpp | PSNR (dB) | LPIPS | flicker | I-frame bpp / PSNR | P-frame bpp / PSNR | "
        "decode s/frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row["summary"]
        i_part = f"{s['I_bpp']:.3f} / {s['I_psnr']:.2f}" if "I_bpp" in s else "–"
        p_part = f"{s['P_bpp']:.3f} / {s['P_psnr']:.2f}" if "P_bpp" in s else "–"
        lines.append(f"| {row['coding']} | {row['decode']} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['lpips']:.4f} | "
                     f"{s['flicker']:.3f} | {i_part} | {p_part} | {row['decode_s_per_frame']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for row in rows:
        label = f"{row['coding']}, {row['decode']}"
        frames = row["frames"]
        if row["decode"] == "fast":
            axes[0].plot([f["bpp"] for f in frames], label=row["coding"])
        axes[1].plot([f["psnr"] for f in frames], label=label)
        axes[2].plot(range(1, len(frames)), [f["flicker"] for f in frames[1:]], label=label)
    for ax, title in zip(axes, ("bits per pixel (per frame)", "PSNR (dB)", "flicker (0-255)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = read_video(args.clip, fps=args.fps)
    source = torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1) for f in clip.frames])
    source = source.float() / 255
    pipe = RDCVideoPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for coding, gop in (("all-intra", 1), (f"P-frames, GOP {args.gop}", args.gop)):
        start = time.perf_counter()
        data = pipe.compress(clip.frames, fps=clip.fps, gop_size=gop)
        encode_s = (time.perf_counter() - start) / len(clip.frames)
        for decode, kwargs in DECODES.items():
            start = time.perf_counter()
            decoded = pipe.decompress(data, output_type="pt", **kwargs)
            decode_s = (time.perf_counter() - start) / len(clip.frames)
            frames = [{"type": kind, "bpp": bpp} | score for kind, bpp, score in
                      zip(decoded.frame_types, decoded.frame_bpp, frame_scores(decoded.frames, source), strict=True)]
            rows.append({"coding": coding, "gop": gop, "decode": decode, "bytes": len(data),
                         "encode_s_per_frame": encode_s, "decode_s_per_frame": decode_s,
                         "summary": summarize(frames, decoded.bpp), "frames": frames})
            print(json.dumps({k: rows[-1][k] for k in ("coding", "decode", "summary")}), flush=True)
    width, height = clip.frames[0].size
    info = {"clip": args.clip, "frames": len(clip.frames), "width": width, "height": height, "fps": str(clip.fps),
            "model": args.model, "quality": pipe.quality, "command": "python " + " ".join(sys.argv)}
    m = machine_info()
    info["machine"] = f"{m['processor']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, torch {m['torch']}"
    (out / "video.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    (out / "video.md").write_text(markdown(rows, info))
    plot(rows, out / "video.png")
    print(f"wrote {out / 'video.json'}, {out / 'video.md'} and {out / 'video.png'}")


if __name__ == "__main__":
    main()
