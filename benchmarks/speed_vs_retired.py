"""Encode / decode time of ``rdc-bsds`` against the retired single-rate q3 model at equal rate (issue 11's target:
within 10 %), each run in its own code: the old commit is checked out in a temporary git worktree. With
``--old-model rdc-bsds`` it times the bundled model's code before and after a change (the old commit's own copy).

    python benchmarks/speed_vs_retired.py [--old-commit 3707594] [--old-model PATH_IN_THAT_COMMIT | rdc-bsds]
        [--image ../shared/data/kodak/kodim23.png] [--rounds 5] [--threads 1]
        [--out benchmarks/results/speed_vs_retired]

Rounds alternate old and new in fresh processes (so drift in the machine's load hits both); each round times every
operation 7 times after a warm-up and keeps the median; the table gives the median over rounds. The new model codes
the image at the highest quality whose file is not above the old file's size (its rate control).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_MODEL = "src/rdc_diffusers/bundled/rdc-bsds-q3"
OPERATIONS = ("encode", "decode_fast", "decode_refined")
TIMING = """
import json, statistics, sys, time
import torch
from PIL import Image
from rdc_diffusers import RDCPipeline
model, image_path, threads, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(threads)
pipe = RDCPipeline.from_pretrained(model)
pipe.set_progress_bar_config(disable=True)
image = Image.open(image_path).convert("RGB")
kwargs = {}
if target > 0:  # the quality rate control finds, then every timed encode at that quality
    from rdc_diffusers.bitstream.rdc import decode_file
    kwargs = {"quality": decode_file(pipe.compress(image, target_bpp=target)).header.quality}
data = pipe.compress(image, **kwargs)
def median_time(f, n=7):
    f()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
print(json.dumps({"bpp": 8 * len(data) / (image.width * image.height), **kwargs,
                  "encode": median_time(lambda: pipe.compress(image, **kwargs)),
                  "decode_fast": median_time(lambda: pipe.decompress(data, refine=False)),
                  "decode_refined": median_time(lambda: pipe.decompress(data))}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-commit", default="3707594", help="the last commit that shipped rdc-bsds-q3")
    parser.add_argument("--old-model", default=OLD_MODEL,
                        help="a folder inside the old commit, or a bundled name (the old commit's bundled copy)")
    parser.add_argument("--image", type=Path, default=REPO.parent / "shared/data/kodak/kodim23.png")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/speed_vs_retired")
    return parser.parse_args(argv)


def timed(src: Path, model: str, args: argparse.Namespace, target_bpp: float = 0.0) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(args.threads))
    result = subprocess.run([sys.executable, "-c", TIMING, model, str(args.image), str(args.threads), str(target_bpp)],
                            env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rdc-old-") as tmp:
        old = Path(tmp) / "old"
        old_model = args.old_model if "/" not in args.old_model else str(old / args.old_model)
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.old_commit], cwd=REPO, check=True)
        try:
            runs = {"old": [], "new": []}
            for round_ in range(args.rounds):
                runs["old"].append(timed(old / "src", old_model, args))
                runs["new"].append(timed(REPO / "src", "rdc-bsds", args, target_bpp=runs["old"][-1]["bpp"]))
                print(f"round {round_ + 1}: {json.dumps(runs)}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=True)
    medians = {side: {k: statistics.median(r[k] for r in rows) for k in ("bpp", *OPERATIONS)}
               for side, rows in runs.items()}
    ratios = {k: medians["new"][k] / medians["old"][k] for k in OPERATIONS}
    command = " ".join(["python", "benchmarks/speed_vs_retired.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(
        {"command": command, "old_commit": args.old_commit, "image": str(args.image), "threads": args.threads,
         "runs": runs, "medians": medians, "ratios": ratios}, indent=2))
    old_name = Path(args.old_model).name
    lines = [f"# Speed: `rdc-bsds` against `{old_name}` of commit {args.old_commit}", "",
             f"`{args.image.name}`, {args.threads} torch thread(s), {args.rounds} alternating rounds (each the median "
             f"of 7 timed runs); command: `{command}`.", "",
             f"| operation | {old_name} ({args.old_commit}) s | rdc-bsds s | ratio |", "|---|---|---|---|",
             f"| rate (bpp) | {medians['old']['bpp']:.4f} | {medians['new']['bpp']:.4f} | |"]
    lines += [f"| {k.replace('_', ' ')} | {medians['old'][k]:.3f} | {medians['new'][k]:.3f} | {ratios[k]:.3f} |"
              for k in OPERATIONS]
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
